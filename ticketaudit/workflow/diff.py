"""What changed between two audits (``ticketaudit diff OLD.json NEW.json``): the verdict, the checks whose
state changed, and the per-group deltas (ticket − dense) that moved by more than their intervals allow.

A per-group move is tested as the difference of two estimates, each with the standard error its
interval implies (half-width / z), treated as independent; the p-values are Holm-adjusted over every
compared group × metric, so a diff of two audits of equally good tickets rarely shows a move. When both
audits used the same rows their estimates are positively correlated, which makes this conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidInputError
from ..report.formats import interval_points, points
from .reports import STATUS_RANK, as_document, check_title

HARM_DIRECTION = {"accuracy": -1, "tpr": -1, "precision": -1, "fpr": 1, "ece": 1}
"""Which way a delta is worse for the group (selection rate: neither; a move is shown, not judged)."""


@dataclass(frozen=True, kw_only=True)
class CheckChange:
    """One check whose state differs (or that exists in one audit only)."""

    id: str
    title: str
    old_status: str | None
    new_status: str | None
    old_value: float | None
    new_value: float | None

    @property
    def worse(self) -> bool:
        return STATUS_RANK.get(self.new_status or "pass", 0) > STATUS_RANK.get(self.old_status or "pass", 0)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "old_status": self.old_status, "new_status": self.new_status,
                "old_value": self.old_value, "new_value": self.new_value, "worse": self.worse}


@dataclass(frozen=True, kw_only=True)
class DeltaMove:
    """A group's delta of one metric that moved between the audits beyond what chance explains."""

    group: str
    metric: str
    old_delta: float
    new_delta: float
    interval: tuple[float, float]
    p_value: float
    worse: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "metric": self.metric, "old_delta": self.old_delta, "new_delta": self.new_delta,
                "change": self.new_delta - self.old_delta, "interval": list(self.interval), "p_value": self.p_value,
                "worse": self.worse}


@dataclass(frozen=True, kw_only=True)
class ReportDiff:
    """Two audits compared; ``regression`` is what ``--fail-on-regression`` exits 1 on."""

    old_verdict: str
    new_verdict: str
    checks: tuple[CheckChange, ...]
    moves: tuple[DeltaMove, ...]
    compared: int
    notes: tuple[str, ...]

    @property
    def regression(self) -> bool:
        """The verdict or a check got worse, or a group's delta moved significantly the harmful way."""
        return (STATUS_RANK[self.new_verdict] > STATUS_RANK[self.old_verdict] or any(c.worse for c in self.checks)
                or any(m.worse for m in self.moves))

    def to_dict(self) -> dict[str, Any]:
        return {"old_verdict": self.old_verdict, "new_verdict": self.new_verdict, "regression": self.regression,
                "checks": [c.to_dict() for c in self.checks], "moves": [m.to_dict() for m in self.moves],
                "compared_deltas": self.compared, "notes": list(self.notes)}

    def lines(self) -> list[str]:
        """The diff in plain words, a line each."""
        out = [f"verdict: {self.old_verdict.upper()} -> {self.new_verdict.upper()}"
               + (" (worse)" if STATUS_RANK[self.new_verdict] > STATUS_RANK[self.old_verdict] else "")]
        out += [f"note: {note}" for note in self.notes]
        for change in self.checks:
            mark = "WORSE" if change.worse else "better" if (change.old_status and change.new_status) else "changed"
            out.append(f"  {mark} {change.title}: {change.old_status or 'absent'} -> {change.new_status or 'absent'} "
                       f"({points(change.old_value, 2)} -> {points(change.new_value, 2)})")
        for move in self.moves:
            judged = {True: "WORSE", False: "better", None: "moved"}[move.worse]
            out.append(f"  {judged} {move.metric} delta for {move.group}: {points(move.old_delta, 2)} -> "
                       f"{points(move.new_delta, 2)} (change {interval_points(move.interval, 2, unit=True)}, adjusted p "
                       f"{move.p_value:.3g})")
        if not self.checks and not self.moves:
            out.append(f"  no check changed state and none of {self.compared} per-group deltas moved beyond chance.")
        out.append("regression: " + ("yes" if self.regression else "no"))
        return out


def _z(confidence: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1 - (1 - confidence) / 2))


