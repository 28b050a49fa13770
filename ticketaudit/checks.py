"""Apply a ``Policy`` to the analyses: each check has a value, tolerance, simultaneous interval,
Holm-adjusted p-value and verdict. A check fails only when the harm is material (estimate beyond
the tolerance) and significant (adjusted p < 1 - confidence); every gated check of an audit forms
one family, so the chance that any check fails on a harmless ticket stays at most 1 - confidence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analyses import stats
from .analyses.attention import AttentionResult
from .analyses.attributions import AttributionResult
from .analyses.base import interval, number
from .analyses.performance import Gap, PerformanceResult, excess_drop
from .config import Policy

GAP_TOLERANCES = {"accuracy": "max_gap_widening", "tpr": "max_tpr_gap_widening", "fpr": "max_fpr_gap_widening"}


@dataclass(frozen=True)
class Check:
    """One policy check and its outcome."""

    id: str
    description: str
    group: str | None
    metric: str
    value: float
    tolerance: float
    interval: tuple[float, float]
    p_value: float
    p_value_raw: float
    material: bool
    significant: bool

    @property
    def passed(self) -> bool:
        return not (self.material and self.significant)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "value": number(self.value), "tolerance": self.tolerance,
                "interval": interval(*self.interval), "p_value": number(self.p_value),
                "p_value_raw": number(self.p_value_raw), "group": self.group, "metric": self.metric,
                "material": self.material, "significant": self.significant, "description": self.description}


@dataclass(frozen=True)
class _Candidate:
    id: str
    description: str
    group: str | None
    metric: str
    value: float
    tolerance: float
    p_raw: float
    interval_at: Any  # callable(confidence) -> (low, high)
    two_sided: bool = False  # material when |value| exceeds the tolerance (a shift either way)


def evaluate_policy(policy: Policy, performance: PerformanceResult, *, attributions: AttributionResult | None = None,
                    attention: AttentionResult | None = None) -> tuple[Check, ...]:
    """All gated checks of the policy, with Holm's correction across them."""
    candidates = [_overall_drop(policy, performance)]
    for group in performance.subgroups:
        if group.insufficient or group.complement_counts is None or group.complement_counts.n == 0:
            continue
        estimate = group.excess_drop
        assert estimate is not None
        counts, rest = group.accuracy_counts, group.complement_counts
        candidates.append(_Candidate(
            f"group_excess_drop:{group.group}",
            "Excess accuracy drop ψ (group's drop minus the overall drop)", group.group, "accuracy",
            float(estimate.estimate), policy.max_group_excess_drop, float(estimate.p_value),
            lambda conf, counts=counts, rest=rest: _bounds(excess_drop(counts, rest, confidence=conf))))
    for gap in performance.gaps:
        if gap.metric in GAP_TOLERANCES:
            candidates.append(_gap_candidate(policy, gap))
    if policy.max_sensitive_reliance_increase is not None and attributions is not None:
        share = attributions.overall.sensitive_share
        if np.isfinite(share.delta):
            candidates.append(_replicate_candidate(
                "sensitive_reliance_increase", "Rise in the share of attribution on the sensitive columns", None,
                "attribution_share", share.delta, policy.max_sensitive_reliance_increase,
                attributions.sensitive_replicates))
    if policy.max_group_entropy_shift is not None and attention is not None:
        candidates += _entropy_shift_candidates(policy.max_group_entropy_shift, attention)
    m = len(candidates)
    adjusted = stats.holm(np.array([c.p_raw for c in candidates]))
    alpha = 1 - policy.confidence
    simultaneous = 1 - alpha / m
    checks = []
    for candidate, p_adj in zip(candidates, adjusted):
        size = abs(candidate.value) if candidate.two_sided else candidate.value
        material = bool(np.isfinite(candidate.value) and size > candidate.tolerance)
        significant = bool(np.isfinite(p_adj) and p_adj < alpha)
        checks.append(Check(candidate.id, candidate.description, candidate.group, candidate.metric, candidate.value,
                            candidate.tolerance, candidate.interval_at(simultaneous), float(p_adj), candidate.p_raw,
                            material, significant))
    return tuple(checks)


def _bounds(diff: stats.PairedDifference) -> tuple[float, float]:
    return float(diff.low), float(diff.high)


def _overall_drop(policy: Policy, performance: PerformanceResult) -> _Candidate:
    counts = performance.overall.accuracy_counts

    def at(conf: float) -> tuple[float, float]:
        return _bounds(stats.paired_difference(counts.c, counts.b, counts.n, confidence=conf))

    drop = stats.paired_difference(counts.c, counts.b, counts.n, confidence=performance.confidence)
    return _Candidate("overall_accuracy_drop", "Overall accuracy drop from dense to ticket", None, "accuracy",
                      float(drop.estimate), policy.max_overall_accuracy_drop, float(drop.p_value), at)


def _replicate_candidate(check_id: str, description: str, group: str | None, metric: str, value: float,
                         tolerance: float, replicates: np.ndarray) -> _Candidate:
    """A check from bootstrap replicates: standard error with a normal reference, which stays smooth
    at the small per-check levels that multiplicity control asks for."""
    se = stats.bootstrap_se(replicates)
    p_raw = stats.normal_p_value(value, se)

    def at(conf: float) -> tuple[float, float]:
        z = stats.z_value(conf)
        return value - z * se, value + z * se

    return _Candidate(check_id, description, group, metric, value, tolerance, p_raw, at)


def _entropy_shift_candidates(tolerance: float, attention: AttentionResult) -> list[_Candidate]:
    """Per group: its change in attention entropy minus the rest's (head-averaged), either direction."""
    candidates = []
    for group in attention.groups:
        if group.insufficient or not np.isfinite(group.interaction.value):
            continue
        candidate = _replicate_candidate(
            f"group_entropy_shift:{group.group}", "Attention-entropy change of the group minus the rest's",
            group.group, "attention_entropy", group.interaction.value, tolerance,
            attention.interaction_replicates[group.group])
        candidates.append(dataclasses.replace(candidate, two_sided=True))
    return candidates


def _gap_candidate(policy: Policy, gap: Gap) -> _Candidate:
    label = {"accuracy": "Accuracy", "tpr": "True-positive-rate", "fpr": "False-positive-rate"}[gap.metric]
    return _replicate_candidate(f"{gap.metric}_gap_widening:{gap.attribute}", f"{label} gap widening (max − min over groups)",
                                gap.attribute, gap.metric, gap.widening, getattr(policy, GAP_TOLERANCES[gap.metric]),
                                gap.replicates)


def insufficient_check(performance: PerformanceResult) -> Check:
    """With ``on_insufficient = "fail"``: fail when any group is too small to be gated."""
    small = [g.group for g in performance.subgroups if g.insufficient]
    return Check("insufficient_groups", "Groups too small to audit (policy on_insufficient = \"fail\")",
                 ", ".join(small) or None, "n", float(len(small)), 0.0, (float("nan"), float("nan")),
                 float("nan"), float("nan"), bool(small), bool(small))
