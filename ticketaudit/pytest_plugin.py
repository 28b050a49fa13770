"""pytest plug-in (entry point ``pytest11``): the ``no_group_harm`` fixture. Light to load: pytest
imports it in every session of an environment where ticketaudit is installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .audit import AuditResult


@pytest.fixture
def no_group_harm(tmp_path: Path) -> Callable[..., AuditResult]:
    """``no_group_harm(dense, ticket, data, target=..., sensitive=...)``: ``assert_no_group_harm`` with the
    HTML report kept in the test's temporary directory (its path is in the failure message)."""
    from .testing import assert_no_group_harm

    def check(dense: Any, ticket: Any = None, data: Any = None, **options: Any) -> AuditResult:
        options.setdefault("report", tmp_path / "ticketaudit-report.html")
        return assert_no_group_harm(dense, ticket, data, **options)

    return check
