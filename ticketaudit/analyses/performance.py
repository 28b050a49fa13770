"""Per-group metrics of both models (fairlearn ``MetricFrame``), paired deltas with intervals,
excess drop psi_g, gaps and their widening, all from one stratified bootstrap."""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data import Group
from . import stats
from .base import AnalysisInputs, AnalysisSettings, interval, number
from .cells import MODELS, CellTable, build_cells, domain_size, metric_layout, metrics_from_sums, paired_specs

MIN_RATE_DOMAIN = 10
"""A rate needs at least this many rows in its denominator (positives for TPR, ...)."""

GAP_METRICS = {2: ("accuracy", "tpr", "fpr", "selection_rate"), "multi": ("accuracy", "macro_recall")}


def metric_names(n_classes: int) -> list[str]:
    """The names ``sklearn_metrics`` defines, without importing fairlearn (a second on a cold start)."""
    if n_classes == 2:
        return ["accuracy", "tpr", "fpr", "selection_rate", "precision"]
    return ["accuracy", *(f"recall:{k}" for k in range(n_classes))]


def sklearn_metrics(n_classes: int) -> dict[str, Callable[..., float]]:
    """Metric definitions from fairlearn / scikit-learn, keyed by our metric names (``metric_names``)."""
    from fairlearn.metrics import false_positive_rate, selection_rate, true_positive_rate  # on use: import cost
    from sklearn.metrics import accuracy_score, precision_score

    if n_classes == 2:
        return {
            "accuracy": accuracy_score,
            "tpr": functools.partial(true_positive_rate, pos_label=1),
            "fpr": functools.partial(false_positive_rate, pos_label=1),
            "selection_rate": functools.partial(selection_rate, pos_label=1),
            "precision": functools.partial(precision_score, zero_division=np.nan),
        }
    out: dict[str, Callable[..., float]] = {"accuracy": accuracy_score}
    for k in range(n_classes):
        out[f"recall:{k}"] = functools.partial(_class_recall, label=k)
    return out


def _class_recall(y_true: np.ndarray, y_pred: np.ndarray, *, label: int, sample_weight: np.ndarray | None = None) -> float:
    from sklearn.metrics import recall_score

    return float(recall_score(y_true, y_pred, labels=[label], average=None, zero_division=np.nan,
                              sample_weight=sample_weight)[0])


@dataclass(frozen=True, kw_only=True)
class MetricComparison:
    """One metric of one group: both models, the paired delta (ticket - dense) and its interval."""

    dense: float
    ticket: float
    delta: float
    ci: tuple[float, float]
    ci_method: str
    p_value: float
    dense_ci: tuple[float, float]
    ticket_ci: tuple[float, float]
    domain: int
    insufficient: bool

    def to_dict(self) -> dict[str, Any]:
        return {"dense": number(self.dense), "ticket": number(self.ticket), "delta": number(self.delta),
                "ci": interval(*self.ci), "ci_method": self.ci_method, "p_value": number(self.p_value),
                "dense_ci": interval(*self.dense_ci), "ticket_ci": interval(*self.ticket_ci),
                "domain": self.domain, "insufficient": self.insufficient}


@dataclass(frozen=True)
class PairedCounts:
    """Discordant counts of an accuracy comparison, kept so checks can recompute intervals."""

    b: int
    c: int
    n: int


