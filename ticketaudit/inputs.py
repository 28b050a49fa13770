"""Turn the audit table into model inputs and encoded labels, validated against the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._validation import check_columns, fail
from .preprocess import Preprocessor, category_text, column_text


@dataclass(frozen=True)
class ModelInputs:
    """Float64 input matrix, integer labels in [0, K) and the class names."""

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def encode_target(frame: pd.DataFrame, target: str, *, n_outputs: int, labels: tuple[str, ...] | None,
                  require_every_class: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map the target column to class indices using the model's label list (or 0..K-1).
    ``require_every_class=False`` for a part of the table (checked on the whole by ``check_classes``)."""
    check_columns("target", [target], list(frame.columns))
    column = frame[target]
    if column.isna().any():
        fail(f"target column '{target}' has {int(column.isna().sum())} missing values. Drop those rows first.")
    n_classes = 2 if n_outputs == 1 else n_outputs
    text = column_text(column, missing=None)
    if labels is not None:
        if len(labels) != n_classes:
            fail(f"the model's config lists {len(labels)} labels but the model outputs {n_classes} classes.")
        index = {category_text(label): i for i, label in enumerate(labels)}
        codes = np.array([index.get(v, -1) for v in text], dtype=np.int64)
        if (codes < 0).any():
            bad = text[np.argmax(codes < 0)]
            fail(f"target value {bad!r} in column '{target}' is not a label the model can output "
                 f"({', '.join(map(repr, labels))}). Map the column to those labels.")
        class_names = labels
    else:
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.isna().any() or not np.all(np.mod(numeric.to_numpy(dtype=np.float64), 1) == 0):
            fail(f"target column '{target}' holds text labels but the model has no label list. Encode the labels "
                 f"as 0..{n_classes - 1}, or save the model as a bundle whose config.json lists \"labels\".")
        codes = numeric.to_numpy(dtype=np.int64)
        if codes.min() < 0 or codes.max() >= n_classes:
            bad = codes[(codes < 0) | (codes >= n_classes)][0]
            fail(f"target value {bad} in column '{target}' is not a label the model can output "
                 f"(it has {n_classes} classes: 0..{n_classes - 1}).")
        class_names = tuple(str(i) for i in range(n_classes))
    if require_every_class:
        check_classes(np.bincount(codes, minlength=n_classes), tuple(class_names), target=target)
    return codes, tuple(class_names)


def check_classes(counts: np.ndarray, class_names: tuple[str, ...], *, target: str) -> None:
    """Subgroup rates need at least two classes present in the audit rows."""
    present = np.flatnonzero(counts)
    if len(present) < 2:
        fail(f"target column '{target}' has a single class ({class_names[present[0]]!r}); subgroup rates "
             "such as TPR and FPR need both. Audit on data with every class present.")


def build_features(frame: pd.DataFrame, *, target: str, features: list[str] | None,
                   preprocess: Preprocessor | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The model's input matrix: through ``preprocess.json`` when the bundle has one, else numeric columns."""
    if preprocess is not None:
        if features is not None:
            fail("--features cannot be combined with a bundle's preprocess.json, which already fixes the inputs.")
        check_columns("feature (from preprocess.json)", preprocess.columns, list(frame.columns))
        return preprocess.transform(frame), tuple(preprocess.feature_names)
    chosen = features if features is not None else [c for c in frame.columns if c != target]
    if not chosen:
        fail("no feature columns: give --features COL,... or a bundle with preprocess.json.")
    check_columns("feature", chosen, list(frame.columns))
    if target in chosen:
        fail(f"the target column '{target}' cannot also be a feature.")
    blocks = []
    for column in chosen:
        values = frame[column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            fail(f"feature column '{column}' is not numeric. Encode it, pick numeric columns with --features, "
                 "or ship a preprocess.json in the model bundle (see README, 'Bundles').")
        numeric = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(numeric)
        if bad.any():
            fail(f"feature column '{column}' has {int(bad.sum())} missing, NaN or infinite values (first at row "
                 f"{int(np.argmax(bad))}). Clean or impute them before the audit.")
        blocks.append(numeric)
    return np.stack(blocks, axis=1), tuple(chosen)


@dataclass(frozen=True, eq=False)
class TokenInputs:
    """Tokenised text rows, padded to one length for the whole table (so batching never changes a row)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, rows: slice) -> TokenInputs:
        return TokenInputs(self.input_ids[rows], self.attention_mask[rows])

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape  # type: ignore[return-value]


def text_limit(max_length: int | None) -> int:
    """Tokens per row kept: the tokenizer's ``model_max_length`` when it is a real limit, else 512."""
    return max_length if max_length and max_length < 100_000 else 512


def build_text_inputs(frame: pd.DataFrame, *, column: str, tokenizer: object, max_length: int | None,
                      pad_to: int | None = None) -> TokenInputs:
    """Tokenise ``column`` with the model's tokenizer; padding (to the longest row, or to ``pad_to`` tokens)
    is masked out by ``attention_mask``."""
    check_columns("text", [column], list(frame.columns))
    values = frame[column]
    missing = values.isna()
    if missing.any():
        fail(f"text column '{column}' has {int(missing.sum())} missing values (first at row {int(np.argmax(missing))}). "
             "Drop or fill those rows first.")
    text = values.astype(str)
    empty = text.str.strip() == ""
    if empty.any():
        fail(f"text column '{column}' has {int(empty.sum())} empty strings (first at row {int(np.argmax(empty))}). "
             "Drop those rows or give them text; an empty input has no attention to measure.")
    limit = text_limit(max_length)
    try:
        padding = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": "longest",
                                                                                  "max_length": limit}
        encoded = tokenizer(list(text), truncation=True, return_attention_mask=True, **padding)  # type: ignore[operator]
    except (ValueError, TypeError) as error:
        fail(f"the model's tokenizer cannot tokenise column '{column}': {error}.")
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    attention = np.asarray(encoded["attention_mask"], dtype=np.int64)
    return TokenInputs(ids, attention)
