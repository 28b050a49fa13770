"""Turn the audit table into model inputs and encoded labels, validated against the model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._validation import check_columns, fail, fail_rows, rows_words
from .exceptions import InvalidInputError
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
    fail_rows(column, "missing", column=target, template=f"target column '{target}' is missing in {{rows}}. Drop "
              "those rows or fill in their labels first.")
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
                 "or ship a preprocess.json in the model bundle (see docs/guide/models-and-tickets.md, 'Bundles').")
        numeric = values.to_numpy(dtype=np.float64, na_value=np.nan)
        fail_rows(values, "non_finite", column=column, template=f"feature column '{column}' has a missing, NaN or "
                  "infinite value in {rows}. Clean or impute them before the audit.")
        blocks.append(numeric)
    return np.stack(blocks, axis=1), tuple(chosen)


@dataclass(frozen=True, eq=False)
class TokenInputs:
    """Tokenised text rows, padded on the right to the longest row of the set (masked by ``attention_mask``).

    ``batches`` re-pads each row to a length fixed by its own length alone (``padded_lengths``), so a
    row's inputs never depend on the batch size, the fragment or the rows that share its batch. Padding is
    always on the right, whatever the tokenizer's ``padding_side``: real tokens keep positions 0, 1, ...,
    so a masked row scores as it does alone (left padding shifts absolute position embeddings)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    pad_id: int = 0
    limit: int = 512
    """The model's longest input: a row is never padded beyond it."""
    truncated: np.ndarray | None = None
    """Per row: whether its text was longer than ``limit`` tokens and was cut (``--truncation``)."""

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, rows: slice | np.ndarray) -> TokenInputs:
        return dataclasses.replace(self, input_ids=self.input_ids[rows], attention_mask=self.attention_mask[rows],
                                   truncated=None if self.truncated is None else self.truncated[rows])

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape  # type: ignore[return-value]

    @property
    def lengths(self) -> np.ndarray:
        """Real (unmasked) tokens per row."""
        return self.attention_mask.sum(axis=1, dtype=np.int64)

    def batches(self, *, tokens: int, max_rows: Callable[[int], int] | None = None
                ) -> Iterator[tuple[np.ndarray, TokenInputs]]:
        """(positions, inputs) batches of rows with the same padded length, at most ``tokens`` tokens (rows x
        padded length; one row at least) and ``max_rows(length)`` rows each: short rows never pay for long ones."""
        padded = padded_lengths(self.lengths, limit=self.limit)
        order = np.argsort(padded, kind="stable")
        for length in np.unique(padded):
            positions = order[padded[order] == length]
            rows = max(1, tokens // int(length))
            if max_rows is not None:
                rows = max(1, min(rows, max_rows(int(length))))
            for start in range(0, len(positions), rows):
                take = positions[start:start + rows]
                yield take, self.padded_to(take, int(length))

    def padded_to(self, rows: np.ndarray, length: int) -> TokenInputs:
        """``rows`` padded (or trimmed of padding) on the right to ``length`` tokens."""
        ids, mask = self.input_ids[rows], self.attention_mask[rows]
        width = ids.shape[1]
        if length <= width:
            ids, mask = ids[:, :length], mask[:, :length]
        else:
            extra = ((0, 0), (0, length - width))
            ids = np.pad(ids, extra, constant_values=self.pad_id)
            mask = np.pad(mask, extra, constant_values=0)
        return dataclasses.replace(self, input_ids=np.ascontiguousarray(ids), attention_mask=np.ascontiguousarray(mask))


def padded_lengths(lengths: np.ndarray, *, limit: int) -> np.ndarray:
    """Each row's padded length: the next multiple of 2^(bits(length) - 3), at least 8 (so padding adds under a
    quarter of a long row, at most 7 tokens to a short one); never beyond ``limit`` (or the row itself)."""
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    bits = np.floor(np.log2(lengths)).astype(np.int64) + 1
    step = np.maximum(8, 2 ** np.maximum(bits - 3, 0))
    rounded = -(-lengths // step) * step
    return np.minimum(rounded, np.maximum(limit, lengths))


def text_limit(max_length: int | None) -> int:
    """Tokens per row kept: the tokenizer's ``model_max_length`` when it is a real limit, else 512."""
    return max_length if max_length and max_length < 100_000 else 512


def build_text_inputs(frame: pd.DataFrame, *, column: str, tokenizer: object, max_length: int | None,
                      truncation: str = "head") -> TokenInputs:
    """Tokenise ``column`` with the model's tokenizer (texts over the model's limit cut as ``truncation`` says and
    marked); padding is masked out by ``attention_mask`` and redone per batch (``TokenInputs.batches``)."""
    check_columns("text", [column], list(frame.columns))
    values = frame[column]
    fail_rows(values, "missing", column=column, template=f"text column '{column}' is missing in {{rows}}. Drop or "
              "fill those rows first.")
    fail_rows(values, "empty", column=column, template=f"text column '{column}' is an empty string in {{rows}}. Drop "
              "those rows or give them text; an empty input has no attention to measure.")
    text = values.astype(str)
    limit = text_limit(max_length)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is None:
        fail(f"the model's tokenizer has no padding token, so rows of column '{column}' cannot be batched. Set "
             "tokenizer.pad_token (e.g. to its eos_token) and the model config's pad_token_id, and save both.")
    parts = [_tokenise(tokenizer, list(text.iloc[start:start + TOKENISE_ROWS]), limit=limit, column=column,
                       pad_id=int(pad_id), truncation=truncation) for start in range(0, len(text), TOKENISE_ROWS)]
    width = max(part.shape[1] for part, _, _ in parts)
    ids = np.concatenate([np.pad(part, ((0, 0), (0, width - part.shape[1])), constant_values=pad_id)
                          for part, _, _ in parts])
    lengths = np.concatenate([part_lengths for _, part_lengths, _ in parts])
    mask = (np.arange(width) < lengths[:, None]).astype(np.int8)
    truncated = np.concatenate([cut for _, _, cut in parts])
    return TokenInputs(ids, mask, pad_id=int(pad_id), limit=limit, truncated=truncated)


TOKENISE_ROWS = 4096
"""Rows tokenised at a time (the tokenizer's Python lists); the rows are kept as int32 ids and int8 masks
(cast to int64 one batch at a time)."""


def encode_texts(tokenizer: Any, texts: list[str], *, limit: int, truncation: str, word_ids: bool = False,
                 **options: Any) -> tuple[dict[str, list[Any]], np.ndarray]:
    """The tokenizer's encoding of ``texts`` (lists per key, unpadded; ``options`` as the tokenizer takes them; with
    ``word_ids`` each token's word too) with every text over ``limit`` tokens cut: ``head`` keeps the tokenizer's own
    truncation (its first tokens, special tokens kept), ``head+tail`` its first quarter and last three quarters (Sun
    et al. 2019, "How to fine-tune BERT for text classification": the end of a long review often says most),
    ``error`` refuses. Also which texts were cut. The audit's batches and text attributions both read this."""
    def lists(batch: Any, count: int) -> dict[str, list[Any]]:
        out = {key: list(values) for key, values in batch.items()}
        if word_ids:
            out["word_ids"] = [batch.word_ids(i) for i in range(count)]
        return out

    encoded = lists(tokenizer(texts, truncation=False, padding=False, verbose=False, **options), len(texts))
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    cut = lengths > limit
    if not cut.any():
        return encoded, cut
    positions = np.flatnonzero(cut)
    if truncation == "error":
        fail(f"{rows_words(len(positions), positions)} of these texts hold more than {limit} tokens, the model's limit "
             f"(the longest {int(lengths.max()):,}); shorten them, or choose --truncation head or head+tail.")
    if truncation == "head":
        again = lists(tokenizer([texts[i] for i in positions], truncation=True, max_length=limit, padding=False,
                                **options), len(positions))
        for key in encoded:
            for j, i in enumerate(positions):
                encoded[key][i] = again[key][j]
    else:
        head = limit // 4
        for key in encoded:
            for i in positions:
                values = list(encoded[key][i])
                encoded[key][i] = values[:head] + values[len(values) - (limit - head):]
    return encoded, cut


def _tokenise(tokenizer: object, texts: list[str], *, limit: int, column: str, pad_id: int,
              truncation: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(texts, longest) int32 token ids padded on the right with ``pad_id``, each text's length, and whether it
    was cut to ``limit``."""
    try:
        encoded, cut = encode_texts(tokenizer, texts, limit=limit, truncation=truncation)
    except InvalidInputError:
        raise
    except (ValueError, TypeError) as error:
        fail(f"the model's tokenizer cannot tokenise column '{column}': {error}.")
    rows = encoded["input_ids"]
    lengths = np.array([len(row) for row in rows], dtype=np.int64)
    ids = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
    return ids, lengths, cut
