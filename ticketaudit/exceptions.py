"""The exception hierarchy: every problem a user can fix is an InvalidInputError (exit 2)."""

from __future__ import annotations


class TicketAuditError(Exception):
    """Base class of every error ticketaudit raises on purpose."""


class InvalidInputError(TicketAuditError, ValueError):
    """Bad input or usage: the message names the problem and the fix (CLI exit code 2)."""


class RowsProblem(InvalidInputError):
    """Bad values in some rows of one column (``kind``: missing, empty, non_finite); the message names how many and
    the first rows. Raised on a part of the data, it is counted again over every audited row (``recounted``)."""

    def __init__(self, message: str, *, column: str, kind: str, template: str) -> None:
        super().__init__(message)
        self.column, self.kind, self.template = column, kind, template


class UnsafeInputError(InvalidInputError):
    """Input that would execute code (a pickle) without ``allow_pickle=True``."""


class SideOutputError(TicketAuditError):
    """The audit's files are written, but a side effect after them failed (logging to MLflow): CLI exit code 4."""


class SmallGroupWarning(UserWarning):
    """A group is too small for reliable statistics; it is reported but never gated."""
