"""Candidates for the release gate: each analysis's estimates turned into checks before the family's decision
(``checks.decide``). Part of the analyses layer, so analyses never import the gate above them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Policy
from . import stats
from .performance import Gap, GroupMetrics, PerformanceResult

GAP_TOLERANCES = {"accuracy": "max_gap_widening", "tpr": "max_tpr_gap_widening", "fpr": "max_fpr_gap_widening"}


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A check before the family's decision: estimate, tolerance, raw p-value, interval at any confidence."""

    id: str
    description: str
    group: str | None
    metric: str
    value: float
    tolerance: float
    p_raw: float
    interval_at: Any  # callable(confidence) -> (low, high)
    se: float
    rows: int | None = None
    two_sided: bool = False  # material when |value| exceeds the tolerance (a shift either way)


def performance_candidates(policy: Policy, performance: PerformanceResult) -> list[Candidate]:
    """The overall drop, each group's excess drop and optional rate checks, and the gap widenings."""
    candidates = [_overall_drop(policy, performance)]
    for group in performance.subgroups:
        if group.insufficient or group.complement_counts is None or group.complement_counts.n == 0:
            continue
        estimate = group.excess_drop
        assert estimate is not None
        candidates.append(
            Candidate(
                id=f"group_excess_drop:{group.group}",
                description="Excess accuracy drop ψ (group's drop minus the overall drop)",
                group=group.group,
                metric="accuracy",
                value=float(estimate.estimate),
                tolerance=policy.max_group_excess_drop,
                p_raw=float(estimate.p_value),
                interval_at=_normal_interval(float(estimate.centre), float(estimate.se)),  # MOVER: centre +- z se
                se=float(estimate.se),
                rows=group.n,
            )
        )
        candidates += _rate_candidates(policy, group, performance.task)
    for gap in performance.gaps:
        if gap.metric in GAP_TOLERANCES:
            candidates.append(_gap_candidate(policy, gap))
    return candidates


def _bounds(diff: stats.PairedDifference) -> tuple[float, float]:
    return float(diff.low), float(diff.high)


def _overall_drop(policy: Policy, performance: PerformanceResult) -> Candidate:
    counts = performance.overall.accuracy_counts

    def at(conf: float) -> tuple[float, float]:
        return _bounds(stats.paired_difference(counts.c, counts.b, counts.n, confidence=conf))

    drop = stats.paired_difference(counts.c, counts.b, counts.n, confidence=performance.confidence)
    return Candidate(
        id="overall_accuracy_drop",
        description="Overall accuracy drop from dense to ticket",
        group=None,
        metric="accuracy",
        value=float(drop.estimate),
        tolerance=policy.max_overall_accuracy_drop,
        p_raw=float(drop.p_value),
        interval_at=at,
        se=float(drop.se),
        rows=counts.n,
    )


RATE_CHECKS = {  # policy key: (metric, sign turning the ticket-minus-dense delta into harm, two-sided, words)
    "max_tpr_drop": ("tpr", -1.0, False, "True-positive-rate drop (dense minus ticket)"),
    "max_fpr_rise": ("fpr", 1.0, False, "False-positive-rate rise (ticket minus dense)"),
    "max_selection_rate_change": ("selection_rate", 1.0, True, "Selection-rate change (either way)"),
}


def _rate_candidates(policy: Policy, group: GroupMetrics, task: str) -> list[Candidate]:
    """Optional per-group rate checks (off unless their policy key is set; binary tasks)."""
    out = []
    for key, (metric, sign, two_sided, words) in RATE_CHECKS.items():
        tolerance = getattr(policy, key)
        comparison = group.metrics.get(metric)
        if (
            tolerance is None
            or task != "binary"
            or comparison is None
            or comparison.insufficient
            or not np.isfinite(comparison.delta)
        ):
            continue
        se = se_from_interval(comparison.ci, confidence=policy.confidence)
        centre = sign * (comparison.ci[0] + comparison.ci[1]) / 2
        out.append(
            Candidate(
                id=f"{key.removeprefix('max_')}:{group.group}",
                description=words,
                group=group.group,
                metric=metric,
                value=sign * comparison.delta,
                tolerance=tolerance,
                p_raw=stats.normal_p_value(centre, se),
                interval_at=_normal_interval(centre, se),
                se=se,
                rows=comparison.domain,
                two_sided=two_sided,
            )
        )
    return out


def _normal_interval(centre: float, se: float) -> Any:
    """``interval_at(confidence)`` for a normal estimate: centre +- z * se."""

    def at(conf: float) -> tuple[float, float]:
        z = stats.z_value(conf)
        return centre - z * se, centre + z * se

    return at


def se_from_interval(ci: tuple[float, float], *, confidence: float) -> float:
    """The standard error behind a symmetric interval at ``confidence``."""
    return (ci[1] - ci[0]) / (2 * stats.z_value(confidence))


def replicate_candidate(
    check_id: str,
    description: str,
    group: str | None,
    metric: str,
    value: float,
    tolerance: float,
    replicates: np.ndarray,
) -> Candidate:
    """A check from bootstrap replicates: standard error with a normal reference, which stays smooth
    at the small per-check levels that multiplicity control asks for."""
    se = stats.bootstrap_se(replicates)
    return Candidate(
        id=check_id,
        description=description,
        group=group,
        metric=metric,
        value=value,
        tolerance=tolerance,
        p_raw=stats.normal_p_value(value, se),
        interval_at=_normal_interval(value, se),
        se=se,
    )


def _gap_candidate(policy: Policy, gap: Gap) -> Candidate:
    label = {"accuracy": "Accuracy", "tpr": "True-positive-rate", "fpr": "False-positive-rate"}[gap.metric]
    return replicate_candidate(
        f"{gap.metric}_gap_widening:{gap.attribute}",
        f"{label} gap widening (max − min over groups)",
        gap.attribute,
        gap.metric,
        gap.widening,
        getattr(policy, GAP_TOLERANCES[gap.metric]),
        gap.replicates,
    )