@dataclass(frozen=True, kw_only=True)
class GroupMetrics:
    """Everything measured on one group (or on all rows, for ``overall``)."""

    group: str
    attribute: str
    n: int
    positives: int
    insufficient: bool
    metrics: dict[str, MetricComparison]
    accuracy_counts: PairedCounts
    complement_counts: PairedCounts | None
    excess_drop: stats.PairedDifference | None
    mcnemar_p: float

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group": self.group, "attribute": self.attribute, "n": self.n, "positives": self.positives,
            "insufficient": self.insufficient,
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "discordant": {"dense_only_correct": self.accuracy_counts.b, "ticket_only_correct": self.accuracy_counts.c},
            "mcnemar_p": number(self.mcnemar_p),
        }
        if self.excess_drop is not None:
            e = self.excess_drop
            out["excess_drop"] = {"value": number(e.estimate), "ci": interval(e.low, e.high),
                                  "p_value": number(e.p_value)}
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class Gap:
    """max - min of a metric over an attribute's sufficient groups, for both models."""

    attribute: str
    metric: str
    groups: tuple[str, ...]
    dense: float
    ticket: float
    widening: float
    ci: tuple[float, float]
    p_value: float
    dense_extremes: tuple[str, str]
    ticket_extremes: tuple[str, str]
    replicates: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "metric": self.metric, "groups": list(self.groups),
                "dense": number(self.dense), "ticket": number(self.ticket), "widening": number(self.widening),
                "ci": interval(*self.ci), "p_value": number(self.p_value),
                "dense_extremes": {"max": self.dense_extremes[0], "min": self.dense_extremes[1]},
                "ticket_extremes": {"max": self.ticket_extremes[0], "min": self.ticket_extremes[1]}}


@dataclass(frozen=True, eq=False, kw_only=True)
class PerformanceResult:
    """Per-group comparison of both models with intervals; ``overall`` is the whole data."""

    task: str
    classes: tuple[str, ...]
    confidence: float
    n_boot: int
    overall: GroupMetrics
    subgroups: tuple[GroupMetrics, ...]
    gaps: tuple[Gap, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "classes": list(self.classes), "confidence": self.confidence,
                "n_boot": self.n_boot, "overall": self.overall.to_dict(),
                "gaps": [g.to_dict() for g in self.gaps]}


METRICFRAME_MAX_GROUPS = 50
"""Families (a sensitive column, or an intersection) with more groups take their point estimates from the counts
(equal to MetricFrame's by test): MetricFrame calls each scikit-learn metric once per group, about 30 ms a group,
so 10,000 intersections would cost minutes; the counts give every group at once."""


