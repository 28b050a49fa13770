"""``--alternatives`` for causal language models: at the audited ticket's decoder sparsity (and N:M pattern), one
candidate from each language-model method, each measured against the dense model on the same held-out items as the
audited ticket — accuracy per group with paired intervals, the benchmark's bias scores per category, loss per token
on the held-out prompts — decided by the same policy, saved as a Hugging Face directory, and a recommendation that
prefers an alternative to the audited ticket only when the paired comparison on the same items shows it.

The items are split in two by family (items that share a context: BBQ's items written from one template, identical
prompts otherwise), within the first sensitive column's values: the calibration half's prompts calibrate the
group-balanced methods, the evaluation half compares every candidate, so no compared item was seen in calibration.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..analyses.base import AnalysisInputs, Estimate, number
from ..analyses.benchmark_scores import AnsweredItems, BenchmarkResult, benchmark_result
from ..analyses.compression import nm_pattern
from ..analyses.cost import THROUGHPUT
from ..analyses.performance import PerformanceResult, analyse_performance
from ..analyses.predict import ModelRunner, Predictions
from ..checks import evaluate_policy
from ..config import AuditConfig, Policy
from ..data import build_groups
from ..exceptions import InvalidInputError
from ..inputs import encode_target
from ..prune_language import token_loss
from ..tickets.load import LoadedModel
from .alternatives import AUDITED, AlternativesResult, Candidate, _summarise
from .budget import Job, plan
from .sequential import block_linears, decoder_blocks, prune_layerwise

SEQUENCES, LENGTH = 32, 128
"""Calibration of every candidate: 32 sequences of 128 tokens, as ``prune --model`` by default."""
LANGUAGE_CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("magnitude", "magnitude", "text"),
    ("wanda", "wanda", "text"),
    ("wanda+balanced", "wanda", "items"),
    ("wanda-worst-group", "wanda-worst-group", "items"),
    ("sparsegpt", "sparsegpt", "text"),
)
"""(candidate, method, calibration) in order of priority under the budget: ``text`` is the shipped calibration text
(what ``prune --model`` uses by default), ``items`` the calibration half's prompts, the same tokens from each value
of the first sensitive column."""
LOSS_WINDOWS = 16
"""Windows of ``LENGTH`` tokens of the evaluation prompts on which each candidate's loss per token is measured."""
OVERHEAD_SECONDS = 2.0
"""Fixed cost of one candidate (a copy of the model, saving it)."""


@dataclass(frozen=True)
class DecoderShape:
    """What the audited ticket removed from the decoder blocks' linear layers: the share of zeros and, when every
    layer holds one, the N:M pattern."""

    sparsity: float
    pattern: str | None
    layers: dict[str, float] = field(default_factory=dict)
    """Each decoder linear weight's share of zeros, by parameter name (``prune_layerwise``'s names)."""

    @property
    def uneven(self) -> bool:
        """Whether the layers' sparsities differ by more than whole-row rounding (OWL-style allocations)."""
        return bool(self.layers) and max(self.layers.values()) - min(self.layers.values()) > UNEVEN_SPREAD

    def target(self) -> float | dict[str, float]:
        """What candidates are pruned to: each layer's own share where the ticket's differ, else one share."""
        return dict(self.layers) if self.uneven else self.sparsity


UNEVEN_SPREAD = 0.02
"""Layers whose sparsities differ by more than this are matched layer by layer (per-row rounding of a uniform
ticket moves a narrow layer by under 1%)."""


def decoder_shape(module: nn.Module) -> DecoderShape:
    """The share of exact zeros among the decoder blocks' linear weights (overall and per layer), and their common
    N:M pattern if any."""
    zeros = total = 0
    patterns: set[str | None] = set()
    layers: dict[str, float] = {}
    blocks = decoder_blocks(module)
    prefix = next(name for name, m in module.named_modules() if m is blocks)
    with torch.no_grad():
        for index, block in enumerate(blocks):
            for name, (layer, transposed) in block_linears(block).items():
                weight = layer.weight.T if transposed else layer.weight
                kept = weight != 0
                removed = int(weight.numel() - kept.sum())
                layers[f"{prefix}.{index}.{name}.weight"] = removed / weight.numel()
                zeros += removed
                total += weight.numel()
                patterns.add(nm_pattern(kept))
    sparsity = zeros / total if total else 0.0
    pattern = patterns.pop() if len(patterns) == 1 else None
    return DecoderShape(sparsity, pattern if pattern is not None and abs(sparsity - 0.5) < 0.01 else None, layers)


