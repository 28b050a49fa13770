"""Apply a ``Policy`` to the analyses: each check ends ``fail``, ``pass`` or ``inconclusive``.

- ``fail``: the harm is material (estimate beyond the tolerance) and significant (Holm-adjusted p
  below 1 - confidence); all gated checks of an audit form one family, so a harmless ticket fails with
  probability at most 1 - confidence.
- ``pass``: the data rule out a harm as large as the tolerance: the check's one-sided upper bound at
  1 - alpha/m (two one-sided tests for a shift either way) lies below it. With Bonferroni over the m
  checks, the chance that any check passes while its true harm is at the tolerance is at most alpha.
- ``inconclusive``: neither; the data are too few to tell. Each check also carries the harm it would
  catch with 80% power at its size and spread (``minimum_detectable_harm``) and, when inconclusive,
  about how many more rows would settle it at the current estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .analyses import stats
from .analyses.base import interval, number
from .analyses.candidates import (GAP_TOLERANCES, RATE_CHECKS, Candidate, performance_candidates,  # noqa: F401
                                  replicate_candidate, se_from_interval)
from .analyses.performance import PerformanceResult
from .config import Policy

POWER = 0.8
"""The power at which ``minimum_detectable_harm`` is computed."""
Status = Literal["pass", "fail", "inconclusive", "not_evaluated"]
STATUS_ORDER: dict[str, int] = {"fail": 0, "inconclusive": 1, "pass": 2}
"""Verdict order; a ``not_evaluated`` check counts as the policy's ``on_not_evaluated``."""


@dataclass(frozen=True, kw_only=True)
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
    status: Status
    pass_bound: float
    """The one-sided bound (upper; for shifts either way, the larger in size) that must be within the
    tolerance to pass."""
    minimum_detectable_harm: float
    rows: int | None = None
    """The rows the check's estimate rests on (its group's, or all rows), when one group's size sets it."""
    rows_to_settle: int | None = None
    """Inconclusive checks: about how many more rows would make the current estimate pass or fail."""
    reason: str | None = None
    """``not_evaluated`` checks: why the audit could not evaluate the gate, and what would."""

    @property
    def passed(self) -> bool:
        """True unless the check failed (kept for compatibility: an inconclusive check has not failed)."""
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "status": self.status, "value": number(self.value),
                "tolerance": self.tolerance, "interval": interval(*self.interval), "p_value": number(self.p_value),
                "p_value_raw": number(self.p_value_raw), "group": self.group, "metric": self.metric,
                "material": self.material, "significant": self.significant, "description": self.description,
                "pass_bound": number(self.pass_bound),
                "minimum_detectable_harm": number(self.minimum_detectable_harm), "rows": self.rows,
                "rows_to_settle": self.rows_to_settle, "reason": self.reason}


def evaluate_policy(policy: Policy, performance: PerformanceResult, *,
                    extra: list[Candidate] | tuple[Candidate, ...] = ()) -> tuple[Check, ...]:
    """All gated checks: the performance checks of the policy and ``extra`` ones (other analyses'),
    decided together with Holm's correction across them."""
    return decide([*performance_candidates(policy, performance), *extra], confidence=policy.confidence)


def decide(candidates: list[Candidate], *, confidence: float) -> tuple[Check, ...]:
    """Holm-adjusted significance, Bonferroni TOST bounds and the three outcomes for every candidate."""
    m = len(candidates)
    adjusted = stats.holm(np.array([c.p_raw for c in candidates]))
    alpha = 1 - confidence
    simultaneous = 1 - alpha / m
    one_sided = 1 - 2 * alpha / m  # a two-sided interval whose ends are one-sided bounds at 1 - alpha/m
    z_significant, z_pass = stats.z_value(simultaneous), stats.z_value(one_sided)
    checks = []
    for candidate, p_adj in zip(candidates, adjusted):
        value, tolerance, se = candidate.value, candidate.tolerance, candidate.se
        size = abs(value) if candidate.two_sided else value
        material = bool(np.isfinite(value) and size > tolerance)
        significant = bool(np.isfinite(p_adj) and p_adj < alpha)
        low, high = candidate.interval_at(one_sided)
        pass_bound = max(-low, high) if candidate.two_sided else high
        equivalent = bool(np.isfinite(pass_bound) and pass_bound < tolerance)
        status: Status = "fail" if material and significant else "pass" if equivalent else "inconclusive"
        checks.append(
            Check(
                id=candidate.id,
                description=candidate.description,
                group=candidate.group,
                metric=candidate.metric,
                value=value,
                tolerance=tolerance,
                interval=candidate.interval_at(simultaneous),
                p_value=float(p_adj),
                p_value_raw=candidate.p_raw,
                material=material,
                significant=significant,
                status=status,
                pass_bound=float(pass_bound),
                minimum_detectable_harm=_detectable_harm(se, tolerance=tolerance, z_significant=z_significant),
                rows=candidate.rows,
                rows_to_settle=_rows_to_settle(candidate, z_significant, z_pass) if status == "inconclusive" else None,
            )
        )
    return tuple(checks)


def _detectable_harm(se: float, *, tolerance: float, z_significant: float) -> float:
    """The harm a check fails with ``POWER`` at spread ``se``: it must exceed the tolerance (material)
    and ``z_significant`` standard errors (significant), then ``z_{POWER}`` more for the power."""
    return float(max(tolerance, z_significant * se) + stats.z_value(2 * POWER - 1) * se)


