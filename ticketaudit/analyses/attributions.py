"""Captum attributions of both models on the same rows, with the same target, baselines and steps;
compared per feature and per group (cosine, Spearman, top-k overlap, reliance on sensitive columns
and their proxies), with stratified bootstrap intervals."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .._validation import fail
from ..choices import ATTRIBUTION_METHODS, ATTRIBUTION_TARGETS
from . import stats
from ..data import Groups
from ..values import quote_label
from .base import AnalysisInputs, AnalysisSettings, interval, number

METHODS = ATTRIBUTION_METHODS
DEFAULT_METHOD = "integrated-gradients"
"""``--attribution-method`` when none is named (tables, text, images)."""
LANGUAGE_MODEL_METHOD = "input-x-gradient"
"""``--attribution-method`` when none is named, on a language model."""
"""Each method's Captum class, by name: Captum (and the matplotlib it imports) loads only when an
audit attributes, not with ``import ticketaudit``."""


def captum_class(method: str) -> Any:
    """The Captum class behind an attribution method."""
    import captum.attr

    return getattr(captum.attr, METHODS[method])


EMBEDDING_LAYER = "tokenizer"
"""Models with a ``tokenizer`` module whose output is (rows, columns, d) can be explained per column
token with ``layer-integrated-gradients`` (the package's ft-transformer has one)."""
Target = Literal["label", "predicted"]
AUTO_PROXIES = 3
PROXY_MIN_CORRELATION = 0.1
MAX_DISAGREEMENTS = 10
DEFAULT_ROWS = 2000


@dataclass(frozen=True, kw_only=True)
class AttributionSettings:
    """What to attribute and how; identical for both models."""

    method: str = "integrated-gradients"
    method_named: bool = True
    """Whether the user chose ``method``; if not, a language model takes ``LANGUAGE_MODEL_METHOD`` instead."""
    target: Target = "label"
    rows: int | None = None
    """Rows to attribute (a stratified sample); None: ``DEFAULT_ROWS`` or every row, whichever is fewer."""
    steps: int = 50
    top_k: int = 5
    proxies: tuple[str, ...] = ()
    identity_terms: tuple[str, ...] = ()
    """Words naming a group (text models), besides those built from the sensitive values."""
    budget_seconds: float = 120.0
    """Without ``rows``: attribute as many rows as fit in about this many seconds on 2 CPU cores (``cost``)."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            fail(f"attribution method '{self.method}' is unknown. Choose from: {', '.join(METHODS)}.")
        if self.target not in ATTRIBUTION_TARGETS:
            fail(f"--attribution-target must be 'label' or 'predicted', got {self.target!r}.")
        if self.rows is not None and (isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 10):
            fail(f"--attribution-rows must be an integer >= 10, got {self.rows!r}.")
        if isinstance(self.budget_seconds, bool) or not isinstance(self.budget_seconds, (int, float)) or not (
                1 <= self.budget_seconds <= 86_400):
            fail(f"--attribution-budget must be a number of seconds in [1, 86400], got {self.budget_seconds!r}.")
        if not 1 <= self.steps <= 10_000:
            fail(f"attribution steps must be in [1, 10000], got {self.steps}.")

    def for_modality(self, modality: str) -> AttributionSettings:
        """The settings for models of ``modality``: a language model explains with gradient x activation unless a
        method was named (Integrated Gradients costs (3 x steps + 1) passes per item: a handful of items per CPU
        budget, with a convergence delta that stays large on decoders)."""
        if modality != "choice" or self.method_named:
            return self
        return dataclasses.replace(self, method=LANGUAGE_MODEL_METHOD)

    @property
    def sample_rows(self) -> int:
        return DEFAULT_ROWS if self.rows is None else self.rows


@dataclass(frozen=True)
class Comparison:
    """A quantity for both models with the paired delta (ticket - dense) and its interval."""

    dense: float
    ticket: float
    delta: float
    ci: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"dense": number(self.dense), "ticket": number(self.ticket), "delta": number(self.delta),
                "ci": interval(*self.ci)}


@dataclass(frozen=True, kw_only=True)
class GroupAttribution:
    """Agreement of the two models' explanations within one group (or overall)."""

    group: str
    rows: int
    cosine: float
    cosine_ci: tuple[float, float]
    spearman: float
    spearman_ci: tuple[float, float]
    top_k_jaccard: float
    top_dense: tuple[str, ...]
    top_ticket: tuple[str, ...]
    sensitive_share: Comparison
    proxy_share: Comparison
    more: tuple[tuple[str, float, tuple[float, float]], ...] = ()
    """A modality's own per-row agreement measures (images: the top-pixel overlap): name, mean, interval."""

    def to_dict(self) -> dict[str, Any]:
        out = {"group": self.group, "rows": self.rows, "cosine": number(self.cosine),
               "cosine_ci": interval(*self.cosine_ci), "spearman": number(self.spearman),
               "spearman_ci": interval(*self.spearman_ci), "top_k_jaccard": number(self.top_k_jaccard),
               "top_dense": list(self.top_dense), "top_ticket": list(self.top_ticket),
               "sensitive_share": self.sensitive_share.to_dict(), "proxy_share": self.proxy_share.to_dict()}
        for name, value, ci in self.more:
            out[name], out[f"{name}_ci"] = number(value), interval(*ci)
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class AttributionResult:
    """What each model relies on, per raw feature and per group."""

    method: str
    target: str
    baseline: str
    steps: int
    top_k: int
    sample_rows: int
    population_rows: int
    sensitive: tuple[str, ...]
    proxies: tuple[str, ...]
    auto_proxies: tuple[str, ...]
    convergence_delta: dict[str, float] | None
    features: tuple[tuple[str, Comparison], ...]
    overall: GroupAttribution
    groups: tuple[GroupAttribution, ...]
    disagreements: tuple[dict[str, Any], ...]
    sensitive_replicates: np.ndarray = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)
    """Entries of the modality's own (text: the identity terms, highlighted rows, words that changed most)."""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "target": self.target, "baseline": self.baseline, "steps": self.steps,
                "top_k": self.top_k, "sample_rows": self.sample_rows, "population_rows": self.population_rows,
                "sensitive": list(self.sensitive), "proxies": list(self.proxies),
                "auto_proxies": list(self.auto_proxies),
                "convergence_delta": None if self.convergence_delta is None
                else {k: number(v) for k, v in self.convergence_delta.items()},
                "features": [{"feature": name, **c.to_dict()} for name, c in self.features],
                "overall": self.overall.to_dict(), "groups": [g.to_dict() for g in self.groups],
                "disagreements": list(self.disagreements), **self.extra}


