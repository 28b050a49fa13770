"""``preprocess.json``: how raw table columns become a model's input matrix.

Format (version 1)::

    {"version": 1,
     "inputs": [{"column": "age", "kind": "numeric", "mean": 38.6, "std": 13.6},
                {"column": "sex", "kind": "onehot", "categories": ["Female", "Male"]}]}

Numeric columns are standardised ``(x - mean) / std``; one-hot columns expand to one input per
category (unknown and missing values encode as all zeros, like scikit-learn's
``OneHotEncoder(handle_unknown="ignore")``). Input order follows ``inputs``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._validation import fail

MISSING = "<missing>"


def column_text(values: pd.Series, *, missing: str | None = MISSING) -> np.ndarray:
    """A column's values as text; whole-number floats print without ".0" (1.0 -> "1", as read from
    a CSV with missing values), and missing values become ``missing`` (or stay missing if None)."""
    if pd.api.types.is_float_dtype(values):
        present = values.dropna().to_numpy(dtype=np.float64)
        if np.all(np.isfinite(present)) and np.all(np.mod(present, 1) == 0):
            values = values.astype("Int64")
    text = values.astype("string")
    return (text.fillna(missing) if missing is not None else text).to_numpy(dtype=object)


@dataclass(frozen=True)
class InputSpec:
    """One raw column and how it is encoded."""

    column: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return len(self.categories) if self.kind == "onehot" else 1


@dataclass(frozen=True)
class Preprocessor:
    """Validated ``preprocess.json``; ``transform`` turns a DataFrame into float64 model inputs."""

    inputs: tuple[InputSpec, ...]

    @classmethod
    def from_dict(cls, document: Any, *, source: str = "preprocess.json") -> Preprocessor:
        if not isinstance(document, dict) or document.get("version") != 1 or not isinstance(
            document.get("inputs"), list
        ):
            fail(f"{source} must be an object with \"version\": 1 and a list \"inputs\" (see README, 'Bundles').")
        specs = []
        for i, item in enumerate(document["inputs"]):
            if not isinstance(item, dict) or not isinstance(item.get("column"), str):
                fail(f"{source}: inputs[{i}] needs a string \"column\".")
            kind = item.get("kind")
            if kind == "numeric":
                mean, std = item.get("mean", 0.0), item.get("std", 1.0)
                if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, std)) or std <= 0:
                    fail(f"{source}: inputs[{i}] ('{item['column']}') needs finite mean and std > 0.")
                specs.append(InputSpec(item["column"], "numeric", float(mean), float(std)))
            elif kind == "onehot":
                categories = item.get("categories")
                if not isinstance(categories, list) or not categories:
                    fail(f"{source}: inputs[{i}] ('{item['column']}') needs a non-empty \"categories\" list.")
                specs.append(InputSpec(item["column"], "onehot", categories=tuple(map(str, categories))))
            else:
                fail(f"{source}: inputs[{i}] has kind {kind!r}; use \"numeric\" or \"onehot\".")
        return cls(tuple(specs))

    @classmethod
    def from_file(cls, path: Path) -> Preprocessor:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            fail(f"'{path}' is not valid JSON: {error}.")
        return cls.from_dict(document, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for spec in self.inputs:
            if spec.kind == "numeric":
                out.append({"column": spec.column, "kind": "numeric", "mean": spec.mean, "std": spec.std})
            else:
                out.append({"column": spec.column, "kind": "onehot", "categories": list(spec.categories)})
        return {"version": 1, "inputs": out}

    @property
    def columns(self) -> list[str]:
        return [spec.column for spec in self.inputs]

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for spec in self.inputs:
            names += [f"{spec.column}={c}" for c in spec.categories] if spec.kind == "onehot" else [spec.column]
        return names

    @property
    def width(self) -> int:
        return sum(spec.width for spec in self.inputs)

    @property
    def column_of_input(self) -> list[str]:
        """The raw column each model input comes from (one-hot inputs share their column)."""
        return [spec.column for spec in self.inputs for _ in range(spec.width)]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Model inputs, float64, shape (rows, width). Missing numeric values are an error."""
        blocks = []
        for spec in self.inputs:
            values = frame[spec.column]
            if spec.kind == "numeric":
                numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                bad = ~np.isfinite(numeric)
                if bad.any():
                    fail(f"column '{spec.column}' has {int(bad.sum())} missing, non-numeric, NaN or infinite "
                         f"values (first at row {int(np.argmax(bad))}). Clean or impute them before the audit.")
                blocks.append(((numeric - spec.mean) / spec.std)[:, None])
            else:
                text = column_text(values)
                codes = pd.Categorical(text, categories=list(spec.categories)).codes
                onehot = np.zeros((len(frame), len(spec.categories)), dtype=np.float64)
                known = codes >= 0
                onehot[np.flatnonzero(known), codes[known]] = 1.0
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))