def _rows_to_settle(candidate: Candidate, z_significant: float, z_pass: float) -> int | None:
    """More rows that would settle an inconclusive check at its current estimate (its spread shrinking as
    1/sqrt(rows)): enough for the bound to clear the tolerance, or for the harm to become significant."""
    value, tolerance, se, rows = abs(candidate.value), candidate.tolerance, candidate.se, candidate.rows
    if rows is None or not (np.isfinite(value) and np.isfinite(se)) or se <= 0 or value == tolerance:
        return None
    target_se = (tolerance - value) / z_pass if value < tolerance else value / z_significant
    return max(1, math.ceil(rows * (se / target_se) ** 2 - rows))


def insufficient_check(performance: PerformanceResult) -> Check:
    """With ``on_insufficient = "fail"``: fail when any group is too small to be gated."""
    small = [g.group for g in performance.subgroups if g.insufficient]
    nan = float("nan")
    return Check(
        id="insufficient_groups",
        description='Groups too small to audit (policy on_insufficient = "fail")',
        group=", ".join(small) or None,
        metric="n",
        value=float(len(small)),
        tolerance=0.0,
        interval=(nan, nan),
        p_value=nan,
        p_value_raw=nan,
        material=bool(small),
        significant=bool(small),
        status="fail" if small else "pass",
        pass_bound=nan,
        minimum_detectable_harm=nan,
    )


def verdict_of(checks: tuple[Check, ...], *, policy: Policy | None = None) -> Status:
    """``fail`` if any check fails, else ``inconclusive`` if any is, else ``pass``; a ``not_evaluated`` check
    counts as the policy's ``on_not_evaluated`` (inconclusive by default)."""
    counted = [(policy or Policy()).counted_status(c.status) for c in checks]
    return min(counted, key=STATUS_ORDER.__getitem__, default="pass")  # type: ignore[return-value]


def not_evaluated_check(key: str, tolerance: float, *, family: str, reason: str) -> Check:
    """A gate the policy sets (``key``) that this audit could not evaluate, with the reason in plain words."""
    nan = float("nan")
    return Check(id=family, description=f"Policy gate {key} (not evaluated)", group=None, metric="not_evaluated",
                 value=nan, tolerance=tolerance, interval=(nan, nan), p_value=nan, p_value_raw=nan, material=False,
                 significant=False, status="not_evaluated", pass_bound=nan, minimum_detectable_harm=nan,
                 reason=reason)


def group_findings(
    performance: PerformanceResult, checks: tuple[Check, ...], *, confidence: float
) -> dict[str, dict[str, Any]]:
    """Per group: its status (the worst of its checks, or ``insufficient``), the accuracy / TPR / FPR
    harm the audit would catch with 80% power at its size (with the same multiplicity as the gate), and
    the rows that would settle its inconclusive checks."""
    z_significant = stats.z_value(1 - (1 - confidence) / max(1, len(checks)))
    by_group: dict[str, list[Check]] = {}
    for check in checks:
        if check.group is not None:
            by_group.setdefault(check.group, []).append(check)
    findings = {}
    for group in performance.subgroups:
        own = by_group.get(group.group, [])
        status = "insufficient" if group.insufficient else verdict_of(tuple(own))
        detectable: dict[str, float | None] = {}
        for metric in ("accuracy", "tpr", "fpr"):
            gated = [c for c in own if c.metric == metric and np.isfinite(c.minimum_detectable_harm)]
            comparison = group.metrics.get(metric)
            if gated:
                detectable[metric] = number(min(c.minimum_detectable_harm for c in gated))
            elif comparison is not None and not comparison.insufficient and all(np.isfinite(comparison.ci)):
                harm = _detectable_harm(
                    se_from_interval(comparison.ci, confidence=confidence), tolerance=0.0, z_significant=z_significant
                )
                detectable[metric] = number(harm) if harm < 1 else None  # no change of a rate that size exists
            else:
                detectable[metric] = None
        settle = [c.rows_to_settle for c in own if c.rows_to_settle is not None]
        findings[group.group] = {
            "status": status,
            "minimum_detectable_harm": detectable,
            "rows_to_settle": max(settle) if settle else None,
        }
    return findings


RATE_WORDS = {"tpr": "true-positive rate", "fpr": "false-positive rate", "selection_rate": "selection rate"}


def rates_moved_together(performance: PerformanceResult) -> tuple[dict[str, Any], ...]:
    """Rates that moved one way overall (interval excluding 0) and in more than half of the groups large
    enough to judge: a shift that hits everyone alike, which gap checks cannot see."""
    if performance.task != "binary":
        return ()
    out = []
    for metric in RATE_WORDS:
        overall = performance.overall.metrics.get(metric)
        if overall is None or not all(np.isfinite(overall.ci)) or overall.ci[0] <= 0 <= overall.ci[1]:
            continue
        sign = 1.0 if overall.delta > 0 else -1.0
        judged = [
            g.metrics[metric]
            for g in performance.subgroups
            if not g.insufficient
            and metric in g.metrics
            and not g.metrics[metric].insufficient
            and np.isfinite(g.metrics[metric].delta)
        ]
        moved = [m for m in judged if sign * m.delta > 0]
        if judged and len(moved) * 2 > len(judged):
            out.append(
                {
                    "metric": metric,
                    "words": RATE_WORDS[metric],
                    "direction": "rose" if sign > 0 else "fell",
                    "overall": number(overall.delta),
                    "overall_ci": interval(*overall.ci),
                    "groups": len(moved),
                    "of": len(judged),
                    "significant": sum(1 for m in moved if (m.ci[0] > 0 if sign > 0 else m.ci[1] < 0)),
                    "smallest": number(min((m.delta for m in moved), key=abs)),
                    "largest": number(max((m.delta for m in moved), key=abs)),
                }
            )
    return tuple(out)