def read_identity_terms(value: str | Path | Sequence[str] | None) -> tuple[str, ...]:
    """Identity terms from a UTF-8 file (one per line; ``#`` starts a comment) or a list of words."""
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        path = Path(value)
        if not path.is_file():
            fail(f"--identity-terms file '{path}' does not exist. Give a text file with one term per line.")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            fail(f"--identity-terms file '{path}' is not UTF-8 text. Save it as UTF-8, one term per line.")
        value = [line.split("#", 1)[0] for line in lines]
    terms = tuple(dict.fromkeys(str(t).strip().lower() for t in value if str(t).strip()))
    if not terms:
        fail("--identity-terms gives no term; list the words that name your groups, one per line.")
    return terms


def sample_sizes(population: np.ndarray, rows: int) -> np.ndarray:
    """Rows to sample per stratum: an equal floor share (all its rows if fewer), the rest split in
    proportion to size (largest remainders first)."""
    n_strata = len(population)
    if rows >= population.sum():
        return population.copy()
    take = np.minimum(population, rows // (2 * n_strata))
    remaining = rows - take.sum()
    spare = population - take
    extra = np.floor(remaining * spare / max(spare.sum(), 1)).astype(np.int64)
    for s in np.argsort(-(remaining * spare / max(spare.sum(), 1) - extra), kind="stable")[: remaining - extra.sum()]:
        extra[s] += 1
    return np.minimum(take + extra, population)


def row_keys(seed: int, rows: np.ndarray) -> np.ndarray:
    """A pseudo-random uint64 per (seed, row id) (SplitMix64): the same for a row wherever it is read."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 0xBF58476D + 7) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class RowSample:
    """The stratified attribution sample, kept over batches and shards: in each stratum the ``take``
    rows with the smallest ``row_keys(seed, row id)`` — so every shard keeps the rows it would alone,
    and the merged sample does not depend on how the rows were split."""

    def __init__(self, *, take: np.ndarray, seed: int, width: int) -> None:
        self.take, self.seed = take, seed
        self.rows = np.zeros(0, dtype=np.int64)
        self.strata = np.zeros(0, dtype=np.int64)
        self.features = np.zeros((0, width))
        self.targets = np.zeros(0, dtype=np.int64)

    def update(self, *, rows: np.ndarray, strata: np.ndarray, features: np.ndarray, targets: np.ndarray) -> None:
        self._keep(np.concatenate([self.rows, rows]), np.concatenate([self.strata, strata]),
                   np.concatenate([self.features, features]), np.concatenate([self.targets, targets]))

    def merge(self, other: RowSample) -> RowSample:
        self.update(rows=other.rows, strata=other.strata, features=other.features, targets=other.targets)
        return self

    def _keep(self, rows: np.ndarray, strata: np.ndarray, features: np.ndarray, targets: np.ndarray) -> None:
        order = np.lexsort((rows, row_keys(self.seed, rows), strata))
        rank = np.arange(len(order)) - np.searchsorted(strata[order], strata[order])
        kept = order[rank < self.take[strata[order]]]
        kept = kept[np.argsort(rows[kept], kind="stable")]
        self.rows, self.strata, self.features, self.targets = rows[kept], strata[kept], features[kept], targets[kept]


def cut_sample(sample: RowSample, population: np.ndarray, rows: int, *, seed: int) -> RowSample:
    """``sample`` cut to about ``rows`` rows by the rule that drew it (an equal floor share per stratum, the rest
    by size), keeping each stratum's smallest row keys: the sample a smaller sample size would have drawn."""
    take = np.minimum(sample_sizes(population, rows), np.bincount(sample.strata, minlength=len(population)))
    cut = RowSample(take=take, seed=seed, width=sample.features.shape[1])
    cut.update(rows=sample.rows, strata=sample.strata, features=sample.features, targets=sample.targets)
    return cut


def within_budget(sample: RowSample, population: np.ndarray, *, dense: torch.nn.Module, modality: Any,
                  settings: AttributionSettings, precision: str, seed: int) -> tuple[RowSample, Any]:
    """Tables: the stratified sample cut to the rows both models attribute within ``settings.budget_seconds``, from
    the first row's counted multiply-adds (``cost``); a small model keeps every sampled row."""
    from .cost import BudgetedSample, budgeted, row_cost

    if not len(sample.rows):
        return sample, BudgetedSample(rows=0, steps=settings.steps, seconds=0.0, floor_missed=False)
    plan = budgeted(row_cost(dense, sample.features[:1]), method=settings.method, steps=settings.steps,
                    inputs=sample.features.shape[1], precision=precision, budget_seconds=settings.budget_seconds,
                    population=len(sample.rows), floor=MIN_BUDGET_ROWS)
    return (sample if plan.rows >= len(sample.rows) else cut_sample(sample, population, plan.rows, seed=seed)), plan


MIN_BUDGET_ROWS = 50
"""The rows a time budget keeps when it can (fewer say little per group); below it the budget wins, with a note."""


def stratified_sample(stratum_of_row: np.ndarray, n_strata: int, *, rows: int, seed: int) -> np.ndarray:
    """Sorted row indices of the stratified sample of ``rows`` rows (see ``RowSample``)."""
    sample = RowSample(take=sample_sizes(np.bincount(stratum_of_row, minlength=n_strata), rows), seed=seed, width=0)
    everyone = np.arange(len(stratum_of_row))
    sample.update(rows=everyone, strata=stratum_of_row, features=np.zeros((len(everyone), 0)), targets=everyone)
    return sample.rows


class ProxyMoments:
    """Per-stratum sums of each model input and overall sums of squares: enough to correlate every
    input with every sensitive group indicator, and mergeable across batches and shards."""

    def __init__(self, *, n_strata: int, width: int) -> None:
        self.count = np.zeros(n_strata)
        self.sums = np.zeros((n_strata, width))
        self.squares = np.zeros(width)

    def update(self, features: np.ndarray, strata: np.ndarray) -> None:
        self.count += np.bincount(strata, minlength=len(self.count))
        np.add.at(self.sums, strata, features)
        self.squares += (features * features).sum(axis=0)

    def merge(self, other: ProxyMoments) -> ProxyMoments:
        self.count += other.count
        self.sums += other.sums
        self.squares += other.squares
        return self

    def correlations(self, indicator_of_stratum: np.ndarray) -> np.ndarray:
        """|Pearson r| (inputs, indicators); 0 where an input or an indicator is constant."""
        n = self.count.sum()
        mean = self.sums.sum(axis=0) / n
        variance = np.maximum(self.squares / n - mean**2, 0.0)
        share = (self.count @ indicator_of_stratum) / n
        cross = (self.sums.T @ indicator_of_stratum) / n
        scale = np.sqrt(variance[:, None] * (share * (1 - share))[None, :])
        constant = (variance[:, None] <= 1e-12 * np.maximum(self.squares / n, 1e-300)[:, None]) | (scale == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(constant, 0.0, np.abs(cross - mean[:, None] * share[None, :]) / np.where(constant, 1, scale))


def attribute(module: torch.nn.Module, features: np.ndarray, targets: np.ndarray, *, method: str, steps: int,
              baselines: np.ndarray, batch_size: int, device: torch.device,
              dtype: torch.dtype = torch.float64) -> tuple[np.ndarray, float | None]:
    """(rows, inputs) attributions from Captum, in batches of ``batch_size`` rows, rounded to float32.

    Also returns Integrated Gradients' largest absolute convergence delta (None for other methods).
    """
    model = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    single_logit = False
    with torch.no_grad():
        single_logit = model(torch.tensor(features[:1], dtype=dtype, device=device)).shape[1] == 1
    forward: Callable[[torch.Tensor], torch.Tensor]
    if single_logit:  # a binary model with one logit: attribute the logit of the positive class, signed per target
        def forward(x: torch.Tensor) -> torch.Tensor:
            logit = model(x)
            return torch.cat([-logit, logit], dim=1)
    else:
        forward = model
    if method == "layer-integrated-gradients":
        layer = getattr(model, EMBEDDING_LAYER, None)
        if not isinstance(layer, torch.nn.Module):
            fail("layer-integrated-gradients needs a model with a token embedding layer named 'tokenizer' "
                 "(such as the ft-transformer); use integrated-gradients for this model.")
        explainer = captum_class("layer-integrated-gradients")(forward, layer)
    else:
        explainer = captum_class(method)(forward if method != "deeplift" else model)
    if method == "deeplift" and single_logit:
        fail("DeepLift needs a model with one output per class; this model has a single logit. Use another method.")
    parts, deltas = [], []
    base = torch.as_tensor(baselines, dtype=dtype, device=device)
    for start in range(0, len(features), batch_size):
        x = torch.tensor(features[start:start + batch_size], dtype=dtype, device=device)
        target = torch.tensor(targets[start:start + batch_size], dtype=torch.long, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method in ("integrated-gradients", "layer-integrated-gradients"):
                out, delta = explainer.attribute(x, baselines=base[:1].expand_as(x), target=target, n_steps=steps,
                                                 internal_batch_size=batch_size, return_convergence_delta=True)
                deltas.append(delta.detach().abs().max().item())
                if out.dim() == 3:  # (rows, column tokens, d): one attribution per column token
                    out = out.sum(-1)
            elif method == "gradient-shap":
                torch.manual_seed(0)
                out = explainer.attribute(x, baselines=base, target=target, n_samples=steps)
            elif method in ("deeplift", "feature-ablation"):
                out = explainer.attribute(x, baselines=base[:1].expand_as(x), target=target)
            elif method == "occlusion":  # one input at a time (on tables the same as feature ablation)
                out = explainer.attribute(x, sliding_window_shapes=(1,), baselines=base[:1].expand_as(x), target=target)
            elif method == "saliency":
                out = explainer.attribute(x, target=target, abs=False)
            else:
                out = explainer.attribute(x, target=target)
        parts.append(out.detach().to("cpu", torch.float32).to(torch.float64).numpy())
    return np.concatenate(parts), (max(deltas) if deltas else None)


def to_raw_columns(attributions: np.ndarray, column_of_input: Sequence[str], columns: Sequence[str]) -> np.ndarray:
    """Sum input-level attributions back to raw columns (one-hot blocks become their column)."""
    index = {c: i for i, c in enumerate(columns)}
    matrix = np.zeros((len(column_of_input), len(columns)))
    for j, column in enumerate(column_of_input):
        matrix[j, index[column]] = 1.0
    return attributions @ matrix


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))


def _share(magnitude: np.ndarray, columns: list[int]) -> np.ndarray:
    total = magnitude.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, magnitude[:, columns].sum(1) / total, np.nan) if columns else np.full(len(total), np.nan)


