"""ticketaudit: audit a pruned network ("lottery ticket") against its dense model, group by group."""

from __future__ import annotations

__version__ = "0.1.0"

from .audit import AuditResult, audit  # noqa: E402
from .config import AuditConfig, Policy  # noqa: E402
from .exceptions import InvalidInputError, SmallGroupWarning, TicketAuditError, UnsafeInputError  # noqa: E402
from .report.render import render_html, render_json, write_report  # noqa: E402
from .tickets import Mask, load_dense, load_ticket  # noqa: E402

load_model = load_dense

__all__ = [
    "AuditConfig", "AuditResult", "InvalidInputError", "Mask", "Policy", "SmallGroupWarning", "TicketAuditError",
    "UnsafeInputError", "__version__", "audit", "load_dense", "load_model", "load_ticket", "render_html",
    "render_json", "write_report",
]
