"""``preprocess.json``: how raw table columns become a model's input matrix.

Format (version 1)::

    {"version": 1,
     "inputs": [{"column": "age", "kind": "numeric", "mean": 38.6, "std": 13.6},
                {"column": "sex", "kind": "onehot", "categories": ["Female", "Male"]}]}

Numeric columns are standardised ``(x - mean) / std``; one-hot columns expand to one input per
category (unknown and missing values encode as all zeros, like scikit-learn's
``OneHotEncoder(handle_unknown="ignore")``; the audit counts them per column and group, see
``UnseenCategories``). Values and categories are compared by their canonical text
(``values.canonical``: ``1.0`` is category ``"1"``; ``<missing>`` is the category of a missing
value). Input order follows ``inputs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._validation import fail, fail_rows, read_json
from .values import MISSING, canonical, canonical_texts


def column_text(values: pd.Series, *, missing: str | None = MISSING) -> np.ndarray:
    """A column's values as canonical text (``values.canonical``, decided value by value, so every
    format and fragment agrees); missing values become ``missing`` (or None)."""
    return canonical_texts(values, missing=missing)


def category_text(category: str) -> str:
    """A category of ``preprocess.json`` as compared with values (``<missing>`` stays the missing value's)."""
    return category if category == MISSING else str(canonical(category))


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
            fail(f"{source} must be an object with \"version\": 1 and a list \"inputs\" (see "
                 "docs/guide/models-and-tickets.md, 'Bundles').")
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
                texts = [category_text(str(c)) for c in categories]
                if len(set(texts)) != len(texts):
                    twice = next(t for t in texts if texts.count(t) > 1)
                    fail(f"{source}: inputs[{i}] ('{item['column']}') lists the category {twice!r} twice (as "
                         f"written or as the same number, e.g. 1 and 1.0). List each category once.")
                specs.append(InputSpec(item["column"], "onehot", categories=tuple(texts)))
            else:
                fail(f"{source}: inputs[{i}] has kind {kind!r}; use \"numeric\" or \"onehot\".")
        return cls(tuple(specs))

    @classmethod
    def from_file(cls, path: Path) -> Preprocessor:
        return cls.from_dict(read_json(path, what=f"'{path}'"), source=str(path))

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
                fail_rows(values, "non_finite", column=spec.column, template=f"column '{spec.column}' has a missing, "
                          "non-numeric, NaN or infinite value in {rows}. Clean or impute them before the audit.")
                blocks.append(((numeric - spec.mean) / spec.std)[:, None])
            else:
                codes = self._codes(spec, column_text(values))
                onehot = np.zeros((len(frame), len(spec.categories)), dtype=np.float64)
                known = codes >= 0
                onehot[np.flatnonzero(known), codes[known]] = 1.0
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0))

    @staticmethod
    def _codes(spec: InputSpec, texts: np.ndarray) -> np.ndarray:
        """Each value's category index (-1: unseen), from its ``column_text``."""
        return pd.Index(list(spec.categories), dtype=object).get_indexer(texts)

    @property
    def onehot_columns(self) -> list[str]:
        return [spec.column for spec in self.inputs if spec.kind == "onehot"]

    def unseen(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per one-hot column, each row's value the model has no category for (its text, ``<missing>``
        for a missing one), or None where the value is known: the rows encoded as all zeros."""
        out: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.kind == "onehot":
                text = column_text(frame[spec.column])
                text[self._codes(spec, text) >= 0] = None
                out[spec.column] = text
        return out


EXAMPLES_KEPT = 5


class UnseenCategories:
    """Mergeable counts of rows whose one-hot value the model does not know, per column and stratum,
    with the first few such values (smallest first, so any split and merge order gives the same)."""

    def __init__(self, *, columns: list[str], n_strata: int) -> None:
        self.columns = columns
        self.counts = np.zeros((n_strata, len(columns)), dtype=np.int64)
        self.examples: list[set[str]] = [set() for _ in columns]

    def update(self, unseen: dict[str, np.ndarray], strata: np.ndarray) -> None:
        for j, column in enumerate(self.columns):
            rows = pd.notna(unseen[column])
            if rows.any():
                self.counts[:, j] += np.bincount(strata[rows], minlength=len(self.counts))
                self.examples[j] = set(sorted(self.examples[j] | set(unseen[column][rows]))[:EXAMPLES_KEPT])

    def merge(self, other: UnseenCategories) -> UnseenCategories:
        self.counts += other.counts
        self.examples = [set(sorted(a | b)[:EXAMPLES_KEPT]) for a, b in zip(self.examples, other.examples)]
        return self

    def summary(self, groups: tuple[tuple[str, tuple[int, ...], int], ...], total: int) -> list[dict[str, Any]]:
        """Per column with unseen values: rows, share, the first values, and every group holding any
        (``groups``: name, strata, rows), highest share first."""
        out = []
        for j, column in enumerate(self.columns):
            rows = int(self.counts[:, j].sum())
            if not rows:
                continue
            in_group = [(name, int(self.counts[list(strata), j].sum()), n) for name, strata, n in groups]
            per_group = sorted(({"group": name, "rows": k, "share": k / n} for name, k, n in in_group if k),
                               key=lambda g: (-g["share"], g["group"]))
            out.append({"column": column, "rows": rows, "share": rows / total, "values": sorted(self.examples[j]),
                        "groups": per_group})
        return out
