"""The report's JSON Schema (``ticketaudit schema``) and its validation."""

from __future__ import annotations

from typing import Any

import jsonschema

NUMBER_OR_NULL = {"type": ["number", "null"]}
INTERVAL = {"type": "array", "items": NUMBER_OR_NULL, "minItems": 2, "maxItems": 2}
UNSEEN = {
    "type": "object",
    "required": ["column", "rows", "share", "values", "groups"],
    "properties": {"column": {"type": "string"}, "rows": {"type": "integer", "minimum": 1},
                   "share": {"type": "number"}, "values": {"type": "array", "items": {"type": "string"}},
                   "groups": {"type": "array", "items": {"type": "object", "required": ["group", "rows", "share"]}}},
}
MODEL = {
    "type": "object",
    "required": ["parameters", "nonzero", "sparsity", "sha256", "format"],
    "properties": {"parameters": {"type": "integer"}, "nonzero": {"type": "integer"},
                   "sparsity": {"type": "number", "minimum": 0, "maximum": 1},
                   "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "format": {"type": "string"},
                   "same_shape": {"type": "boolean"}, "nonzero_weights_vs_dense": {"type": "number", "minimum": 0}},
}
CHECK = {
    "type": "object",
    "required": ["id", "passed", "status", "value", "tolerance", "interval", "p_value", "group"],
    "properties": {"id": {"type": "string"}, "passed": {"type": "boolean"},
                   "status": {"enum": ["pass", "fail", "inconclusive", "not_evaluated"]}, "value": NUMBER_OR_NULL,
                   "reason": {"type": ["string", "null"]},
                   "pass_bound": NUMBER_OR_NULL, "minimum_detectable_harm": NUMBER_OR_NULL,
                   "rows": {"type": ["integer", "null"]}, "rows_to_settle": {"type": ["integer", "null"]},
                   "tolerance": {"type": "number"}, "interval": INTERVAL, "p_value": NUMBER_OR_NULL,
                   "group": {"type": ["string", "null"]}},
}

ESTIMATE = {"type": "object", "required": ["value", "ci"], "properties": {"value": NUMBER_OR_NULL, "ci": INTERVAL}}
CANDIDATE = {
    "type": "object",
    "required": ["name", "method", "sparsity", "accuracy", "accuracy_delta", "worst_group", "gap_widening",
                 "passes_policy"],
    "properties": {"name": {"type": "string"}, "sparsity": NUMBER_OR_NULL, "accuracy": NUMBER_OR_NULL,
                   "accuracy_delta": ESTIMATE, "gap_widening": ESTIMATE, "worst_group_accuracy": ESTIMATE,
                   "passes_policy": {"type": "boolean"},
                   "verdict": {"enum": ["pass", "fail", "inconclusive"]}},
}
ALTERNATIVES = {
    "type": "object",
    "required": ["split", "evaluation_rows", "candidates", "recommendation", "recommended"],
    "properties": {"candidates": {"type": "array", "items": CANDIDATE}, "recommendation": {"type": "string"},
                   "recommended": {"type": ["string", "null"]},
                   "budget": {"type": "object", "required": ["budget_seconds", "estimated_seconds", "ran", "skipped"],
                              "description": "What ran within the time budget (estimated from counted multiply-adds) "
                                             "and what was skipped, with each job's estimate."}},
}
PRUNE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://ticketaudit.invalid/schema/prune-1.0.json",
    "title": "ticketaudit prune",
    "type": "object",
    "required": ["schema_version", "tool_version", "dense", "data", "settings", "alternatives"],
    "properties": {"schema_version": {"type": "string"}, "alternatives": ALTERNATIVES},
}

_CORE_PROPERTIES: dict[str, Any] = {
    "schema_version": {"type": "string", "pattern": "^1\\.[0-9]+$"},
    "tool_version": {"type": "string"},
    "created": {"type": "string"},
    "verdict": {"enum": ["pass", "fail", "inconclusive"]},
    "rate_shifts": {"type": "array", "items": {"type": "object", "required": ["metric", "direction", "groups", "of"]}},
    "checks": {"type": "array", "items": CHECK},
    "checks_summary": {"type": "object", "required": ["total", "by_status"],
                       "properties": {"total": {"type": "integer"}, "by_status": {"type": "object"}}},
    "groups_listed": {"type": "object", "required": ["listed", "total", "limit", "by_status"],
                      "properties": {"listed": {"type": "integer"}, "total": {"type": "integer"},
                                     "limit": {"type": "integer"}, "by_status": {"type": "object"}}},
    "models": {"type": "object", "required": ["dense", "ticket"], "properties": {"dense": MODEL, "ticket": MODEL}},
    "data": {"type": "object", "required": ["rows", "sha256", "target", "sensitive", "groups"],
             "properties": {"rows": {"type": "integer", "minimum": 1}, "sha256": {"type": "string"},
                            "target": {"type": "string"}, "modality": {"type": "string"},
                            "sensitive": {"type": "array", "items": {"type": "string"}},
                            "groups": {"type": "array", "items": {"type": "string"}},
                            "unseen_categories": {"type": "array", "items": UNSEEN},
                            "truncation": {"type": "object", "required": ["strategy", "limit", "rows", "groups"],
                                           "properties": {"strategy": {"enum": ["head", "head+tail", "error"]},
                                                          "limit": {"type": "integer"},
                                                          "rows": {"type": "integer", "minimum": 0},
                                                          "groups": {"type": "array", "items": {
                                                              "type": "object",
                                                              "required": ["group", "rows", "share"]}}}}}},
    "alternatives": ALTERNATIVES,
    "settings": {"type": "object", "properties": {"precision": {"enum": ["float64", "float32", "bfloat16"]}}},
}


class ValidatedDocument(dict):  # type: ignore[type-arg]
    """A report document already checked against the schema: the adapters that read it (JUnit,
    Markdown, model card, MLflow, diff) skip a second validation, which costs seconds on many groups."""


def report_schema() -> dict[str, Any]:
    """The report's JSON Schema: the core keys and every registered analysis's section."""
    from ..analyses import registry

    properties = dict(_CORE_PROPERTIES)
    for analysis in registry.analyses():
        properties.update(analysis.schema_properties())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://ticketaudit.invalid/schema/report-1.0.json",
        "title": "ticketaudit report",
        "type": "object",
        "required": ["schema_version", "tool_version", "verdict", "checks", "models", "data", "subgroups"],
        "properties": properties,
    }


def validate_prune(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when a prune document does not match its schema (a bug)."""
    jsonschema.validate(document, PRUNE_SCHEMA, cls=jsonschema.Draft202012Validator)


def validate(document: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when a report does not match the schema (a bug)."""
    jsonschema.validate(document, report_schema(), cls=jsonschema.Draft202012Validator)
