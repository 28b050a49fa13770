"""Reports that stay readable at any number of groups: above ``MAX_LISTED_GROUPS`` the JSON (and so the HTML,
JUnit, Markdown) lists the groups that matter and counts the rest; every group stays one option away
(``--all-groups``, or ``--groups-table FILE.parquet`` with every group's numbers as columns).

Which groups are listed, in this order, up to the limit: those with a failing or not-evaluated check; the
inconclusive ones whose harm could be largest (``pass_bound`` beyond the tolerance); the largest and the smallest
groups large enough to audit; then the rest by size. Groups too small to audit are counted, never listed one by one.
Every check of the whole audit counts in the verdict and in ``checks_summary``; checks of unlisted groups are left
out of ``checks`` except failures, which are always listed.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .gate import STATUSES

MAX_LISTED_GROUPS = 100
"""Groups listed in the JSON and HTML when an audit has more (the rest are counted)."""
EXTREMES = 10
"""The largest and the smallest auditable groups always listed (when there are more than the limit)."""


def _severity(check: dict[str, Any]) -> float:
    """How far an inconclusive check's bound goes beyond its tolerance (larger: closer to a harm)."""
    bound, tolerance = check.get("pass_bound"), check.get("tolerance")
    if isinstance(bound, (int, float)) and isinstance(tolerance, (int, float)) and math.isfinite(bound):
        return float(bound) - float(tolerance)
    return -math.inf


def listed_groups(document: dict[str, Any], *, limit: int = MAX_LISTED_GROUPS) -> list[str]:
    """The groups a bounded report lists, most important first (see the module doc)."""
    groups = [g for g in document.get("subgroups", []) if not g.get("insufficient")]
    by_status: dict[str, list[dict[str, Any]]] = {}
    for check in document.get("checks", []):
        if check.get("group") is not None:
            by_status.setdefault(check["status"], []).append(check)
    order: list[str] = []
    for status in ("fail", "not_evaluated"):
        order += [c["group"] for c in by_status.get(status, [])]
    order += [c["group"] for c in sorted(by_status.get("inconclusive", []), key=lambda c: (-_severity(c), c["group"]))]
    by_size = sorted(groups, key=lambda g: (-g["n"], g["group"]))
    order += [g["group"] for g in by_size[:EXTREMES]] + [g["group"] for g in by_size[::-1][:EXTREMES]]
    order += [g["group"] for g in by_size]
    known = {g["group"] for g in groups}
    listed: list[str] = []
    for name in dict.fromkeys(order):
        if name in known and len(listed) < limit:
            listed.append(name)
    return listed


def bounded(document: dict[str, Any], *, limit: int = MAX_LISTED_GROUPS) -> dict[str, Any]:
    """``document`` with per-group lists cut to ``listed_groups`` when it has more groups than ``limit``, and what
    was left out counted (``groups_listed``, ``checks_summary``); unchanged otherwise."""
    subgroups = document.get("subgroups", [])
    if len(subgroups) <= limit:
        return document
    keep = set(listed_groups(document, limit=limit))
    out = dict(document)
    statuses = Counter(str(g.get("status", "insufficient")) if not g.get("insufficient") else "insufficient"
                       for g in subgroups)
    out["groups_listed"] = {"listed": len(keep), "total": len(subgroups), "limit": limit,
                            "by_status": dict(sorted(statuses.items())),
                            "rule": "failing and not-evaluated groups, then the inconclusive ones closest to a harm, "
                                    "the largest and smallest, then by size; too-small groups counted only"}
    out["subgroups"] = [g for g in subgroups if g["group"] in keep]
    checks = document.get("checks", [])
    out["checks_summary"] = {"total": len(checks), "by_status": {s: sum(c["status"] == s for c in checks)
                                                                 for s in STATUSES}}
    names = {g["group"] for g in subgroups}  # a gap check's "group" is its attribute, not a group: always kept
    out["checks"] = [c for c in checks if c.get("group") not in names or c["group"] in keep or c["status"] == "fail"]
    out["data"] = {**document["data"], "groups": [name for name in document["data"]["groups"] if name in keep],
                   "groups_total": len(document["data"]["groups"])}
    for section in ("disagreement", "attributions", "attention"):
        part = document.get(section)
        if isinstance(part, dict) and isinstance(part.get("groups"), list):
            out[section] = {**part, "groups": [g for g in part["groups"] if g.get("group") in keep]}
    performance = document.get("performance")
    if isinstance(performance, dict):
        out["performance"] = {**performance, "gaps": [{**gap, "groups": [n for n in gap.get("groups", []) if n in keep],
                                                        "groups_total": len(gap.get("groups", []))}
                                                       for gap in performance.get("gaps", [])]}
    return out
