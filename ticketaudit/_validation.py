"""Checks shared by loaders, the Python API and the CLI, and their message templates.

Messages are module constants so tests can import them; each names what was expected,
what was got, and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NoReturn

from .exceptions import InvalidInputError

MSG_FILE_MISSING = "{what} '{path}' does not exist. Check the path."
MSG_UNKNOWN_EXTENSION = (
    "{what} '{path}' has an unknown extension '{ext}'. Use one of: {allowed}."
)
MSG_PICKLE_REFUSED = (
    "'{path}' is a pickled Python object; loading it would run arbitrary code. "
    "Save a state_dict instead (torch.save(model.state_dict(), ...) or safetensors), "
    "or pass --allow-pickle if you trust this file."
)
MSG_COLUMN_MISSING = "{what} column '{column}' is not in the data. Available columns: {available}."
MSG_OUTPUT_DIR = "cannot write {what} '{path}': {reason}. Choose a writable location."
MSG_FLOAT_RANGE = "{name} must be in {interval}, got {value}."
MSG_INT_RANGE = "{name} must be an integer in [{low}, {high}], got {value}."


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def first_line(error: BaseException, limit: int = 300) -> str:
    """An exception's first line for a one-line message, without colour codes (Ray colours its errors)."""
    lines = ANSI_ESCAPE.sub("", str(error)).splitlines()
    return lines[0][:limit] if lines else ""


def fail(message: str) -> NoReturn:
    """Raise the one error type users see for bad input."""
    raise InvalidInputError(message)


def check_int(name: str, value: object, *, low: int, high: int) -> int:
    """Return ``value`` as an int within [low, high], or raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(MSG_INT_RANGE.format(name=name, low=low, high=high, value=value))
    return value


def check_fraction(
    name: str, value: object, *, low: float = 0.0, high: float = 1.0, open_low: bool = True,
    open_high: bool = True,
) -> float:
    """Return ``value`` as a float inside the interval, or raise a clear error."""
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(MSG_FLOAT_RANGE.format(name=name, interval=interval, value=value))
    v = float(value)
    below = v <= low if open_low else v < low
    above = v >= high if open_high else v > high
    if below or above:
        fail(MSG_FLOAT_RANGE.format(name=name, interval=interval, value=value))
    return v


def check_columns(what: str, columns: Sequence[str], available: Sequence[str]) -> None:
    """Raise naming the first column that is not in the data."""
    for column in columns:
        if column not in available:
            shown = ", ".join(map(str, list(available)[:20]))
            if len(available) > 20:
                shown += ", ..."
            fail(MSG_COLUMN_MISSING.format(what=what, column=column, available=shown))


def as_list(value: str | Sequence[str] | None) -> list[str] | None:
    """A comma-separated option ("sex,race") or a sequence as a list of names; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)
