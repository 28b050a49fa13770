"""Paired subgroup metrics (accuracy, TPR, FPR, selection rate, calibration) from the merged cells."""

from __future__ import annotations

from typing import Any

from ..base import Analysis, FinishContext

NUMBER_OR_NULL = {"type": ["number", "null"]}
INTERVAL = {"type": "array", "items": NUMBER_OR_NULL, "minItems": 2, "maxItems": 2}
METRIC = {
    "type": "object",
    "required": ["dense", "ticket", "delta", "ci"],
    "properties": {"dense": NUMBER_OR_NULL, "ticket": NUMBER_OR_NULL, "delta": NUMBER_OR_NULL, "ci": INTERVAL,
                   "ci_method": {"type": "string"}, "p_value": NUMBER_OR_NULL, "dense_ci": INTERVAL,
                   "ticket_ci": INTERVAL, "domain": {"type": "integer"}, "insufficient": {"type": "boolean"}},
}
GROUP = {
    "type": "object",
    "required": ["group", "n", "positives", "metrics", "insufficient"],
    "properties": {"group": {"type": "string"}, "attribute": {"type": "string"}, "n": {"type": "integer"},
                   "positives": {"type": "integer"}, "insufficient": {"type": "boolean"},
                   "metrics": {"type": "object", "additionalProperties": METRIC},
                   "unseen_category_rows": {"type": "object", "additionalProperties": {"type": "integer"}},
                   "status": {"enum": ["pass", "fail", "inconclusive", "insufficient"]},
                   "minimum_detectable_harm": {"type": "object", "additionalProperties": NUMBER_OR_NULL},
                   "rows_to_settle": {"type": ["integer", "null"]}},
}


NAMED_SMALL_GROUPS = 10
"""Groups too small to gate that the note names; more are counted."""


class Metrics(Analysis):
    name = "metrics"
    summary = "paired dense -> ticket metrics per group with intervals and significance (always runs)"
    order = 10
    required = True
    template = "_groups.html.j2"
    gates = {"max_tpr_drop": "tpr_drop", "max_fpr_rise": "fpr_rise", "max_selection_rate_change": "selection_rate_change"}

    def finish(self, state: Any, context: FinishContext) -> Any:
        from ..performance import performance_from_cells

        return performance_from_cells(context.settings, context.cells)

    def candidates(self, result: Any, policy: Any) -> list[Any]:
        from ..candidates import performance_candidates

        return performance_candidates(policy, result)

    def why_not_evaluated(self, result: Any, key: str) -> str:
        if result.task != "binary":
            return f"{key} gates a rate of the positive class, which a {result.task} task does not have"
        return (f"no group is large enough (rows, positives and negatives) to estimate the rate that {key} "
                "gates; more rows per group would")

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        small = [g.group for g in result.subgroups if g.insufficient]
        if not small:
            return []
        named = f": {', '.join(small)}" if len(small) <= NAMED_SMALL_GROUPS else " (counted, not listed one by one)"
        return [f"{len(small):,} group(s) have fewer than {context.settings.min_group_size} rows and are reported but "
                f"not gated{named}."]

    def schema_properties(self) -> dict[str, Any]:
        return {"performance": {"type": "object"}, "subgroups": {"type": "array", "items": GROUP}}

    def document(self, result: Any, audit: Any) -> dict[str, Any]:
        """``performance``, and ``subgroups`` with each group's findings and rows of unseen categories."""
        unseen: dict[str, dict[str, int]] = {}  # group -> {column: rows with a value the model cannot encode}
        for entry in audit.data.get("unseen_categories", []):
            for g in entry["groups"]:
                unseen.setdefault(g["group"], {})[entry["column"]] = g["rows"]
        subgroups = [{**group.to_dict(), **audit.findings.get(group.group, {}),
                      **({"unseen_category_rows": unseen[group.group]} if group.group in unseen else {})}
                     for group in result.subgroups]
        return {"performance": result.to_dict(), "subgroups": subgroups}


ANALYSIS = Metrics()
