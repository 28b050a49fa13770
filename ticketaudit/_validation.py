"""Checks shared by loaders, the Python API and the CLI, and their message templates.

Messages are module constants so tests can import them; each names what was expected,
what was got, and the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from .exceptions import InvalidInputError, RowsProblem

MSG_FILE_MISSING = "{what} '{path}' does not exist. Check the path."
MSG_UNKNOWN_EXTENSION = (
    "{what} '{path}' has an unknown extension '{ext}'. Use one of: {allowed}."
)
MSG_PICKLE_REFUSED = (
    "'{path}' is a pickled Python object; loading it would run arbitrary code. "
    "Save a state_dict instead (torch.save(model.state_dict(), ...) or safetensors), "
    "or pass --allow-pickle if you trust this file."
)
MSG_COLUMN_MISSING = "{what} column {column} is not in the data. Available columns: {available}."
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


ROWS_SHOWN = 5
"""Row numbers a message lists for a problem that many rows share."""


def read_json(path: Any, *, what: str, fix: str = "") -> Any:
    """The JSON document at ``path``, or exit 2 naming ``what`` is not valid JSON (and ``fix``, the way out)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        fail(f"{what} is not valid JSON ({error}).{' ' + fix if fix else ''}")


def bad_rows(values: Any, kind: str) -> Any:
    """Which values of a column (a pandas Series) have the problem ``kind``: a boolean numpy array."""
    import numpy as np
    import pandas as pd

    if kind == "missing":
        return values.isna().to_numpy()
    if kind == "empty":
        return (values.notna() & (values.astype(str).str.strip() == "")).to_numpy()
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return ~np.isfinite(numeric)


def rows_words(count: int, positions: Sequence[int]) -> str:
    """``10 rows (first: 3, 17, 42, 50, 61)``: how many rows, and the first few (0-based row numbers)."""
    shown = ", ".join(str(int(p)) for p in positions[:ROWS_SHOWN])
    more = ", ..." if count > ROWS_SHOWN else ""
    return f"{count:,} row{'s' if count != 1 else ''} ({'first: ' if count > 1 else ''}{shown}{more})"


def fail_rows(values: Any, kind: str, *, column: str, template: str) -> None:
    """Raise ``RowsProblem`` when any value of ``values`` has the problem ``kind``; ``template`` takes
    ``{rows}`` (count and first row numbers, positions within ``values``)."""
    import numpy as np

    bad = bad_rows(values, kind)
    if bad.any():
        positions = np.flatnonzero(bad)
        raise RowsProblem(template.format(rows=rows_words(len(positions), positions)), column=column, kind=kind,
                          template=template)


def recounted(problem: RowsProblem, chunks: Any) -> RowsProblem:
    """The same problem counted over every audited row (``chunks``: the column's values, a part at a time)."""
    import numpy as np

    count, first, offset = 0, [], 0
    for values in chunks:
        bad = np.flatnonzero(bad_rows(values, problem.kind))
        count += len(bad)
        first += [offset + int(p) for p in bad[: ROWS_SHOWN - len(first)]]
        offset += len(values)
    if not count:  # the data changed under us; keep what was found
        return problem
    return RowsProblem(problem.template.format(rows=rows_words(count, first)), column=problem.column,
                       kind=problem.kind, template=problem.template)


def describe(value: object) -> str:
    """How a message shows a value of the wrong kind: "a string ('0.02')", not a valid-looking 0.02."""
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if value is None or isinstance(value, (int, float)):
        return repr(value)
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


def check_int(name: str, value: object, *, low: int, high: int) -> int:
    """Return ``value`` as an int within [low, high], or raise a clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(MSG_INT_RANGE.format(name=name, low=low, high=high, value=describe(value)))
    return value


def check_fraction(
    name: str, value: object, *, low: float = 0.0, high: float = 1.0, open_low: bool = True,
    open_high: bool = True,
) -> float:
    """Return ``value`` as a float inside the interval, or raise a clear error."""
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(MSG_FLOAT_RANGE.format(name=name, interval=interval, value=describe(value)))
    v = float(value)
    below = v <= low if open_low else v < low
    above = v >= high if open_high else v > high
    if below or above:
        fail(MSG_FLOAT_RANGE.format(name=name, interval=interval, value=value))
    return v


def show_name(name: object) -> str:
    """A column name for a message: quoted, and with repr's escapes when it has spaces at its ends or
    invisible characters, so ' income' cannot pass for 'income'."""
    text = str(name)
    return repr(text) if text != text.strip() or not text.isprintable() else f"'{text}'"


def check_columns(what: str, columns: Sequence[str], available: Sequence[str]) -> None:
    """Raise naming the first column that is not in the data (and a near miss in spaces or case)."""
    for column in columns:
        if column not in available:
            shown = ", ".join(show_name(a) for a in list(available)[:20])
            if len(available) > 20:
                shown += ", ..."
            message = MSG_COLUMN_MISSING.format(what=what, column=show_name(column), available=shown)
            near = [a for a in available if str(a).strip().casefold() == str(column).strip().casefold()]
            if near:
                message += (f" Did you mean {show_name(near[0])}? Names must match exactly, including spaces "
                            "and letter case.")
            fail(message)


def check_unique(option: str, names: Sequence[str]) -> None:
    """A list option names each column or choice once."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            fail(f"{option} names {show_name(name)} twice; list each name once.")
        seen.add(name)


def as_list(value: str | Sequence[str] | None, *, option: str = "a list option") -> list[str] | None:
    """A comma-separated option ("sex,race") or a sequence of strings as a list of names (each once);
    None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        fail(f"{option} must be a comma-separated string or a list of strings, got {describe(value)}.")
    check_unique(option, names)
    return names
