"""The exception hierarchy: every problem a user can fix is an InvalidInputError (exit 2)."""

from __future__ import annotations


class TicketAuditError(Exception):
    """Base class of every error ticketaudit raises on purpose."""


class InvalidInputError(TicketAuditError, ValueError):
    """Bad input or usage: the message names the problem and the fix (CLI exit code 2)."""


class UnsafeInputError(InvalidInputError):
    """Input that would execute code (a pickle) without ``allow_pickle=True``."""


class SmallGroupWarning(UserWarning):
    """A group is too small for reliable statistics; it is reported but never gated."""
