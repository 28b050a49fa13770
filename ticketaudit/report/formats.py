"""Numbers in words for people: percentages, percentage points, intervals, p-values. One set of rules
for the HTML filters, the plain-words check sentences, the Markdown summary and the model card."""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Unicode's Bidi_Control characters: they reorder how the text around them is shown (a group value holding
U+202E can make a report line read backwards), so user text shows them as ``⟨U+202E⟩`` instead."""


def visible_controls(text: str) -> str:
    """``text`` with each bidirectional-control character written out as ``⟨U+XXXX⟩`` (same type, e.g. Markup)."""
    if not any(ch in BIDI_CONTROLS for ch in text):
        return text
    shown = "".join(f"⟨U+{ord(ch):04X}⟩" if ch in BIDI_CONTROLS else ch for ch in text)
    return type(text)(shown) if isinstance(text, str) and type(text) is not str else shown


def _missing(value: Any) -> bool:
    return value is None or not math.isfinite(value)


def percent(value: Any, digits: int = 1) -> str:
    """``0.8561`` → ``85.6%``."""
    return MISSING if _missing(value) else f"{value * 100:.{digits}f}%"


def points(value: Any, digits: int = 1, *, sign: bool = True, unit: bool = True) -> str:
    """A proportion as percentage points: ``-0.0123`` → ``-1.2 pts``."""
    if _missing(value):
        return MISSING
    return f"{value * 100:{'+' if sign else ''}.{digits}f}" + (" pts" if unit else "")


def interval_points(values: Any, digits: int = 1, *, unit: bool = False) -> str:
    """An interval of proportions in points: ``[-1.2, +0.4]``."""
    if not values or any(_missing(v) for v in values):
        return MISSING
    low, high = values
    return f"[{low * 100:+.{digits}f}, {high * 100:+.{digits}f}]" + (" pts" if unit else "")


NATS_METRICS = frozenset({"loss_per_token"})
"""Check metrics measured in nats per token (a language model's loss), not in percentage points."""


def amount(value: Any, metric: Any = None, digits: int = 1, *, sign: bool = True) -> str:
    """A check's value in its unit: nats per token for a loss (``+0.0123 nats``), else percentage points."""
    if metric in NATS_METRICS:
        return MISSING if _missing(value) else f"{value:{'+' if sign else ''}.{digits + 3}f} nats"
    return points(value, digits, sign=sign)


def amount_interval(values: Any, metric: Any = None, digits: int = 1) -> str:
    """A check's interval in its unit (see ``amount``), the unit named once."""
    if metric in NATS_METRICS:
        if not values or any(_missing(v) for v in values):
            return MISSING
        return f"[{values[0]:+.{digits + 3}f}, {values[1]:+.{digits + 3}f}] nats"
    return interval_points(values, digits, unit=True)


def p_value(value: Any, *, style: str = ".3f") -> str:
    """``< 0.001`` below a thousandth, else the value in ``style``."""
    if _missing(value):
        return MISSING
    return "< 0.001" if value < 0.001 else f"{value:{style}}"


def number(value: Any, digits: int = 3, *, sign: bool = False, general: bool = False, scale: float = 1.0) -> str:
    """A plain number, scaled, fixed or general notation."""
    if _missing(value):
        return MISSING
    return f"{value * scale:{'+' if sign else ''}.{digits}{'g' if general else 'f'}}"
