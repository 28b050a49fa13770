"""One meaning for a cell value, whatever the file format, dtype or fragment it came from.

Rules (documented in docs/guide/data.md, "Group values"):

- **Missing** is an empty cell in CSV/TSV, a null in Parquet, ``None``/``NaN``/``pd.NA`` in a
  DataFrame. Literal text such as ``NA``, ``N/A``, ``None`` or ``null`` is a value (a country code,
  a region), never missing.
- **Numbers** are named by their value, decided per value (never per column or fragment): ``1``,
  ``1.0``, ``1.00`` and the text ``"1.0"`` are all ``1``; ``2.50`` is ``2.5``. Text is read as a
  number only when it is written like one without a leading zero, so ``"01234"`` (a postcode) stays
  text.
- **Group labels** (what the report shows and what keys a group) are those texts, quoted JSON-style
  when they could be misread: containing ``|``, ``=``, ``"`` or ``\\``, empty, with surrounding
  spaces, or spelling ``<missing>``. A missing value's label is ``<missing>``. So a group name
  ``race="Black|White"`` never collides with the intersection ``race=Black|...``.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

MISSING = "<missing>"
"""The label of a missing value."""

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NEEDS_QUOTES = re.compile(r'[|="\\\x00-\x1f]|^\s|\s$')


def _number_text(value: float) -> str:
    """A float named by its value: whole numbers without ".0", others in their shortest round-trip form."""
    if math.isfinite(value) and value == math.floor(value):
        return str(int(value))
    return repr(value)


def canonical(value: object) -> str | None:
    """The canonical text of one cell value (None when it is missing)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else _number_text(float(value))
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return None
        return str(int(value)) if value.is_finite() and value == value.to_integral_value() else _number_text(float(value))
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, str):
        if _INTEGER.fullmatch(value):
            return str(int(value))
        if _NUMBER.fullmatch(value):
            return _number_text(float(value))
        return value
    return str(value)


def _per_distinct(values: pd.Series | Iterable[object], convert: object, missing: object) -> np.ndarray:
    """``convert(value)`` per row (``missing`` where missing), computed once per distinct value."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    if series.dtype == object and any(type(v) in (bool, np.bool_) for v in series.to_numpy()):
        # factorize merges True with 1 (equal in Python); name each value on its own instead
        return np.array([missing if (t := canonical(v)) is None else convert(t) for v in series], dtype=object)
    table = [missing if (t := canonical(u)) is None else convert(t) for u in uniques]
    return np.array([*table, missing], dtype=object)[codes]  # code -1 (missing) picks the trailing entry


def canonical_texts(values: pd.Series | Iterable[object], *, missing: str | None = None) -> np.ndarray:
    """Canonical text per value (``missing`` where missing)."""
    return _per_distinct(values, str, missing)


def quote_label(text: str) -> str:
    """``text`` as shown in a group name: bare when unambiguous, JSON-quoted otherwise."""
    if text == "" or text == MISSING or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


def value_labels(values: pd.Series) -> np.ndarray:
    """Group label per value: the quoted canonical text, or ``<missing>``."""
    return _per_distinct(values, quote_label, MISSING)


def group_name(column: str, label: str) -> str:
    """``column=label`` with the column name quoted when it could be misread."""
    return f"{quote_label(column)}={label}"


def matches(values: pd.Series, wanted: str) -> np.ndarray:
    """Rows whose value is ``wanted`` (compared canonically, so ``1.0`` finds ``1``); ``<missing>``
    finds missing cells."""
    target = None if wanted == MISSING else canonical(wanted)
    return _per_distinct(values, lambda t: t == target, target is None).astype(bool)
