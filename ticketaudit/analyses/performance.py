"""Per-group metrics of both models (fairlearn ``MetricFrame``), paired deltas with intervals,
excess drop psi_g, gaps and their widening, all from one stratified bootstrap."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
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


def sklearn_metrics(n_classes: int) -> dict[str, Callable[..., float]]:
    """Metric definitions from fairlearn / scikit-learn, keyed by our metric names."""
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
    from fairlearn.metrics import MetricFrame

    groups = settings.groups
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
        family = families.setdefault(group.attribute, np.empty(groups.n_strata, dtype=object))
        family[list(group.strata)] = group.name
    families = {attribute: per_stratum[stratum] for attribute, per_stratum in families.items()}
    metrics = sklearn_metrics(n_classes)
    weights = {name: {"sample_weight": weight} for name in metrics}
    out: dict[str, dict[str, dict[str, float]]] = {}
    families = {attribute: cell_groups for attribute, cell_groups in families.items()
                if len(set(cell_groups)) <= METRICFRAME_MAX_GROUPS}
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
    """{model: {metric: (n_boot, groups + 1)}} from the stratified multinomial bootstrap."""
    n_strata = inputs.groups.n_strata
    layout = metric_layout(cells.layout)
    chunk = int(np.clip(BOOTSTRAP_CHUNK_BYTES // (8 * n_strata * len(layout.names)), 8, 128))
    chunks: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in MODELS}
    for per_stratum in cells.resampled_stratum_sums(n_strata, layout=layout, n_boot=inputs.n_boot, seed=inputs.seed,
                                                    chunk=chunk):  # (S, B, q)
        _, replicates, q = per_stratum.shape
        per_group = np.asarray(membership @ per_stratum.reshape(n_strata, replicates * q))
        per_group = per_group.reshape(-1, replicates, q).transpose(1, 0, 2)  # (B, G + 1, q)
        for model in MODELS:
            for name, values in metrics_from_sums(per_group, layout, model).items():
                chunks[model].setdefault(name, []).append(values)
    return {m: {name: np.concatenate(parts) for name, parts in chunks[m].items()} for m in MODELS}


BOOTSTRAP_CHUNK_BYTES = 256 * 2**20
"""Replicates are summed a chunk at a time: at most this many bytes of per-stratum sums (8 to 128 replicates)."""


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
    metric_names = list(sklearn_metrics(n_classes)) + ["ece"]
    if n_classes > 2:
        metric_names.insert(1, "macro_recall")
    results = [_group_metrics(seen, g, metric_names) for g in range(len(seen.names))]
    overall = results.pop()
    return PerformanceResult(task="binary" if n_classes == 2 else "multiclass", classes=inputs.class_names,
                             confidence=inputs.confidence, n_boot=inputs.n_boot, overall=overall,
                             subgroups=tuple(results), gaps=_gaps(results, seen.boot, inputs, n_classes))


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
    summaries = {metric: _bootstrap_summary(boot, metric, confidence=inputs.confidence)
                 for metric in boot["dense"] if metric not in specs}
    return _Observed(settings=inputs, layout=cells.layout, observed=observed,
                     metrics={m: metrics_from_sums(observed, cells.layout, m) for m in MODELS}, boot=boot,
                     frame_values=frame_values, specs=specs, summaries=summaries, names=names,
                     attributes=[g.attribute for g in groups.groups] + ["overall"])


def _comparison(seen: _Observed, g: int, metric: str) -> MetricComparison:
    """One metric of one group: score-type intervals for paired proportions, the bootstrap for the rest."""
    row, layout, confidence = seen.observed[g], seen.layout, seen.settings.confidence
    dense_v = _defined(seen.frame_values["dense"].get(seen.names[g], {}).get(metric), seen.metrics["dense"][metric][g])
    ticket_v = _defined(seen.frame_values["ticket"].get(seen.names[g], {}).get(metric),
                        seen.metrics["ticket"][metric][g])
    if metric in seen.specs:
        spec = seen.specs[metric]
        size = domain_size(row, layout, spec)
        diff = stats.paired_difference(layout.column(row, f"paired:{metric}:b"), layout.column(row, f"paired:{metric}:c"),
                                       size, confidence=confidence)
        ci, method, p = (float(diff.low), float(diff.high)), "bonett-price", float(diff.p_value)
        dense_ci = tuple(map(float, stats.wilson_interval(_successes(row, layout, spec, "dense"), size,
                                                          confidence=confidence)))
        ticket_ci = tuple(map(float, stats.wilson_interval(_successes(row, layout, spec, "ticket"), size,
                                                           confidence=confidence)))
        domain = int(size)
    else:
        summary = seen.summaries[metric]
        ci, method = (float(summary["low"][g]), float(summary["high"][g])), "bootstrap-percentile"
        p = float(summary["p"][g])
        dense_ci = (float(summary["dense_low"][g]), float(summary["dense_high"][g]))
        ticket_ci = (float(summary["ticket_low"][g]), float(summary["ticket_high"][g]))
        domain = int(_precision_domain(row, layout) if metric == "precision" else layout.column(row, "n"))
    needed = seen.settings.min_group_size if metric in ("accuracy", "ece", "selection_rate") else MIN_RATE_DOMAIN
    if np.isnan(dense_v) or np.isnan(ticket_v):
        ci, p = (float("nan"), float("nan")), float("nan")
    return MetricComparison(dense=dense_v, ticket=ticket_v, delta=ticket_v - dense_v, ci=ci, ci_method=method,
                            p_value=p, dense_ci=dense_ci, ticket_ci=ticket_ci, domain=domain,
                            insufficient=bool(domain < needed))


def _counts(row: np.ndarray, layout: Any) -> PairedCounts:
    return PairedCounts(int(layout.column(row, "paired:accuracy:b")), int(layout.column(row, "paired:accuracy:c")),
                        int(layout.column(row, "n")))


def _group_metrics(seen: _Observed, g: int, metric_names: list[str]) -> GroupMetrics:
    """Every metric of group ``g`` (the last is the whole data), its excess drop against the rest, McNemar's p."""
    row, layout = seen.observed[g], seen.layout
    acc = _counts(row, layout)
    metrics = {m: _comparison(seen, g, m) if m != "macro_recall"
               else _macro(g, seen.metrics, seen.boot, row, layout, seen.settings.confidence) for m in metric_names}
    complement = excess = None
    if seen.names[g] != "overall":
        complement = _counts(seen.observed[-1] - row, layout)
        excess = excess_drop(acc, complement, confidence=seen.settings.confidence)
    two = len(seen.settings.class_names) == 2
    return GroupMetrics(group=seen.names[g], attribute=seen.attributes[g], n=acc.n,
                        positives=int(layout.column(row, "support:1")) if two else int(layout.column(row, "n")),
                        insufficient=acc.n < seen.settings.min_group_size, metrics=metrics, accuracy_counts=acc,
                        complement_counts=complement, excess_drop=excess,
                        mcnemar_p=stats.mcnemar_p_value(acc.b, acc.c))