def auto_proxy_columns(moments: ProxyMoments, column_of_input: Sequence[str], indicator_of_stratum: np.ndarray,
                       excluded: Sequence[str]) -> tuple[str, ...]:
    """Raw columns whose inputs correlate most (|r| >= 0.1) with any sensitive group indicator, top 3."""
    corr = moments.correlations(indicator_of_stratum)
    best: dict[str, float] = {}
    for j, column in enumerate(column_of_input):
        if column in excluded:
            continue
        best[column] = max(best.get(column, 0.0), float(corr[j].max()) if corr.shape[1] else 0.0)
    ranked = sorted((v, c) for c, v in best.items() if v >= PROXY_MIN_CORRELATION)
    return tuple(c for _, c in reversed(ranked[-AUTO_PROXIES:]))


def group_indicators(groups: Groups) -> np.ndarray:
    """(strata, marginal groups) 0/1: one indicator per value of each sensitive column."""
    marginal = [g for g in groups.groups if g.attribute in {quote_label(a) for a in groups.attributes}]
    matrix = np.zeros((groups.n_strata, len(marginal)))
    for j, group in enumerate(marginal):
        matrix[list(group.strata), j] = 1.0
    return matrix


def check_proxies(settings: AttributionSettings, column_of_input: Sequence[str]) -> None:
    columns = list(dict.fromkeys(column_of_input))
    for proxy in settings.proxies:
        if proxy not in columns:
            fail(f"proxy column '{proxy}' is not a model input. Model inputs: {', '.join(columns[:20])}.")