def split_items(frame: pd.DataFrame, *, sensitive: str, benchmark: str | None, prompts: list[str], seed: int
                ) -> np.ndarray:
    """A boolean per item: True for the calibration half. Families (``_families``) stay whole; within each value of
    ``sensitive``, half of them (at random, with ``seed``) calibrate."""
    family = _families(frame, benchmark=benchmark, prompts=prompts)
    values = frame[sensitive].astype(str).to_numpy()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x11A]))
    calibration = np.zeros(len(frame), dtype=bool)
    firsts = pd.DataFrame({"family": family, "value": values}).drop_duplicates("family")
    for value in sorted(set(firsts["value"])):
        members = firsts.loc[firsts["value"] == value, "family"].to_numpy()
        chosen = rng.permutation(members)[: len(members) // 2]
        calibration |= np.isin(family, chosen)
    return calibration


def _families(frame: pd.DataFrame, *, benchmark: str | None, prompts: list[str]) -> np.ndarray:
    """Items that share a context: BBQ's template within a category (``question_index``: every context written from
    it, whichever names fill it), else identical prompts (CrowS-Pairs: each pair alone)."""
    if benchmark == "bbq":
        return (frame["category"].astype(str) + "#" + frame["question_index"].astype(str)).to_numpy()
    if benchmark == "crows-pairs" or not any(prompts):
        return np.arange(len(frame)).astype(str)
    return np.asarray(prompts, dtype=object).astype(str)


@dataclass(eq=False, kw_only=True)
class LanguageSetup:
    """Everything the candidates are measured with, fixed before any of them is pruned."""

    dense: LoadedModel
    audited: LoadedModel
    modality: Any
    frame: pd.DataFrame
    calibration: np.ndarray
    target: str
    sensitive: list[str]
    class_names: tuple[str, ...]
    n_outputs: int
    policy: Policy
    n_boot: int
    seed: int
    device: torch.device
    precision: str
    batch_size: int
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.evaluation = self.frame[~self.calibration].reset_index(drop=True)
        self.inputs = self.modality.inputs(self.evaluation)
        self.labels, _ = encode_target(self.evaluation, self.target, n_outputs=self.n_outputs,
                                       labels=self.dense.labels, require_every_class=False)
        self.groups = build_groups(self.evaluation, self.sensitive)
        self.dense_proba = np.empty((0, 0))  # the dense model's answers: computed first by the alternatives

    def probabilities(self, module: nn.Module) -> np.ndarray:
        return ModelRunner(module, device=self.device, precision=self.precision).probabilities(
            self.inputs, batch_size=self.batch_size)

    def performance(self, proba: np.ndarray, *, reference: np.ndarray | None = None) -> PerformanceResult:
        """``proba`` against the dense model's (or ``reference``'s) on the evaluation items, paired."""
        return analyse_performance(AnalysisInputs(
            class_names=self.class_names, groups=self.groups, confidence=self.policy.confidence,
            min_group_size=self.policy.min_group_size, n_boot=self.n_boot, seed=self.seed,
            ece_bins=AuditConfig().ece_bins, labels=self.labels,
            predictions=Predictions(self.dense_proba if reference is None else reference, proba)))

    def benchmark(self, proba: np.ndarray) -> BenchmarkResult | None:
        """The benchmark's own scores per category, the candidate against the dense model (None: no benchmark)."""
        name = self.modality.benchmark
        if name is None:
            return None
        frame, n = self.evaluation, len(self.evaluation)
        bbq = name == "bbq"
        items = AnsweredItems(
            rows=np.arange(n), category=frame["category" if bbq else "bias_type"].astype(str).to_numpy(),
            label=self.labels, dense=self.dense_proba.argmax(axis=1), ticket=proba.argmax(axis=1),
            disambiguated=(frame["context_condition"] == "disambig").to_numpy() if bbq else np.zeros(n, dtype=bool),
            biased=frame[[f"bbq_biased_{i}" for i in range(3)]].to_numpy(dtype=bool) if bbq else np.zeros((n, 2), bool),
            unknown=frame["bbq_unknown"].to_numpy(dtype=np.int64) if bbq else np.full(n, -1))
        return benchmark_result(items, benchmark=name, n_boot=self.n_boot, seed=self.seed,
                                confidence=self.policy.confidence)

    def loss_windows(self) -> list[torch.Tensor]:
        """Up to ``LOSS_WINDOWS`` windows of ``LENGTH`` tokens of the evaluation prompts (or sentences), evenly
        spaced: held out from every candidate's calibration."""
        from .language import calibration_batches

        text = "\n\n".join(_texts(self.modality, self.evaluation))
        tokens = len(self.dense.tokenizer(text, add_special_tokens=False)["input_ids"])
        if tokens < 2:
            return []
        return calibration_batches(self.dense.tokenizer, text, sequences=LOSS_WINDOWS, length=min(LENGTH, tokens))


def _texts(modality: Any, frame: pd.DataFrame) -> list[str]:
    """The items' text a language model reads: their prompts, or (pairs: no prompt) their sentences."""
    if modality.has_prompts:
        return modality.prompts(frame)
    return [text for row in modality._choices(frame) for text in row]


def _candidate(setup: LanguageSetup, name: str, method: str, module: nn.Module, *, sparsity: float,
               audited_proba: np.ndarray | None, windows: list[torch.Tensor]) -> tuple[Candidate, np.ndarray]:
    """One model measured against the dense model (and, with ``audited_proba``, against the audited ticket)."""
    from ..analyses import registry

    proba = setup.probabilities(module)
    performance = setup.performance(proba)
    bench = setup.benchmark(proba)
    extra = registry.get("benchmark").candidates(bench, setup.policy) if bench is not None else []
    checks = evaluate_policy(setup.policy, performance, extra=extra)
    summary = _summarise(name, method, "-", None, sparsity, performance, setup.policy, mask=None, module=None,
                         checks=checks)
    language: dict[str, Any] = {"verdict": summary.verdict,
                                "loss_per_token": number(token_loss(module, windows, device=setup.device))}
    if bench is not None:
        language["benchmark"] = bench.to_dict()
    if audited_proba is not None:
        versus = setup.performance(proba, reference=audited_proba).overall.metrics["accuracy"]
        language["accuracy_vs_audited"] = Estimate(float(versus.delta), tuple(map(float, versus.ci)),
                                                   float(versus.p_value)).to_dict()
    return dataclasses.replace(summary, language=language), proba


def _macs_per_token(module: nn.Module) -> float:
    """Multiply-adds of one token's forward pass: every weight once (embedding lookups aside, the tied head's
    product counts the embedding's size)."""
    return float(sum(p.numel() for p in module.parameters()))


def _linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    out = []
    for block in decoder_blocks(module):
        for layer, transposed in block_linears(block).values():
            rows, columns = layer.weight.shape
            out.append((columns, rows) if transposed else (rows, columns))
    return out


def price_jobs(setup: LanguageSetup, *, loss_tokens: int) -> dict[str, float]:
    """Estimated seconds of each candidate (pruning, scoring the evaluation items, its loss), from counted
    multiply-adds at ``analyses.cost``'s matrix-product throughput in the audit's precision — never a clock."""
    rate = THROUGHPUT["matmul"].get(setup.precision, THROUGHPUT["matmul"]["float32"])
    per_token = _macs_per_token(setup.dense.module)
    inputs = setup.inputs
    scored = sum(len(c) + sum(len(x) for x in xs) for c, xs in zip(inputs.contexts, inputs.continuations))
    evaluate = (scored + loss_tokens) * per_token / rate + OVERHEAD_SECONDS
    calibration = SEQUENCES * LENGTH * per_token * 2 / rate  # statistics under hooks, then the block's outputs
    hessian = sum(n_in * n_in * (SEQUENCES * LENGTH + n_in + n_out) for n_out, n_in in _linear_sizes(setup.dense.module))
    prune = {"magnitude": 0.0, "wanda": calibration, "wanda-worst-group": calibration,
             "sparsegpt": calibration + hessian / rate}
    return ({name: prune[method] + evaluate for name, method, _ in LANGUAGE_CANDIDATES}
            | {AUDITED: 2 * evaluate})  # the dense model's answers and loss, then the audited ticket's


def find_language_alternatives(setup: LanguageSetup, *, budget_seconds: float | None, save_to: Path | None,
                               source: dict[str, Any],
                               progress: Callable[[str, int, int], None] | None = None) -> AlternativesResult:
    """Candidates at the audited ticket's decoder sparsity and pattern, each saved under ``save_to`` (written whole
    or not at all) with the evaluation items and the command that audits it again."""
    step = progress or (lambda *_: None)
    shape = decoder_shape(setup.audited.module)
    if shape.sparsity < 0.005:
        raise InvalidInputError("--alternatives: the ticket's decoder layers hold no zeros, so there is no sparsity "
                                "to match; audit a pruned ticket (prune --model ... writes one).")
    pattern = None if shape.pattern is None else tuple(int(v) for v in shape.pattern.split(":"))
    windows = setup.loss_windows()
    prices = price_jobs(setup, loss_tokens=sum(w.shape[1] for w in windows))
    budget = plan([Job(AUDITED, prices[AUDITED], required=True),
                   *(Job(name, prices[name], required=index == 0)
                     for index, (name, _, _) in enumerate(LANGUAGE_CANDIDATES))], budget_seconds=budget_seconds)
    calibrations = _calibrations(setup)
    step("Alternatives: the dense model and the audited ticket on the evaluation items", 0, len(LANGUAGE_CANDIDATES))
    setup.dense_proba = setup.probabilities(setup.dense.module)
    dense_loss = token_loss(setup.dense.module, windows, device=setup.device)
    audited, audited_proba = _candidate(setup, AUDITED, "audited", setup.audited.module, sparsity=shape.sparsity,
                                        audited_proba=None, windows=windows)
    audited.language["dense_loss_per_token"] = number(dense_loss)
    candidates = [audited]
    staging = Path(tempfile.mkdtemp(prefix=".ticketaudit-", dir=save_to.parent)) if save_to is not None else None
    try:
        for index, (name, method, calibration) in enumerate(LANGUAGE_CANDIDATES):
            if not budget.runs(name) or calibrations.get(calibration) is None:
                continue
            step(f"Alternatives: {name}", index, len(LANGUAGE_CANDIDATES))
            batches, owners = calibrations[calibration]
            module = copy.deepcopy(setup.dense.module)
            try:
                prune_layerwise(module, batches, method=method, sparsity=shape.target(), pattern=pattern,
                                groups=owners)
            except (InvalidInputError, torch.linalg.LinAlgError) as error:  # e.g. a Hessian that is not positive
                setup.notes.append(f"{name} did not run: {str(error).splitlines()[0]}")
                continue
            candidate, _ = _candidate(setup, name, method, module, sparsity=decoder_shape(module).sparsity,
                                      audited_proba=audited_proba, windows=windows)
            if staging is not None:
                candidate = _saved(candidate, module, setup, staging, final=save_to, source=source,
                                   pattern=shape.pattern)
            candidates.append(candidate)
            del module
        step("Alternatives: saving", len(LANGUAGE_CANDIDATES), len(LANGUAGE_CANDIDATES))
        if staging is not None:
            _write_evaluation_items(setup, staging, source=source)
            staging.rename(save_to)
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    text, best = recommend_language(candidates)
    if budget.note():
        setup.notes.append(budget.note())
    split = (f"Items split by family (items sharing a context stay together) within each {setup.sensitive[0]}: "
             f"{int(setup.calibration.sum())} calibrate the group-balanced candidates, {len(setup.evaluation)} compare "
             f"every candidate; candidates match the ticket's decoder sparsity {shape.sparsity:.1%} ({_layer_words(shape)})"
             + (f" and its {shape.pattern} pattern" if shape.pattern else "") + "; embeddings and head stay dense")
    return AlternativesResult(
        split=split, calibration_rows=int(setup.calibration.sum()), evaluation_rows=len(setup.evaluation),
        dense_accuracy=float(np.mean(setup.dense_proba.argmax(1) == setup.labels)), candidates=tuple(candidates),
        sweep=(), critical={}, critical_by_fraction={}, recommendation=text, recommended=best,
        tolerance=setup.policy.max_overall_accuracy_drop, notes=tuple(setup.notes), budget=budget)


def _layer_words(shape: DecoderShape) -> str:
    if not shape.uneven:
        return "the same in every layer"
    shares = shape.layers.values()
    return f"each layer at the ticket's own share there, {min(shares):.1%} to {max(shares):.1%}"


def _calibrations(setup: LanguageSetup) -> dict[str, tuple[list[torch.Tensor], list[int] | None] | None]:
    """The shipped text's sequences, and the calibration half's prompts balanced over the first sensitive column
    (None, with a note, when a value has too little text)."""
    from ..prune_language import calibration_text
    from .language import calibration_batches, grouped_calibration

    tokenizer = setup.dense.tokenizer
    text, _ = calibration_text(None)
    out: dict[str, tuple[list[torch.Tensor], list[int] | None] | None] = {
        "text": (calibration_batches(tokenizer, text, sequences=SEQUENCES, length=LENGTH), None)}
    frame = setup.frame[setup.calibration]
    try:
        batches, owners, _ = grouped_calibration(tokenizer, _texts(setup.modality, frame),
                                                 frame[setup.sensitive[0]].astype(str).tolist(),
                                                 sequences=SEQUENCES, length=LENGTH, seed=setup.seed)
        out["items"] = (batches, owners)
    except InvalidInputError as error:
        out["items"] = None
        setup.notes.append(f"The group-balanced candidates did not run: the calibration half cannot give equal "
                           f"text per {setup.sensitive[0]} ({error}).")
    return out


def _saved(candidate: Candidate, module: nn.Module, setup: LanguageSetup, staging: Path, *, final: Path,
           source: dict[str, Any], pattern: str | None) -> Candidate:
    """Save a candidate as a Hugging Face directory (weights with exact zeros, config, tokenizer, candidate.json)."""
    import dataclasses

    from ..llm.models import save_quietly

    folder = staging / _folder_name(candidate.name)
    save_quietly(module, folder)
    setup.dense.tokenizer.save_pretrained(folder)
    summary = {"candidate": candidate.name, "method": candidate.method, "sparsity": candidate.sparsity,
               "pattern": pattern, "reaudit": reaudit_command(setup, final / folder.name, final, source=source)}
    (folder / "candidate.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return dataclasses.replace(candidate, saved_to=str(final / folder.name))


def _folder_name(name: str) -> str:
    return name.replace("+", "-")


EVALUATION_FILES = {"bbq": "evaluation_items.jsonl", "crows-pairs": "evaluation_items.csv"}


def reaudit_command(setup: LanguageSetup, candidate: Path, folder: Path, *, source: dict[str, Any]) -> str:
    """The ``report`` command that audits a saved candidate on the evaluation items and reproduces its numbers."""
    from shlex import quote

    benchmark = setup.modality.benchmark
    data = folder / EVALUATION_FILES.get(benchmark or "", "evaluation_items.jsonl")
    parts = ["ticketaudit report", f"--dense {quote(source.get('dense') or 'DENSE')}", f"--ticket {quote(str(candidate))}"]
    if benchmark is not None:
        parts.append(f"--benchmark {benchmark}")
        if benchmark == "bbq" and setup.modality.task.choice_mode:
            parts.append(f"--bbq-choices {setup.modality.task.choice_mode}")
    else:
        parts += [source.get("task_options", "")]
    parts += [f"--data {quote(str(data))}", f"--seed {setup.seed}", f"--n-boot {setup.n_boot}",
              f"--confidence {setup.policy.confidence:g}", f"--precision {setup.precision}",
              f"--batch-size {setup.batch_size}", "--analyses metrics,benchmark" if benchmark else "--analyses metrics"]
    return " ".join(p for p in parts if p)


def _write_evaluation_items(setup: LanguageSetup, folder: Path, *, source: dict[str, Any]) -> None:
    """The evaluation items in the format the audit read them: BBQ's release lines, CrowS-Pairs' CSV rows (each
    found by its own fields, so ``--limit`` and ``--split`` need not be repeated), the user's items as JSONL."""
    evaluation = setup.evaluation
    benchmark = setup.modality.benchmark
    path = source.get("data")
    if benchmark == "bbq" and path is not None:
        from ..llm.bbq import write_bbq_items

        keys = set(zip(evaluation["category"].astype(str), evaluation["example_id"].astype(int)))
        write_bbq_items(Path(path), keys, folder / EVALUATION_FILES["bbq"])
        return
    if benchmark == "crows-pairs" and path is not None:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        wanted = set(zip(evaluation["bias_type"], evaluation[["choice_0", "choice_1"]].apply(frozenset, axis=1)))
        found = [(b, frozenset((m, s))) in wanted for b, m, s in zip(raw["bias_type"], raw["sent_more"], raw["sent_less"])]
        raw[found].to_csv(folder / EVALUATION_FILES["crows-pairs"], index=False)
        return
    evaluation.to_json(folder / "evaluation_items.jsonl", orient="records", lines=True, force_ascii=False)


def recommend_language(candidates: list[Candidate]) -> tuple[str, str | None]:
    """Keep the audited ticket unless an alternative is shown better on the same items: more accurate with a paired
    interval above zero and a verdict no worse, or passing the policy (every check within tolerance, shown) where
    the audited ticket fails it. A candidate that merely does not fail is named, never recommended."""
    rank = {"pass": 2, "inconclusive": 1, "fail": 0}
    audited, others = candidates[0], candidates[1:]
    audited_verdict = audited.language["verdict"]

    def verdict(c: Candidate) -> str:
        return c.language["verdict"]

    def gain(c: Candidate) -> dict[str, Any]:
        return c.language["accuracy_vs_audited"]

    shown_better = [c for c in others if verdict(c) != "fail" and rank[verdict(c)] >= rank[audited_verdict]
                    and gain(c)["ci"][0] is not None and gain(c)["ci"][0] > 0]
    if shown_better:
        best = max(shown_better, key=lambda c: (gain(c)["ci"][0], c.name))
        low, high = gain(best)["ci"]
        return (f"Ship {best.name}: on the same items it is more accurate than the audited ticket by "
                f"{gain(best)['value'] * 100:+.1f} pts (interval {low * 100:+.1f} to {high * 100:+.1f}), and its "
                f"policy verdict is {verdict(best)} (the audited ticket's: {audited_verdict})."), best.name
    if audited_verdict == "fail":
        passing = [c for c in others if verdict(c) == "pass"]
        if passing:
            best = max(passing, key=lambda c: (c.accuracy, c.name))
            return (f"Ship {best.name}: it passes every policy check on these items (each within tolerance, shown by "
                    f"its interval) where the audited ticket fails {', '.join(audited.failed_checks[:3])}; overall "
                    f"accuracy {best.accuracy * 100:.1f}%."), best.name
        unfailed = [c.name for c in others if verdict(c) == "inconclusive"]
        if unfailed:
            return (f"No alternative is shown better. The audited ticket fails the policy; {', '.join(unfailed)} "
                    "fail(s) no check on these items, but the data cannot show they pass: audit them on more items "
                    "before choosing one."), None
        return ("No candidate passes the policy on the evaluation items: every one fails a check; consider a lower "
                "sparsity."), None
    if audited_verdict == "pass":
        return ("Keep the audited ticket: it passes the policy on these items, and no alternative at the same "
                "sparsity is shown better (a paired accuracy gain whose interval excludes zero, with a verdict no "
                "worse)."), AUDITED
    return ("No alternative at the same sparsity is shown better than the audited ticket on the same items (a paired "
            "accuracy gain whose interval excludes zero, with a verdict no worse); the audited ticket's own verdict "
            "on them is inconclusive: the data cannot show it passes."), None
