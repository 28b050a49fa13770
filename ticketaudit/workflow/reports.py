"""The audit report as every adapter reads it: one validated JSON document, from a result, a mapping
or a file, plus the plain-words sentence of each check (the same in JUnit, Markdown and assertions)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidInputError
from ..gate import counts, document_policy, gate_fails, total_checks  # noqa: F401  (the adapters read them from here)
from ..report.formats import amount, amount_interval, p_value

if TYPE_CHECKING:
    from ..report.document import AuditResult

READS_MAJOR = 1
"""The schema major version this ticketaudit reads; minor versions only add keys, so any 1.x is read."""

STATUS_RANK = {"pass": 0, "inconclusive": 1, "not_evaluated": 1, "fail": 2}
"""Worse is larger: a verdict or check whose rank rises between two audits is a regression."""


def as_document(report: AuditResult | Mapping[str, Any] | str | Path, *, what: str = "report") -> dict[str, Any]:
    """The validated JSON document of an ``AuditResult``, of a loaded ``report.json`` or of its path."""
    if isinstance(report, (str, Path)):
        return load_report(report, what=what)
    from ..report.schema import ValidatedDocument

    if isinstance(report, ValidatedDocument):
        return report
    if isinstance(report, Mapping):
        return _validated(dict(report), source=f"the {what}")
    from ..report.document import report_dict

    return report_dict(report)


def load_report(path: str | Path, *, what: str = "report") -> dict[str, Any]:
    """Read a ``report.json`` written by ``ticketaudit report`` (``--json``); every problem is one message."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{what} '{path}' is a directory; give the JSON file written with --json.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"{what} '{path}' does not exist; give the JSON file written with --json.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read {what} '{path}' ({error}); give the JSON file written with --json.") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{what} '{path}' is not JSON ({error.msg} at line {error.lineno}); give the file "
                                "written with ticketaudit report --json (not the HTML report).") from None
    return _validated(document, source=f"{what} '{path}'")


def _validated(document: Any, *, source: str) -> dict[str, Any]:
    """Refuse what is not an audit report of a schema version this ticketaudit reads, naming why."""
    import jsonschema

    from ..report.schema import ValidatedDocument, report_schema

    if not isinstance(document, dict) or "schema_version" not in document:
        raise InvalidInputError(f"{source} is not a ticketaudit audit report (it has no schema_version); give the "
                                "file written with ticketaudit report --json.")
    if "alternatives" in document and "verdict" not in document:
        raise InvalidInputError(f"{source} is a ticketaudit prune result (alternatives.json), not an audit report; "
                                "audit a saved candidate with ticketaudit report --json and use that file.")
    version = str(document["schema_version"])
    match = re.fullmatch(r"(\d+)\.(\d+)", version)
    if match is None or int(match.group(1)) != READS_MAJOR:
        newer = match is not None and int(match.group(1)) > READS_MAJOR
        fix = ("upgrade ticketaudit to read it" if newer else
               "re-run the audit with this ticketaudit (ticketaudit report --json) to get a report it reads")
        raise InvalidInputError(f"{source} has schema version {version!r}; this ticketaudit reads "
                                f"{READS_MAJOR}.x reports. {fix[0].upper()}{fix[1:]}.")
    try:
        jsonschema.validate(document, report_schema(), cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise InvalidInputError(f"{source} does not match the report schema at {where}: {error.message}. "
                                "Was it edited? Re-run ticketaudit report --json to get a valid one.") from None
    return ValidatedDocument(document)


def is_count(check: Mapping[str, Any]) -> bool:
    """Whether a check counts something (groups too small) rather than measuring a rate in points."""
    return check.get("metric") == "n"


def check_family(check: Mapping[str, Any]) -> str:
    """The kind of check, shared by its groups: ``group_excess_drop:sex=Female`` → ``group_excess_drop``."""
    return str(check["id"]).split(":", 1)[0]


def check_title(check: Mapping[str, Any], *, quote: Callable[[str], str] = str) -> str:
    """What the check measures, and for whom (names passed through ``quote``, e.g. a Markdown escape)."""
    title = quote(str(check.get("description") or check["id"]))
    return f"{title} — {quote(check['group'])}" if check.get("group") else title


def check_sentence(check: Mapping[str, Any], *, quote: Callable[[str], str] = str) -> str:
    """The check's outcome in plain words, with its value, tolerance and interval."""
    title = check_title(check, quote=quote)
    if check["status"] == "not_evaluated":
        reason = quote(str(check.get("reason") or "the audit had no estimate for it"))
        return f"{title}: not evaluated, because {reason}."
    if is_count(check):
        return f"{title}: {check['value']:.0f} (tolerance {check['tolerance']:.0f}); status {check['status']}."
    metric = check.get("metric")
    value, tolerance = amount(check.get("value"), metric, 2), amount(check.get("tolerance"), metric, 2, sign=False)
    interval = amount_interval(check.get("interval"), metric, 2)
    if check["status"] == "fail":
        return (f"{title}: {value}, beyond the tolerance of {tolerance} and significant (simultaneous interval "
                f"{interval}, adjusted p {p_value(check.get('p_value'), style='.3g')}).")
    bound = amount(check.get("pass_bound"), metric, 2)
    if check["status"] == "inconclusive":
        settle = check.get("rows_to_settle")
        more = f"; about {settle:,} more rows would settle it" if settle else ""
        return (f"{title}: {value}, but it could be up to {bound} against a tolerance of {tolerance} (simultaneous "
                f"interval {interval}): too few rows to rule the harm out{more}.")
    return (f"{title}: {value}, at most {bound}, within the tolerance of {tolerance} (simultaneous interval "
            f"{interval}).")


def count_words(document: Mapping[str, Any]) -> str:
    """``12 pass, 0 fail, 15 inconclusive`` (and ``, 1 not evaluated`` when a gate could not be evaluated)."""
    n = counts(document)
    words = f"{n['pass']} pass, {n['fail']} fail, {n['inconclusive']} inconclusive"
    return words + (f", {n['not_evaluated']} not evaluated" if n["not_evaluated"] else "")


def verdict_line(document: Mapping[str, Any]) -> str:
    """``verdict: INCONCLUSIVE (12 pass, 0 fail, 15 inconclusive of 27 checks)``."""
    return f"verdict: {document['verdict'].upper()} ({count_words(document)} of {total_checks(document)} checks)"


def gate_line(document: Mapping[str, Any]) -> str:
    """What the exit code says, in words: ``release gate: FAILS (exit 1): ...``."""
    if not gate_fails(document):
        return "release gate: passes (exit 0)" + (
            ', with a warning: the verdict is inconclusive and the policy says on_inconclusive = "warn"'
            if document["verdict"] == "inconclusive" else "")
    why = "a check failed" if document["verdict"] == "fail" else (
        'the verdict is inconclusive and the policy says on_inconclusive = "fail"')
    return f"release gate: FAILS (exit 1): {why}"


def metric_names(document: Mapping[str, Any]) -> list[str]:
    """The per-group metrics the report holds, in a stable order: the headline ones first."""
    seen: dict[str, None] = {}
    for group in document.get("subgroups", []):
        seen.update(dict.fromkeys(group.get("metrics", {})))
    first = [m for m in ("accuracy", "tpr", "fpr", "selection_rate") if m in seen]
    return first + sorted(m for m in seen if m not in first)