def analyse_attributions(inputs: AnalysisInputs, *, dense: torch.nn.Module, ticket: torch.nn.Module,
                         features: np.ndarray, column_of_input: Sequence[str], sensitive: Sequence[str],
                         settings: AttributionSettings, batch_size: int, device: torch.device,
                         precision: str = "float64") -> AttributionResult:
    """Attribute both models on a stratified sample (in ``precision``) and compare their explanations."""
    check_proxies(settings, column_of_input)
    groups = inputs.groups
    population = np.bincount(groups.stratum_of_row, minlength=groups.n_strata)
    sample = RowSample(take=sample_sizes(population, settings.sample_rows), seed=inputs.seed, width=features.shape[1])
    targets = inputs.labels if settings.target == "label" else inputs.predictions.pred_dense
    sample.update(rows=np.arange(len(features)), strata=groups.stratum_of_row, features=features, targets=targets)
    moments = ProxyMoments(n_strata=groups.n_strata, width=features.shape[1])
    moments.update(features, groups.stratum_of_row)
    return attributions_from_sample(inputs.settings, sample, moments, dense=dense, ticket=ticket,
                                    column_of_input=column_of_input, sensitive=sensitive, settings=settings,
                                    batch_size=batch_size, device=device, precision=precision)


def attributions_from_sample(inputs: AnalysisSettings, sample: RowSample, moments: ProxyMoments, *,
                             dense: torch.nn.Module, ticket: torch.nn.Module, column_of_input: Sequence[str],
                             sensitive: Sequence[str], settings: AttributionSettings, batch_size: int,
                             device: torch.device, precision: str = "float64") -> AttributionResult:
    """``analyse_attributions`` from a merged sample and moments: what chunked and sharded audits use;
    Captum runs the models in ``precision`` (float64, float32 or bfloat16)."""
    from .predict import DTYPES

    check_proxies(settings, column_of_input)
    columns = list(dict.fromkeys(column_of_input))
    groups = inputs.groups
    rows, x, targets = sample.rows, sample.features, sample.targets
    baselines = np.zeros((1, x.shape[1]))
    if settings.method == "gradient-shap":
        pick = np.random.default_rng(inputs.seed).choice(len(x), size=min(20, len(x)), replace=False)
        baselines = x[np.sort(pick)]
    raw: dict[str, np.ndarray] = {}
    convergence: dict[str, float] = {}
    for name, module in (("dense", dense), ("ticket", ticket)):
        attributions, delta = attribute(module, x, targets, method=settings.method, steps=settings.steps,
                                        baselines=baselines, batch_size=batch_size, device=device,
                                        dtype=DTYPES[precision])
        if settings.method == "layer-integrated-gradients":
            if attributions.shape[1] != len(columns):
                fail(f"the model's embedding layer has {attributions.shape[1]} tokens but the data has "
                     f"{len(columns)} input columns; layer-integrated-gradients needs one token per column.")
            raw[name] = attributions
        else:
            raw[name] = to_raw_columns(attributions, column_of_input, columns)
        if delta is not None:
            convergence[name] = delta
    magnitude = {m: np.abs(v) for m, v in raw.items()}
    sensitive_cols = [columns.index(c) for c in sensitive if c in columns]
    auto = auto_proxy_columns(moments, column_of_input, group_indicators(groups), [*settings.proxies, *sensitive])
    proxy_names = tuple(dict.fromkeys((*settings.proxies, *auto)))
    proxy_cols = [columns.index(c) for c in proxy_names]
    per_row = {
        "cosine": _row_cosine(raw["dense"], raw["ticket"]),
        "spearman": _row_spearman(raw["dense"], raw["ticket"]),
        "sensitive_dense": _share(magnitude["dense"], sensitive_cols),
        "sensitive_ticket": _share(magnitude["ticket"], sensitive_cols),
        "proxy_dense": _share(magnitude["dense"], proxy_cols),
        "proxy_ticket": _share(magnitude["ticket"], proxy_cols),
    }
    baseline = "zeros" if settings.method != "gradient-shap" else "20 rows of the sample"
    return summarise_attributions(
        inputs, rows=rows, strata=sample.strata, population=moments.count, columns=columns, raw=raw,
        per_row=per_row, settings=settings, sensitive=tuple(sensitive), auto_proxies=auto,
        convergence=convergence or None, baseline=baseline)