def _defined(frame_value: float | None, counts_value: float) -> float:
    """MetricFrame's value where fairlearn/sklearn define the metric (``None``: ours, e.g. ECE);
    NaN where the metric is undefined (empty denominator; fairlearn reports 0 there)."""
    if np.isnan(counts_value):
        return float("nan")
    return float(counts_value if frame_value is None else frame_value)


def _successes(row: np.ndarray, layout: Any, spec: Any, model: str) -> float:
    if spec.indicator == "correct":
        return float(layout.column(row, f"{model}:correct"))
    k = spec.indicator.split(":")[1]
    if spec.domain == "all":
        return float(layout.column(row, f"{model}:pred:{k}"))
    domain_class = spec.domain.split(":")[1]
    if domain_class == k:
        return float(layout.column(row, f"{model}:hit:{k}"))
    return float(layout.column(row, f"{model}:pred:{k}") - layout.column(row, f"{model}:hit:{k}"))


def _precision_domain(row: np.ndarray, layout: Any) -> float:
    return float(min(layout.column(row, "dense:pred:1"), layout.column(row, "ticket:pred:1")))


def _bootstrap_summary(boot: dict[str, dict[str, np.ndarray]], metric: str, *,
                       confidence: float) -> dict[str, np.ndarray]:
    """Every group's percentile intervals (delta, dense, ticket) and p-value of one metric, all groups at once."""
    delta = boot["ticket"][metric] - boot["dense"][metric]
    low, high = stats.percentile_interval(delta, confidence=confidence)
    dense_low, dense_high = stats.percentile_interval(boot["dense"][metric], confidence=confidence)
    ticket_low, ticket_high = stats.percentile_interval(boot["ticket"][metric], confidence=confidence)
    return {"low": low, "high": high, "p": stats.bootstrap_p_value(delta), "dense_low": dense_low,
            "dense_high": dense_high, "ticket_low": ticket_low, "ticket_high": ticket_high}


