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


def gate_fails(document: Mapping[str, Any]) -> bool:
    """Whether the audit's exit code is 1: a check of some status fails the gate (``Policy.fails_gate``), counted
    over every check of the audit, also those a report of many groups leaves unlisted."""
    policy = document_policy(document)
    return any(policy.fails_gate(status) for status, n in counts(document).items() if n)


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
