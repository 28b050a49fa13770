"""The release gate as every output reads it from an audit's JSON document: which checks make it fail (exit 1).
One rule, so the exit code, the HTML, JUnit, Markdown, the model card and MLflow always tell the same story."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .config import Policy


def document_policy(document: Mapping[str, Any]) -> Policy:
    """The policy an audit document was decided under (keys a newer ticketaudit added are ignored)."""
    known = {f.name for f in dataclasses.fields(Policy)}
    return Policy.from_mapping({k: v for k, v in document.get("policy", {}).items() if k in known})


def fails_gate(check: Mapping[str, Any], document: Mapping[str, Any]) -> bool:
    """Whether this check makes the release gate fail under the document's policy (``Policy.fails_gate``)."""
    return document_policy(document).fails_gate(str(check["status"]))


def gate_fails(document: Mapping[str, Any]) -> bool:
    """Whether the audit's exit code is 1: some check fails the gate."""
    policy = document_policy(document)
    return any(policy.fails_gate(str(c["status"])) for c in document["checks"])


STATUSES = ("pass", "inconclusive", "not_evaluated", "fail")


def counts(document: Mapping[str, Any]) -> dict[str, int]:
    """Checks per status, of the whole audit (a report of many groups lists some and counts all: ``listing``)."""
    summary = document.get("checks_summary")
    if summary:
        return {status: int(summary["by_status"].get(status, 0)) for status in STATUSES}
    return {status: sum(c["status"] == status for c in document["checks"]) for status in STATUSES}


def total_checks(document: Mapping[str, Any]) -> int:
    """How many checks the audit decided (``checks`` may list fewer)."""
    summary = document.get("checks_summary")
    return int(summary["total"]) if summary else len(document["checks"])