def _macro(
    g: int,
    observed: dict[str, dict[str, np.ndarray]],
    boot: dict[str, dict[str, np.ndarray]],
    row: np.ndarray,
    layout: Any,
    confidence: float,
) -> MetricComparison:
    dense_v, ticket_v = float(observed["dense"]["macro_recall"][g]), float(observed["ticket"]["macro_recall"][g])
    delta_boot = boot["ticket"]["macro_recall"][:, g] - boot["dense"]["macro_recall"][:, g]
    ci = tuple(map(float, stats.percentile_interval(delta_boot, confidence=confidence)))
    return MetricComparison(
        dense=dense_v,
        ticket=ticket_v,
        delta=ticket_v - dense_v,
        ci=ci,
        ci_method="bootstrap-percentile",
        p_value=float(stats.bootstrap_p_value(delta_boot)),
        dense_ci=tuple(
            map(float, stats.percentile_interval(boot["dense"]["macro_recall"][:, g], confidence=confidence))
        ),
        ticket_ci=tuple(
            map(float, stats.percentile_interval(boot["ticket"]["macro_recall"][:, g], confidence=confidence))
        ),
        domain=int(layout.column(row, "n")),
        insufficient=False,
    )


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


def _gaps(
    results: list[GroupMetrics], boot: dict[str, dict[str, np.ndarray]], inputs: AnalysisSettings, n_classes: int
) -> tuple[Gap, ...]:
    gaps = []
    metrics = GAP_METRICS[2] if n_classes == 2 else GAP_METRICS["multi"]
    attributes = list(dict.fromkeys(r.attribute for r in results))
    for attribute in attributes:
        for metric in metrics:
            members = [
                i
                for i, r in enumerate(results)
                if r.attribute == attribute
                and not r.insufficient
                and not r.metrics[metric].insufficient
                and not np.isnan(r.metrics[metric].dense)
                and not np.isnan(r.metrics[metric].ticket)
            ]
            if len(members) < 2:
                continue
            dense_values = np.array([results[i].metrics[metric].dense for i in members])
            ticket_values = np.array([results[i].metrics[metric].ticket for i in members])
            d_gap = dense_values.max() - dense_values.min()
            t_gap = ticket_values.max() - ticket_values.min()
            dense_reps = boot["dense"][metric][:, members]
            ticket_reps = boot["ticket"][metric][:, members]
            reps = _spread(ticket_reps) - _spread(dense_reps)
            low, high = stats.percentile_interval(reps, confidence=inputs.confidence)
            names = tuple(results[i].group for i in members)
            gaps.append(
                Gap(
                    attribute=attribute,
                    metric=metric,
                    groups=names,
                    dense=float(d_gap),
                    ticket=float(t_gap),
                    widening=float(t_gap - d_gap),
                    ci=(float(low), float(high)),
                    p_value=float(stats.bootstrap_p_value(reps)),
                    dense_extremes=(names[int(np.argmax(dense_values))], names[int(np.argmin(dense_values))]),
                    ticket_extremes=(names[int(np.argmax(ticket_values))], names[int(np.argmin(ticket_values))]),
                    replicates=reps,
                )
            )
    return tuple(gaps)