class _DesignSample:
    """The stratified attribution sample with its design weights (small strata were over-sampled) and bootstrap
    weights: design-weighted means, their replicates, and the comparisons built from them."""

    def __init__(self, inputs: AnalysisSettings, *, rows: np.ndarray, strata: np.ndarray, population: np.ndarray,
                 columns: Sequence[str], raw: dict[str, np.ndarray], per_row: dict[str, np.ndarray], top_k: int) -> None:
        n_strata = inputs.groups.n_strata
        self.weights = np.concatenate(list(stats.stratified_multinomial(
            np.ones(len(rows)), strata, n_strata=n_strata, n_boot=inputs.n_boot, seed=inputs.seed)))
        sampled = np.bincount(strata, minlength=n_strata)
        self.design = population[strata] / sampled[strata]
        self.magnitude = {m: np.abs(v) for m, v in raw.items()}
        self.per_row, self.columns, self.top_k, self.confidence = per_row, columns, top_k, inputs.confidence

    def mean_and_reps(self, values: np.ndarray, member: np.ndarray) -> tuple[float, np.ndarray]:
        """Design-weighted mean over ``member`` rows (population estimate) and its bootstrap replicates."""
        valid = member & np.isfinite(values)
        filled = np.where(valid, values, 0.0) * self.design
        mass = valid * self.design
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (self.weights @ filled) / (self.weights @ mass)
        return (float(filled.sum() / mass.sum()) if valid.any() else float("nan")), reps

    def interval(self, reps: np.ndarray) -> tuple[float, float]:
        low, high = stats.percentile_interval(reps, confidence=self.confidence)
        return float(low), float(high)

    def comparison(self, dense_key: str, ticket_key: str, member: np.ndarray) -> tuple[Comparison, np.ndarray]:
        d, d_reps = self.mean_and_reps(self.per_row[dense_key], member)
        t, t_reps = self.mean_and_reps(self.per_row[ticket_key], member)
        return Comparison(d, t, t - d, self.interval(t_reps - d_reps)), t_reps - d_reps

    def top(self, values: np.ndarray) -> tuple[str, ...]:
        order = np.lexsort((np.arange(len(values)), -values))
        return tuple(self.columns[i] for i in order[: self.top_k] if values[i] > 0)

    def top_of(self, model: str, member: np.ndarray) -> tuple[str, ...]:
        if not member.any():
            return ()
        matrix = self.magnitude[model]
        return self.top((matrix[member] * self.design[member, None]).sum(0) / self.design[member].sum())

    def group(self, name: str, member: np.ndarray, agreements: tuple[str, ...]) -> tuple[GroupAttribution, np.ndarray]:
        """One group's agreement (cosine, Spearman, top-k overlap) and reliance shares, with intervals."""
        cosine, cos_reps = self.mean_and_reps(self.per_row["cosine"], member)
        spearman, sp_reps = self.mean_and_reps(self.per_row["spearman"], member)
        top_d, top_t = self.top_of("dense", member), self.top_of("ticket", member)
        union = set(top_d) | set(top_t)
        sensitive_share, sensitive_reps = self.comparison("sensitive_dense", "sensitive_ticket", member)
        more = []
        for key in agreements:
            value, reps = self.mean_and_reps(self.per_row[key], member)
            more.append((key, value, self.interval(reps)))
        return GroupAttribution(
            group=name, rows=int(member.sum()), cosine=cosine, cosine_ci=self.interval(cos_reps), spearman=spearman,
            spearman_ci=self.interval(sp_reps),
            top_k_jaccard=len(set(top_d) & set(top_t)) / len(union) if union else float("nan"), top_dense=top_d,
            top_ticket=top_t, sensitive_share=sensitive_share,
            proxy_share=self.comparison("proxy_dense", "proxy_ticket", member)[0], more=tuple(more)), sensitive_reps

    def features(self) -> list[tuple[str, Comparison]]:
        """Each unit's mean |attribution| for both models, most important first."""
        everyone = np.ones(len(self.design), dtype=bool)
        out = []
        for j, column in enumerate(self.columns):
            d_mean, d_reps = self.mean_and_reps(self.magnitude["dense"][:, j], everyone)
            t_mean, t_reps = self.mean_and_reps(self.magnitude["ticket"][:, j], everyone)
            out.append((column, Comparison(d_mean, t_mean, t_mean - d_mean, self.interval(t_reps - d_reps))))
        return sorted(out, key=lambda item: (-max(item[1].dense, item[1].ticket), item[0]))

    def disagreements(self, rows: np.ndarray, strata: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
        """The rows whose explanations agree least (lowest cosine), with each model's top units."""
        cosine = self.per_row["cosine"]
        order = np.lexsort((rows, np.nan_to_num(cosine, nan=2.0)))
        return [{"row": int(rows[i]), "group": names[strata[i]], "cosine": number(round(float(cosine[i]), 6)),
                 "top_dense": list(self.top(self.magnitude["dense"][i])[:3]),
                 "top_ticket": list(self.top(self.magnitude["ticket"][i])[:3])} for i in order[:MAX_DISAGREEMENTS]]


def summarise_attributions(inputs: AnalysisSettings, *, rows: np.ndarray, strata: np.ndarray, population: np.ndarray,
                           columns: Sequence[str], raw: dict[str, np.ndarray], per_row: dict[str, np.ndarray],
                           settings: AttributionSettings, sensitive: tuple[str, ...], auto_proxies: tuple[str, ...],
                           convergence: dict[str, float] | None, baseline: str,
                           extra: dict[str, Any] | None = None, agreements: tuple[str, ...] = ()) -> AttributionResult:
    """Overall and per-group agreement, reliance shares and unit importance from per-row attributions
    over ``columns`` (raw columns, or the words of text rows): design-weighted means of the stratified
    sample with stratified bootstrap intervals. ``agreements`` names more per-row agreement measures of
    ``per_row`` summarised the same way (in each group's ``more``)."""
    sample = _DesignSample(inputs, rows=rows, strata=strata, population=population, columns=columns, raw=raw,
                           per_row=per_row, top_k=settings.top_k)
    overall, sensitive_reps = sample.group("overall", np.ones(len(rows), dtype=bool), agreements)
    group_results = tuple(sample.group(g.name, np.isin(strata, g.strata), agreements)[0] for g in inputs.groups.groups)
    return AttributionResult(
        method=settings.method, target=settings.target, baseline=baseline, steps=settings.steps, top_k=settings.top_k,
        sample_rows=len(rows), population_rows=int(population.sum()), sensitive=tuple(sensitive),
        proxies=settings.proxies, auto_proxies=auto_proxies, convergence_delta=convergence,
        features=tuple(sample.features()), overall=overall, groups=group_results,
        disagreements=tuple(sample.disagreements(rows, strata, inputs.groups.strata_names)),
        sensitive_replicates=sensitive_reps, extra=extra or {})