def _metricframe_values(settings: AnalysisSettings, cells: CellTable) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {group name: {metric: value}}} from fairlearn MetricFrame, per attribute, plus overall.

    MetricFrame runs on the distinct (stratum, label, dense prediction, ticket prediction) cells with
    their row counts as ``sample_weight``: the same values as on the rows (counts are exact), at a
    cost independent of the row count.
    """
    groups = settings.groups
    sizes = Counter(group.attribute for group in groups.groups)
    small = {attribute for attribute, size in sizes.items() if size <= METRICFRAME_MAX_GROUPS}
    out: dict[str, dict[str, dict[str, float]]] = {model: {} for model in MODELS}
    if not small:  # every family is read from the counts: no cells to merge, no fairlearn to import
        return out
    from fairlearn.metrics import MetricFrame

    n_classes = len(settings.class_names)
    parts = cells.decode()
    key = parts["stratum"]
    for name in ("label", "dense", "ticket"):
        key = key * n_classes + parts[name]
    merged, position = np.unique(key, return_inverse=True)
    weight = np.bincount(position, weights=cells.counts).astype(np.int64)
    ticket_pred, rest = merged % n_classes, merged // n_classes
    dense_pred, rest = rest % n_classes, rest // n_classes
    labels, stratum = rest % n_classes, rest // n_classes
    preds = {"dense": dense_pred, "ticket": ticket_pred}
    families: dict[str, np.ndarray] = {}
    for group in groups.groups:  # each stratum's group in each family, from the groups' own strata
        if group.attribute in small:
            family = families.setdefault(group.attribute, np.empty(groups.n_strata, dtype=object))
            family[list(group.strata)] = group.name
    families = {attribute: per_stratum[stratum] for attribute, per_stratum in families.items()}
    metrics = sklearn_metrics(n_classes)
    weights = {name: {"sample_weight": weight} for name in metrics}
    for model in MODELS:
        values: dict[str, dict[str, float]] = {}
        for attribute, cell_groups in families.items():
            frame = MetricFrame(metrics=metrics, y_true=labels, y_pred=preds[model], sample_params=weights,
                                sensitive_features=pd.Series(cell_groups, name=attribute))
            for name, row in frame.by_group.iterrows():
                values[str(name)] = {metric: float(row[metric]) for metric in metrics}
            if "overall" not in values:  # the same in every family: take the first's
                values["overall"] = {metric: float(frame.overall[metric]) for metric in metrics}
        out[model] = values
    return out


def _membership(groups: tuple[Group, ...], n_strata: int) -> Any:
    """(groups + overall, strata) sparse 0/1 matrix (CSR); the last row is the whole data. Sparse, because each
    group is a union of strata (an intersection is one): its products cost the memberships, not groups x strata."""
    from scipy import sparse

    columns = [np.asarray(group.strata, dtype=np.int64) for group in groups] + [np.arange(n_strata)]
    rows = np.repeat(np.arange(len(columns)), [len(c) for c in columns])
    return sparse.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(columns))), shape=(len(columns), n_strata))


def _bootstrap_metrics(inputs: AnalysisSettings, cells: CellTable, membership: Any) -> dict[str, dict[str, np.ndarray]]:
    """{model: {metric: (n_boot, groups + 1)}} from the stratified multinomial bootstrap. Each chunk's metrics are
    computed on a second thread while the next chunk is drawn."""
    n_strata = inputs.groups.n_strata
    layout = metric_layout(cells.layout)
    chunk = int(np.clip(BOOTSTRAP_CHUNK_BYTES // (8 * n_strata * len(layout.names)), 8, 128))

    sizes = np.diff(membership.indptr)
    single = np.flatnonzero(sizes == 1)  # a group that is one stratum (an intersection): its sums are that stratum's
    union = np.flatnonzero(sizes != 1)
    single_stratum = membership.indices[membership.indptr[single]]
    union_membership = membership[union]

    def chunk_metrics(per_stratum: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """{model: {metric: (G + 1, replicates)}}: one-stratum groups read their stratum's metrics, the others sum
        their strata first (no copy of every stratum's sums per group)."""
        _, q, replicates = per_stratum.shape
        per_union = np.asarray(union_membership @ per_stratum.reshape(n_strata, q * replicates))
        parts = [(single, np.moveaxis(per_stratum, 1, -1), single_stratum),  # (S, B, q): each column contiguous
                 (union, np.moveaxis(per_union.reshape(-1, q, replicates), 1, -1), slice(None))]
        out: dict[str, dict[str, np.ndarray]] = {model: {} for model in MODELS}
        for rows, sums, pick in parts:
            if not len(rows):
                continue
            for model in MODELS:
                for name, values in metrics_from_sums(sums, layout, model).items():
                    target = out[model].setdefault(name, np.empty((len(sizes), replicates)))
                    target[rows] = values[pick]
        return out

    boot: dict[str, dict[str, np.ndarray]] = {m: {} for m in MODELS}

    def store(start: int, part: dict[str, dict[str, np.ndarray]]) -> None:
        for model, values in part.items():
            for name, value in values.items():  # (G + 1, replicates) -> rows start... of (n_boot, G + 1)
                target = boot[model].setdefault(name, np.empty((inputs.n_boot, value.shape[0])))
                target[start:start + value.shape[1]] = value.T

    with ThreadPoolExecutor(max_workers=1) as worker:
        pending: tuple[int, Any] | None = None
        start = 0
        for per_stratum in cells.resampled_stratum_sums(n_strata, layout=layout, n_boot=inputs.n_boot,
                                                        seed=inputs.seed, chunk=chunk):
            if pending is not None:  # at most one chunk waits: memory stays two chunks
                store(pending[0], pending[1].result())
            pending = (start, worker.submit(chunk_metrics, per_stratum))
            start += per_stratum.shape[2]
        if pending is not None:
            store(pending[0], pending[1].result())
    return boot


BOOTSTRAP_CHUNK_BYTES = 128 * 2**20
"""Replicates are summed a chunk at a time: at most this many bytes of per-stratum sums (8 to 128 replicates); two
chunks are alive at once (one drawn, one turned into metrics)."""


def analyse_performance(inputs: AnalysisInputs, *, point_estimates: str = "fairlearn") -> PerformanceResult:
    """Compare both models on every group: MetricFrame values, paired intervals, gaps.

    ``point_estimates="counts"`` takes the point estimates from the sufficient statistics instead of
    fairlearn's MetricFrame (equal by test, much faster): for simulations that run thousands of audits.
    """
    cells = build_cells(labels=inputs.labels, proba_dense=inputs.predictions.proba_dense,
                        proba_ticket=inputs.predictions.proba_ticket, stratum=inputs.groups.stratum_of_row,
                        n_strata=inputs.groups.n_strata, bins=inputs.ece_bins)
    return performance_from_cells(inputs.settings, cells, point_estimates=point_estimates)


@dataclass(frozen=True, eq=False)
class _Observed:
    """Everything the per-group comparisons read: observed sums and metrics, bootstrap summaries, fairlearn's values."""

    settings: AnalysisSettings
    layout: Any
    observed: np.ndarray
    """(groups + overall, quantities) sums."""
    metrics: dict[str, dict[str, np.ndarray]]
    boot: dict[str, dict[str, np.ndarray]]
    frame_values: dict[str, dict[str, dict[str, float]]]
    specs: dict[str, Any]
    summaries: dict[str, dict[str, np.ndarray]]
    names: list[str]
    attributes: list[str]


def performance_from_cells(inputs: AnalysisSettings, cells: CellTable, *,
                           point_estimates: str = "fairlearn") -> PerformanceResult:
    """``analyse_performance`` from the cells alone: what chunked and sharded audits merge."""
    n_classes = len(inputs.class_names)
    seen = _observe(inputs, cells, point_estimates=point_estimates)
    names = metric_names(n_classes) + ["ece"]
    if n_classes > 2:
        names.insert(1, "macro_recall")
    columns = {metric: _metric_columns(seen, metric) for metric in names}
    results = _group_results(seen, columns)
    overall = results.pop()
    return PerformanceResult(task="binary" if n_classes == 2 else "multiclass", classes=inputs.class_names,
                             confidence=inputs.confidence, n_boot=inputs.n_boot, overall=overall,
                             subgroups=tuple(results), gaps=_gaps(seen, columns, n_classes))


def _observe(inputs: AnalysisSettings, cells: CellTable, *, point_estimates: str) -> _Observed:
    """Observed sums per group (sparse memberships), the stratified bootstrap and its per-metric summaries."""
    groups = inputs.groups
    membership = _membership(groups.groups, groups.n_strata)
    observed = np.asarray(membership @ cells.stratum_sums(cells.counts, groups.n_strata))  # (G+1, q)
    boot = _bootstrap_metrics(inputs, cells, membership)
    names = [g.name for g in groups.groups] + ["overall"]
    frame_values = (_metricframe_values(inputs, cells) if point_estimates == "fairlearn"
                    else {m: {name: {} for name in names} for m in MODELS})
    specs = {spec.name: spec for spec in paired_specs(len(inputs.class_names))}
    summarised = [metric for metric in boot["dense"] if metric not in specs]
    with ThreadPoolExecutor(max_workers=stats.worker_threads()) as pool:  # sorts: they release the interpreter lock
        summaries = dict(zip(summarised, pool.map(
            functools.partial(_bootstrap_summary, boot, confidence=inputs.confidence), summarised)))
    return _Observed(settings=inputs, layout=cells.layout, observed=observed,
                     metrics={m: metrics_from_sums(observed, cells.layout, m) for m in MODELS}, boot=boot,
                     frame_values=frame_values, specs=specs, summaries=summaries, names=names,
                     attributes=[g.attribute for g in groups.groups] + ["overall"])


@dataclass(frozen=True, kw_only=True)
class _MetricColumns:
    """One metric of every group at once (arrays indexed by group, the last the whole data): what each
    ``MetricComparison`` reads, computed in one pass instead of one group at a time."""

    dense: np.ndarray
    ticket: np.ndarray
    low: np.ndarray
    high: np.ndarray
    method: str
    p_value: np.ndarray
    dense_low: np.ndarray
    dense_high: np.ndarray
    ticket_low: np.ndarray
    ticket_high: np.ndarray
    domain: np.ndarray
    insufficient: np.ndarray

    def comparison(self, g: int) -> MetricComparison:
        dense, ticket = float(self.dense[g]), float(self.ticket[g])
        return MetricComparison(dense=dense, ticket=ticket, delta=ticket - dense,
                                ci=(float(self.low[g]), float(self.high[g])), ci_method=self.method,
                                p_value=float(self.p_value[g]),
                                dense_ci=(float(self.dense_low[g]), float(self.dense_high[g])),
                                ticket_ci=(float(self.ticket_low[g]), float(self.ticket_high[g])),
                                domain=int(self.domain[g]), insufficient=bool(self.insufficient[g]))


def _point_values(seen: _Observed, metric: str, model: str) -> np.ndarray:
    """Every group's value of one metric: MetricFrame's where it defines it, NaN where undefined (``_defined``)."""
    frame, counts = seen.frame_values[model], seen.metrics[model][metric]
    return np.array([_defined(frame.get(name, {}).get(metric), counts[g]) for g, name in enumerate(seen.names)])


def _metric_columns(seen: _Observed, metric: str) -> _MetricColumns:
    """One metric of every group: score-type intervals for paired proportions, the bootstrap for the rest."""
    rows, layout, confidence = seen.observed, seen.layout, seen.settings.confidence
    if metric == "macro_recall":
        return _macro_columns(seen, rows, layout)
    dense_v, ticket_v = _point_values(seen, metric, "dense"), _point_values(seen, metric, "ticket")
    if metric in seen.specs:
        spec = seen.specs[metric]
        size = domain_size(rows, layout, spec)
        diff = stats.paired_difference(layout.column(rows, f"paired:{metric}:b"),
                                       layout.column(rows, f"paired:{metric}:c"), size, confidence=confidence)
        low, high, p, method = diff.low, diff.high, diff.p_value, "bonett-price"
        dense_low, dense_high = stats.wilson_interval(_successes(rows, layout, spec, "dense"), size,
                                                      confidence=confidence)
        ticket_low, ticket_high = stats.wilson_interval(_successes(rows, layout, spec, "ticket"), size,
                                                        confidence=confidence)
        domain = size
    else:
        summary = seen.summaries[metric]
        low, high, p, method = summary["low"], summary["high"], summary["p"], "bootstrap-percentile"
        dense_low, dense_high = summary["dense_low"], summary["dense_high"]
        ticket_low, ticket_high = summary["ticket_low"], summary["ticket_high"]
        domain = _precision_domain(rows, layout) if metric == "precision" else layout.column(rows, "n")
    needed = seen.settings.min_group_size if metric in ("accuracy", "ece", "selection_rate") else MIN_RATE_DOMAIN
    undefined = np.isnan(dense_v) | np.isnan(ticket_v)
    low, high, p = (np.where(undefined, np.nan, x) for x in (low, high, p))
    return _MetricColumns(dense=dense_v, ticket=ticket_v, low=low, high=high, method=method, p_value=p,
                          dense_low=dense_low, dense_high=dense_high, ticket_low=ticket_low, ticket_high=ticket_high,
                          domain=np.asarray(domain).astype(np.int64), insufficient=np.asarray(domain) < needed)


def _macro_columns(seen: _Observed, rows: np.ndarray, layout: Any) -> _MetricColumns:
    """Macro recall (multiclass): bootstrap percentile intervals, never insufficient (each class recall says so)."""
    summary = seen.summaries["macro_recall"]
    n = layout.column(rows, "n")
    return _MetricColumns(dense=seen.metrics["dense"]["macro_recall"], ticket=seen.metrics["ticket"]["macro_recall"],
                          low=summary["low"], high=summary["high"], method="bootstrap-percentile", p_value=summary["p"],
                          dense_low=summary["dense_low"], dense_high=summary["dense_high"],
                          ticket_low=summary["ticket_low"], ticket_high=summary["ticket_high"],
                          domain=n.astype(np.int64), insufficient=np.zeros(len(n), dtype=bool))


def _group_results(seen: _Observed, columns: dict[str, _MetricColumns]) -> list[GroupMetrics]:
    """Every group's metrics (the last is the whole data), its excess drop against the rest, McNemar's p."""
    rows, layout, settings = seen.observed, seen.layout, seen.settings
    b = layout.column(rows, "paired:accuracy:b").astype(np.int64)
    c = layout.column(rows, "paired:accuracy:c").astype(np.int64)
    n = layout.column(rows, "n").astype(np.int64)
    positives = (layout.column(rows, "support:1") if len(settings.class_names) == 2 else n).astype(np.int64)
    rest_b, rest_c, rest_n = b[-1] - b, c[-1] - c, n[-1] - n
    excess = excess_drop(PairedCounts(b, c, n), PairedCounts(rest_b, rest_c, rest_n), confidence=settings.confidence)
    out = []
    for g, name in enumerate(seen.names):
        overall = name == "overall"
        out.append(GroupMetrics(
            group=name, attribute=seen.attributes[g], n=int(n[g]), positives=int(positives[g]),
            insufficient=bool(n[g] < settings.min_group_size),
            metrics={metric: column.comparison(g) for metric, column in columns.items()},
            accuracy_counts=PairedCounts(int(b[g]), int(c[g]), int(n[g])),
            complement_counts=None if overall else PairedCounts(int(rest_b[g]), int(rest_c[g]), int(rest_n[g])),
            excess_drop=None if overall else stats.PairedDifference(
                **{f: getattr(excess, f)[g] for f in ("estimate", "centre", "se", "low", "high", "p_value")}),
            mcnemar_p=stats.mcnemar_p_value(int(b[g]), int(c[g]))))
    return out


def _defined(frame_value: float | None, counts_value: float) -> float:
    """MetricFrame's value where fairlearn/sklearn define the metric (``None``: ours, e.g. ECE);
    NaN where the metric is undefined (empty denominator; fairlearn reports 0 there)."""
    if np.isnan(counts_value):
        return float("nan")
    return float(counts_value if frame_value is None else frame_value)


def _successes(rows: np.ndarray, layout: Any, spec: Any, model: str) -> np.ndarray:
    """Each group's successes of a paired proportion (rows: (groups, quantities) sums)."""
    if spec.indicator == "correct":
        return layout.column(rows, f"{model}:correct")
    k = spec.indicator.split(":")[1]
    if spec.domain == "all":
        return layout.column(rows, f"{model}:pred:{k}")
    domain_class = spec.domain.split(":")[1]
    if domain_class == k:
        return layout.column(rows, f"{model}:hit:{k}")
    return layout.column(rows, f"{model}:pred:{k}") - layout.column(rows, f"{model}:hit:{k}")


def _precision_domain(rows: np.ndarray, layout: Any) -> np.ndarray:
    return np.minimum(layout.column(rows, "dense:pred:1"), layout.column(rows, "ticket:pred:1"))


def _bootstrap_summary(boot: dict[str, dict[str, np.ndarray]], metric: str, *,
                       confidence: float) -> dict[str, np.ndarray]:
    """Every group's percentile intervals (delta, dense, ticket) and p-value of one metric, all groups at once."""
    delta = boot["ticket"][metric] - boot["dense"][metric]
    low, high = stats.percentile_interval(delta, confidence=confidence)
    dense_low, dense_high = stats.percentile_interval(boot["dense"][metric], confidence=confidence)
    ticket_low, ticket_high = stats.percentile_interval(boot["ticket"][metric], confidence=confidence)
    return {"low": low, "high": high, "p": stats.bootstrap_p_value(delta), "dense_low": dense_low,
            "dense_high": dense_high, "ticket_low": ticket_low, "ticket_high": ticket_high}


def excess_drop(group: PairedCounts, complement: PairedCounts, *, confidence: float) -> stats.PairedDifference:
    """psi_g = drop_g - drop_overall = (1 - w_g) (drop_g - drop_rest), with w_g = n_g / n.

    Drops are dense minus ticket accuracy; the group and the rest are disjoint rows, so the two
    Bonett–Price differences are independent and combine by MOVER.
    """
    drop_g = stats.paired_difference(group.c, group.b, group.n, confidence=confidence)
    drop_rest = stats.paired_difference(complement.c, complement.b, complement.n, confidence=confidence)
    scale = np.float64(complement.n / (group.n + complement.n))
    return stats.difference_of_differences(drop_g, drop_rest, scale=scale, confidence=confidence)


def _spread(replicates: np.ndarray) -> np.ndarray:
    """max - min per replicate; NaN where every group's metric is undefined in that replicate."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(replicates, 1) - np.nanmin(replicates, 1)


def _gaps(seen: _Observed, columns: dict[str, _MetricColumns], n_classes: int) -> tuple[Gap, ...]:
    """Each attribute's spread (max - min over its sufficient groups) of the gap metrics, both models, with the
    bootstrap interval of its widening."""
    gaps = []
    metrics = GAP_METRICS[2] if n_classes == 2 else GAP_METRICS["multi"]
    attributes = np.array(seen.attributes[:-1], dtype=object)
    names = seen.names[:-1]
    group_sufficient = seen.layout.column(seen.observed[:-1], "n") >= seen.settings.min_group_size
    for attribute in dict.fromkeys(seen.attributes[:-1]):
        in_family = (attributes == attribute) & group_sufficient
        for metric in metrics:
            column = columns[metric]
            dense_all, ticket_all = column.dense[:-1], column.ticket[:-1]
            members = np.flatnonzero(in_family & ~column.insufficient[:-1] & ~np.isnan(dense_all)
                                     & ~np.isnan(ticket_all))
            if len(members) < 2:
                continue
            dense_values, ticket_values = dense_all[members], ticket_all[members]
            d_gap = dense_values.max() - dense_values.min()
            t_gap = ticket_values.max() - ticket_values.min()
            reps = _spread(seen.boot["ticket"][metric][:, members]) - _spread(seen.boot["dense"][metric][:, members])
            low, high = stats.percentile_interval(reps, confidence=seen.settings.confidence)
            member_names = tuple(names[i] for i in members)
            gaps.append(Gap(attribute=attribute, metric=metric, groups=member_names, dense=float(d_gap),
                            ticket=float(t_gap), widening=float(t_gap - d_gap), ci=(float(low), float(high)),
                            p_value=float(stats.bootstrap_p_value(reps)),
                            dense_extremes=(member_names[int(np.argmax(dense_values))],
                                            member_names[int(np.argmin(dense_values))]),
                            ticket_extremes=(member_names[int(np.argmax(ticket_values))],
                                             member_names[int(np.argmin(ticket_values))]),
                            replicates=reps))
    return tuple(gaps)
