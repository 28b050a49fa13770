"""ticketaudit: audit a pruned network ("lottery ticket") against its dense model, group by group.

The front door loads on first use (PEP 562), so ``ticketaudit --help`` and ``ticketaudit schema``
answer without importing torch; ``ta.audit`` and the rest import what they need when first touched.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__  # noqa: E402

from .exceptions import InvalidInputError, SmallGroupWarning, TicketAuditError, UnsafeInputError  # noqa: E402

_LAZY = {
    "AuditResult": ".audit", "audit": ".audit", "AuditConfig": ".config", "Policy": ".config",
    "render_html": ".report.render", "render_json": ".report.render", "write_report": ".outputs",
    "Mask": ".tickets", "load_dense": ".tickets", "load_ticket": ".tickets",
    "WorkflowOutputs": ".outputs", "render_junit": ".workflow.junit", "render_markdown": ".workflow.markdown",
    "render_model_card": ".workflow.model_card", "log_mlflow": ".workflow.mlflow_run", "diff_reports": ".workflow.diff",
    "load_report": ".workflow.reports", "render_history": ".workflow.history", "load_history": ".workflow.history",
    "Analysis": ".analyses.base", "Batch": ".analyses.base", "register_analysis": ".analyses.registry",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .analyses.base import Analysis, Batch
    from .analyses.registry import register_analysis
    from .audit import AuditResult, audit
    from .config import AuditConfig, Policy
    from .outputs import WorkflowOutputs, write_report
    from .report.render import render_html, render_json
    from .workflow.diff import diff_reports
    from .workflow.history import load_history, render_history
    from .workflow.junit import render_junit
    from .workflow.markdown import render_markdown
    from .workflow.mlflow_run import log_mlflow
    from .workflow.model_card import render_model_card
    from .workflow.reports import load_report
    from .tickets import Mask, load_dense, load_ticket


class _FrontDoor(types.ModuleType):
    """The package object. ``ticketaudit.audit`` is a submodule *and* the function it defines; when the
    import system binds a loaded submodule to its package attribute, the function is bound instead, so
    ``ta.audit(...)`` works whatever was imported first (the submodule stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _FrontDoor


def __getattr__(name: str) -> Any:
    if name == "load_model":
        name = "load_dense"
    if name not in _LAZY:
        raise AttributeError(f"module 'ticketaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Analysis", "Batch", "register_analysis", "AuditConfig", "AuditResult", "InvalidInputError", "Mask", "Policy", "SmallGroupWarning", "TicketAuditError",
    "UnsafeInputError", "__version__", "audit", "load_dense", "load_model", "load_ticket", "render_html",
    "render_json", "write_report", "WorkflowOutputs", "render_junit", "render_markdown", "render_model_card",
    "log_mlflow", "diff_reports", "load_report", "render_history", "load_history",
]
