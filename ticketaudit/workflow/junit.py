"""JUnit XML of the policy checks, for the test reporters of Jenkins, GitLab and GitHub Actions: one test
case per check (class = the check's family, name = its group); a failed check is a failure carrying its
plain-words sentence, an inconclusive or not-evaluated one is skipped with the reason, unless the policy fails
the gate on it: then it is a failure too, so the failure count agrees with the exit code."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from ..config import Policy
from .reports import as_document, check_family, check_sentence, counts, document_policy, gate_fails, total_checks

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot hold at all, even escaped (group names come from user data)."""

SUITES_NAME = "ticketaudit"


def _text(value: object) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _element(tag: str, attributes: Mapping[str, object] | None = None, text: str | None = None) -> ET.Element:
    element = ET.Element(tag, {k: _text(v) for k, v in (attributes or {}).items()})
    if text is not None:
        element.text = _text(text)
    return element


def _testcase(check: Mapping[str, Any], policy: Policy) -> ET.Element:
    """A failure exactly when the check fails the release gate (as the exit code counts it: an inconclusive or
    not-evaluated check too, when the policy says so); other open checks are skipped with the reason."""
    case = _element("testcase", {"classname": f"{SUITES_NAME}.{check_family(check)}",
                                 "name": check.get("group") or "overall", "time": "0"})
    sentence = check_sentence(check)
    status = str(check["status"]).replace("_", " ")
    if policy.fails_gate(str(check["status"])):
        message = sentence if check["status"] == "fail" else f"{status}, and the policy fails the gate on it: {sentence}"
        case.append(_element("failure", {"message": message, "type": check["id"]}, message))
    elif check["status"] in ("inconclusive", "not_evaluated"):
        case.append(_element("skipped", {"message": f"{status}: {sentence}"}))
    return case


def render_junit(report: Any) -> bytes:
    """The JUnit XML (UTF-8) of an audit (an ``AuditResult``, its JSON document or a report.json path);
    one ``testsuite`` per check family."""
    document = as_document(report)
    families: dict[str, list[Mapping[str, Any]]] = {}
    for check in document["checks"]:
        families.setdefault(check_family(check), []).append(check)
    policy = document_policy(document)
    failing = sum(policy.fails_gate(str(check["status"])) for check in document["checks"])
    root = _element("testsuites", {"name": SUITES_NAME, "tests": len(document["checks"]), "failures": failing,
                                   "errors": 0, "time": "0"})
    for family, checks in families.items():
        suite = _element("testsuite", {
            "name": f"{SUITES_NAME}.{family}", "tests": len(checks), "errors": 0, "time": "0",
            "failures": sum(policy.fails_gate(str(c["status"])) for c in checks),
            "skipped": sum(not policy.fails_gate(str(c["status"])) and c["status"] in ("inconclusive", "not_evaluated")
                           for c in checks)})
        properties = _element("properties")
        for name, value in _properties(document).items():
            properties.append(_element("property", {"name": name, "value": value}))
        suite.append(properties)
        suite.extend(_testcase(check, policy) for check in checks)
        root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _properties(document: Mapping[str, Any]) -> dict[str, str]:
    """What identifies the audit: verdict, versions, model and data hashes."""
    models, data = document["models"], document["data"]
    return {"verdict": document["verdict"], "gate": "fail" if gate_fails(document) else "pass",
            "schema_version": document["schema_version"],
            "tool_version": document["tool_version"], "checks_total": total_checks(document),
            "checks_failed_total": counts(document)["fail"], "dense_sha256": models["dense"]["sha256"],
            "ticket_sha256": models["ticket"]["sha256"], "data_sha256": data["sha256"]}
