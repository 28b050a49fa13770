"""The audit inside a test suite: ``assert_no_group_harm`` fails exactly when ``ticketaudit report`` would
exit 1, with a message that lists the failed checks in plain words. The ``no_group_harm`` pytest fixture
(``ticketaudit.pytest_plugin``, registered through the ``pytest11`` entry point) does the same and keeps
the HTML report in the test's temporary directory. Importing this module loads neither torch nor pytest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import AuditResult


def harm_message(document: dict[str, Any], *, report: Path | None = None) -> str:
    """Why the audit gates: the verdict line and each failed (or, when the policy gates on them,
    inconclusive) check in plain words."""
    from .workflow.reports import check_sentence, verdict_line

    gating = [c for c in document["checks"] if c["status"] == "fail"]
    if not gating and document["policy"].get("on_inconclusive") == "fail":
        gating = [c for c in document["checks"] if c["status"] == "inconclusive"]
        why = 'inconclusive checks (the policy says on_inconclusive = "fail")'
    else:
        why = "failed checks"
    lines = [f"the ticket harms groups beyond the policy: {verdict_line(document)}", f"{len(gating)} {why}:"]
    lines += [f"  - {check_sentence(c)}" for c in gating]
    if report is not None:
        lines.append(f"report: {report}")
    return "\n".join(lines)


def assert_no_group_harm(dense: Any, ticket: Any = None, data: Any = None, *, report: str | Path | None = None,
                         **options: Any) -> AuditResult:
    """Audit ``ticket`` against ``dense`` on ``data`` (every ``ta.audit`` option is accepted: ``target``,
    ``sensitive``, ``policy``, ``seed``...) and raise ``AssertionError`` listing the failed checks when
    the audit gates, as the CLI's exit 1 does. ``report``: also write the HTML report there. Bad input
    raises ``ta.InvalidInputError`` as ``ta.audit`` does. Returns the result for further assertions."""
    from .audit import audit
    from .report.render import render_html, report_dict

    result = audit(dense=dense, ticket=ticket, data=data, **options)
    if report is not None:
        render_html(result, report)
    if result.gate_failed:
        raise AssertionError(harm_message(report_dict(result), report=Path(report) if report is not None else None))
    return result
