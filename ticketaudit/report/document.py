"""The report's JSON document: a result as plain, schema-validated, JSON-safe data. Every output (HTML, JSON,
JUnit, Markdown, model card, MLflow) is rendered from this one document, never from each other."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Protocol

from . import schema


class AuditResult(Protocol):
    """What the output layers read of an audit's result (``ticketaudit.audit.AuditResult`` is one): its plain
    document, and the provenance the JSON leaves out. They never import the audit itself."""

    provenance: dict[str, Any]

    def to_dict(self, *, all_groups: bool = False) -> dict[str, Any]: ...


def _rounded(value: Any) -> Any:
    """Round floats to 12 significant digits so platform noise never changes the bytes."""
    if isinstance(value, float):
        return float(f"{value:.12g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def report_dict(result: AuditResult, *, all_groups: bool = False) -> dict[str, Any]:
    """The validated JSON document of a result (every group listed with ``all_groups``; see ``listing``)."""
    document = _rounded(result.to_dict(all_groups=all_groups))
    schema.validate(document)
    return schema.ValidatedDocument(document)


def render_json(result: AuditResult) -> bytes:
    """The JSON report as bytes (UTF-8, sorted keys, trailing newline)."""
    return document_bytes(report_dict(result))


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """A JSON document as the report writes it (UTF-8, sorted keys, trailing newline)."""
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