def _finite(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _check_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[CheckChange]:
    before = {c["id"]: c for c in old["checks"]}
    after = {c["id"]: c for c in new["checks"]}
    changes = []
    for check_id in list(before) + [i for i in after if i not in before]:
        a, b = before.get(check_id), after.get(check_id)
        if a is not None and b is not None and a["status"] == b["status"]:
            continue
        changes.append(CheckChange(id=check_id, title=check_title(b or a), old_status=a and a["status"],
                                   new_status=b and b["status"], old_value=a and a.get("value"),
                                   new_value=b and b.get("value")))
    return changes


def _moves(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[DeltaMove], int]:
    """Per group × metric in both audits: the change of the delta, its interval and Holm-adjusted p."""
    import numpy as np
    from scipy import stats

    from ..analyses.stats import holm

    confidence = float(new.get("policy", {}).get("confidence", 0.95))
    z_old, z_new = _z(float(old.get("policy", {}).get("confidence", 0.95))), _z(confidence)
    before = {g["group"]: g for g in old["subgroups"]}
    candidates = []
    for group in new["subgroups"]:
        previous = before.get(group["group"])
        if previous is None or group.get("insufficient") or previous.get("insufficient"):
            continue
        for metric, estimate in group.get("metrics", {}).items():
            earlier = previous.get("metrics", {}).get(metric)
            if earlier is None or not _finite(estimate.get("delta"), earlier.get("delta"), *estimate.get("ci") or [None],
                                              *earlier.get("ci") or [None]):
                continue
            se = math.hypot((earlier["ci"][1] - earlier["ci"][0]) / (2 * z_old),
                            (estimate["ci"][1] - estimate["ci"][0]) / (2 * z_new))
            change = estimate["delta"] - earlier["delta"]
            p = 1.0 if se == 0 and change == 0 else (0.0 if se == 0 else float(2 * stats.norm.sf(abs(change) / se)))
            candidates.append((group["group"], metric, earlier["delta"], estimate["delta"], change, se, p))
    adjusted = holm(np.array([c[-1] for c in candidates])) if candidates else []
    alpha = 1 - confidence
    z_family = _z(1 - alpha / max(len(candidates), 1))  # Bonferroni-wide interval to show with a Holm decision
    moves = []
    for (group, metric, old_delta, new_delta, change, se, _), p in zip(candidates, adjusted):
        if p < alpha:
            moves.append(DeltaMove(group=group, metric=metric, old_delta=old_delta, new_delta=new_delta,
                                   interval=(change - z_family * se, change + z_family * se), p_value=float(p),
                                   worse=_judged(metric, change=change, new_delta=new_delta)))
    return moves, len(candidates)


def _judged(metric: str, *, change: float, new_delta: float) -> bool | None:
    """True: the delta moved the harmful way and the ticket now does the group harm (it is worse than the
    dense model there); False: it moved the benign way; None: not judged (selection rate, or a benefit
    over the dense model that shrank but remains)."""
    direction = HARM_DIRECTION.get(metric)
    if direction is None:
        return None
    if math.copysign(1.0, change) != direction:
        return False
    return True if new_delta * direction > 0 else None


def diff_reports(old: Any, new: Any) -> ReportDiff:
    """Compare two audits, each an ``AuditResult``, its JSON document or a report.json path."""
    old, new = as_document(old, what="OLD"), as_document(new, what="NEW")
    if old["data"]["target"] != new["data"]["target"]:
        raise InvalidInputError(f"the two audits predict different targets ({old['data']['target']!r} and "
                                f"{new['data']['target']!r}); compare audits of the same task.")
    notes = []
    if old["data"]["sha256"] != new["data"]["sha256"]:
        notes.append("the audits used different data (sha256 differs): changes mix the models' and the data's.")
    if old.get("policy") != new.get("policy"):
        notes.append("the policies differ: a check's state can change with its tolerance, not only with the model.")
    if old["models"]["ticket"]["sha256"] == new["models"]["ticket"]["sha256"]:
        notes.append("both audits are of the same ticket (same sha256).")
    shared = set(old["data"]["sensitive"]) & set(new["data"]["sensitive"])
    if set(old["data"]["sensitive"]) != set(new["data"]["sensitive"]):
        notes.append(f"the sensitive columns differ; only groups of both are compared ({', '.join(sorted(shared)) or 'none'}).")
    moves, compared = _moves(old, new)
    return ReportDiff(old_verdict=old["verdict"], new_verdict=new["verdict"], checks=tuple(_check_changes(old, new)),
                      moves=tuple(moves), compared=compared, notes=tuple(notes))
