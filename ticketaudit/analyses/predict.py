"""Both models' predictions, computed once (batched, ``torch.inference_mode``) and shared.

Text runs in batches of rows with the same padded length, at most ``batch_size`` tokens each
(``TokenInputs.batches``); tables in batches of ``batch_size`` rows. An analysis that reads the
models' internals (attention) rides on the same forward pass (``ForwardObserver``).

In ``float64`` precision (``auto``'s choice for small models on the CPU) probabilities are rounded to
float32: the last bits of a row's output otherwise depend on the batch size (different BLAS kernels),
and an audit's answer must not. In the model's own precision (``float32``, ``bfloat16``) results are
reproducible for the same batch size and device, and far cheaper on large models and GPUs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Union

import numpy as np
import torch
from torch import nn

from .._process import release_free_heap
from .._validation import fail
from ..images import ImageInputs
from ..inputs import TokenInputs
from ..llm.models import is_causal_lm
from ..llm.scoring import ChoiceInputs, score_answers

Features = Union[np.ndarray, TokenInputs, ImageInputs, ChoiceInputs]
"""A tabular float matrix, tokenised text, image rows (decoded batch by batch), or a language model's
multiple-choice items."""


DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
AUTO_FLOAT64_MAX_MACS = 5e10
"""``auto`` runs the audit in float64 on the CPU when both models' forward passes over every row cost at most this
many multiply-adds (about a second of float32 work on 2 cores; float64 is 2-10x slower, convolutions most); a
costlier audit, and every audit on a GPU, runs in the models' own precision."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision the models run in, and why (recorded in the JSON's settings and the report's provenance)."""

    name: str
    reason: str


def choose_precision(requested: str, *, models: tuple[nn.Module, ...], device: str,
                     macs_per_row: float | None = None, rows: int = 1) -> PrecisionChoice:
    """``auto`` → float64 on the CPU when the whole audit stays cheap there (``macs_per_row`` x ``rows`` at most
    ``AUTO_FLOAT64_MAX_MACS``), else the models' own precision (the wider of the two)."""
    if requested != "auto":
        return PrecisionChoice(requested, "requested")
    per_row = macs_per_row if macs_per_row is not None else float(
        sum(sum(p.numel() for p in m.parameters()) for m in models))
    total = per_row * max(1, rows)
    own = {own_precision(m) for m in models}
    native = next(name for name in ("float64", "float32", "bfloat16") if name in own)
    cost = f"both models' forward passes over {rows:,} rows cost about {total:.2g} multiply-adds"
    if device != "cpu":
        return PrecisionChoice(native, f"auto: the models' own precision on {device}")
    if total <= AUTO_FLOAT64_MAX_MACS:
        return PrecisionChoice("float64", f"auto: {cost}, at most {AUTO_FLOAT64_MAX_MACS:.0e}: float64 is cheap here")
    return PrecisionChoice(native, f"auto: {cost}, over {AUTO_FLOAT64_MAX_MACS:.0e}: the models' own precision")


def own_precision(module: nn.Module) -> str:
    """The precision a model's weights are stored in (float16 runs as float32: CPUs lack its kernels)."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    return {torch.float64: "float64", torch.bfloat16: "bfloat16"}.get(dtype, "float32")


def resolve_precision(requested: str, *, models: tuple[nn.Module, ...], device: str,
                      macs_per_row: float | None = None, rows: int = 1) -> str:
    """The name of ``choose_precision``'s choice."""
    return choose_precision(requested, models=models, device=device, macs_per_row=macs_per_row, rows=rows).name


def call_model(module: nn.Module, batch: Features, *, device: torch.device, dtype: torch.dtype = torch.float64,
               **options: Any) -> Any:
    """Run ``module`` on a batch: a ``dtype`` tensor for tables and pixels, ``input_ids`` + ``attention_mask``
    for text, each answer's log-likelihood score for a language model's items."""
    if isinstance(batch, ChoiceInputs):
        return score_answers(module, batch, device=device)
    if isinstance(batch, ImageInputs):
        batch = batch.pixels()
    if isinstance(batch, TokenInputs):
        if is_causal_lm(module):  # a language model's prompts (attention): only the last position's logits
            options = {"logits_to_keep": 1, **options}
        return module(input_ids=torch.as_tensor(batch.input_ids, dtype=torch.long, device=device),
                      attention_mask=torch.as_tensor(batch.attention_mask, dtype=torch.long, device=device), **options)
    return module(torch.as_tensor(batch, dtype=dtype, device=device), **options)


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output: a tensor, a Hugging Face output's ``logits``, or a tuple's first item."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    fail(f"the model returned {type(output).__name__}; ticketaudit needs a tensor of logits (rows, classes).")


SCORES_BUDGET_BYTES = 256 * 2**20
"""Attention scores (and their softmax) of one batch of a transformer at most: long texts run in fewer rows."""


def row_batches(features: Features, *, batch_size: int, max_rows: Callable[[int], int] | None = None
                ) -> Iterator[tuple[slice | np.ndarray, Features]]:
    """(positions, inputs) batches: text by token budget and padded length, tables ``batch_size`` rows at a time
    (at most ``max_rows(columns)``), images ``batch_size`` rows decoded at a time. A row's inputs never depend
    on its batch."""
    if isinstance(features, (TokenInputs, ChoiceInputs)):
        yield from features.batches(tokens=batch_size, max_rows=max_rows)
        return
    if isinstance(features, ImageInputs):
        yield from features.batches(rows=batch_size, max_rows=max_rows)
        return
    step = batch_size if max_rows is None else max(1, min(batch_size, max_rows(features.shape[1])))
    for start in range(0, len(features), step):
        rows = slice(start, min(start + step, len(features)))
        yield rows, features[rows]


def scores_cap(module: nn.Module, dtype: torch.dtype) -> Callable[[int], int] | None:
    """Rows per batch that keep a transformer's attention scores within ``SCORES_BUDGET_BYTES`` at a length
    (None for models without a known head count)."""
    heads = getattr(getattr(module, "config", None), "num_attention_heads", None)
    if not isinstance(heads, int) or heads < 1:
        return None
    size = torch.finfo(dtype).bits // 8
    return lambda length: max(1, SCORES_BUDGET_BYTES // (3 * heads * length * length * size))


def resolve_device(device: str) -> torch.device:
    """The torch device, or a clear error when it is not available here."""
    if device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda was requested but no CUDA GPU is available here. Use --device cpu.")
    if device == "mps" and not torch.backends.mps.is_available():
        fail("--device mps was requested but Apple's MPS backend is not available here. Use --device cpu.")
    return torch.device(device)


class ModelRunner:
    """A copy of a model on a device, in one precision (float64 unless told), that maps input rows to
    class probabilities."""

    def __init__(self, module: nn.Module, *, device: torch.device, precision: str = "float64") -> None:
        self.device = device
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.module = _runnable(module, device=device, dtype=self.dtype)

    def logits(self, features: Features) -> torch.Tensor:
        with torch.inference_mode():
            return logits_of(call_model(self.module, features, device=self.device, dtype=self.dtype))

    def output_width(self, features: Features) -> int:
        """Classes the model outputs (1 logit = binary), with a clear error on an input mismatch."""
        first = features[:1].pixels() if isinstance(features, ImageInputs) else features[:1]  # bad files: their own error
        try:
            out = self.logits(first)
        except (RuntimeError, IndexError, ValueError) as error:
            if isinstance(features, ImageInputs):
                fail(f"the model cannot take the {'x'.join(map(str, first.shape[1:]))} images the image processor "
                     f"'{features.processor.source}' makes ({str(error).splitlines()[0][:200]}). Give the processor "
                     "config the model was trained with (--image-processor).")
            if isinstance(features, TokenInputs):
                fail(f"the model cannot take the tokenised text ({str(error).splitlines()[0]}). Check that the "
                     "tokenizer files belong to this model.")
            fail(f"the model cannot take the {features.shape[1]} input features ({str(error).splitlines()[0]}). "
                 "Check --features (names and order) or the bundle's preprocess.json.")
        if out.dim() != 2:
            fail(f"the model must return a (rows, classes) tensor of logits, got shape {tuple(out.shape)}.")
        return int(out.shape[1])

    @property
    def max_rows(self) -> Callable[[int], int] | None:
        """Rows per batch at a padded length that keep this model's attention scores in budget."""
        return scores_cap(self.module, self.dtype)

    def probabilities(self, features: Features, *, batch_size: int,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(rows, classes) probabilities as float32 values (held in float64 arrays)."""
        pieces = []
        for positions, batch in row_batches(features, batch_size=batch_size, max_rows=self.max_rows):
            proba = probabilities_of(self.logits(batch), self.dtype)
            pieces.append((positions, proba))
            if progress is not None:
                progress(len(proba))
        return finite(in_row_order(pieces, rows=len(features)))


def _runnable(module: nn.Module, *, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The model on ``device`` in ``dtype``: a private copy, except a language model already there (the loader's own
    private copy; copying a 135M-parameter model again would double the memory), which is only read."""
    first = next(module.parameters(), None)
    if (is_causal_lm(module) and not module.training and first is not None and first.dtype == dtype
            and first.device == device):
        return module
    return copy.deepcopy(module).to(device=device, dtype=dtype).eval()


def probabilities_of(logits: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """Class probabilities of a batch's logits (a sigmoid for one logit), as float32 values in float64."""
    if dtype != torch.float64:  # the softmax of bfloat16 logits in float32: no coarser than needed
        logits = logits.to(torch.float32)
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits[:, 0])
        proba = torch.stack([1 - p1, p1], dim=1)
    else:
        proba = torch.softmax(logits, dim=1)
    return proba.to("cpu", torch.float32).to(torch.float64).numpy()


def in_row_order(pieces: list[tuple[slice | np.ndarray, np.ndarray]], *, rows: int) -> np.ndarray:
    """Per-batch (positions, values) put back in the rows' own order (batches may be sorted by length)."""
    if not pieces:
        return np.empty((0, 2))
    out = np.empty((rows, pieces[0][1].shape[1]))
    for positions, values in pieces:
        out[positions] = values
    return out


def finite(proba: np.ndarray) -> np.ndarray:
    if not np.isfinite(proba).all():
        fail("the model produced NaN or infinite outputs on this data; check the inputs' scale and the weights.")
    return proba


class ForwardObserver(Protocol):
    """An analysis that reads both models' internals on the forward pass predictions need (attention):
    ``forward`` runs both models on a batch itself and returns their logits and its per-row values."""

    def max_rows(self, length: int) -> int:
        """Rows per batch at a padded length (or a table's width) that keep what it holds in its budget."""
        ...

    def forward(self, batch: Features) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Both models' logits on ``batch`` and its (rows, width) values, rows in the batch's order."""
        ...

    def read(self, batch: Features) -> np.ndarray:
        """Only the (rows, width) values, for items whose predictions come from another pass (a language model's
        answers are scored with a shared prompt cache; the observer reads the prompts)."""
        ...


@dataclass(frozen=True, eq=False)
class PairedPass:
    """Both models' probabilities over some rows and, when an observer rode along, its per-row values."""

    proba_dense: np.ndarray
    proba_ticket: np.ndarray
    observed: np.ndarray | None


def forward_both(dense: ModelRunner, ticket: ModelRunner, features: Features, *, batch_size: int,
                 observer: ForwardObserver | None = None, progress: Callable[[int], None] | None = None) -> PairedPass:
    """One pass over ``features`` running both models batch by batch (with ``observer`` reading along): each
    batch is built once (images decoded once) for both models."""
    caps = [cap for cap in (dense.max_rows, ticket.max_rows, observer.max_rows if observer else None)
            if cap is not None]
    dense_pieces, ticket_pieces, observed_pieces = [], [], []
    for positions, batch in row_batches(features, batch_size=batch_size,
                                        max_rows=(lambda length: min(cap(length) for cap in caps)) if caps else None):
        if observer is not None and isinstance(batch, ChoiceInputs):  # answers scored; the observer reads prompts
            logits_dense, logits_ticket = dense.logits(batch), ticket.logits(batch)
            observed_pieces.append((positions, observer.read(batch)))
        elif observer is not None:
            logits_dense, logits_ticket, values = observer.forward(batch)
            observed_pieces.append((positions, values))
        else:
            logits_dense, logits_ticket = dense.logits(batch), ticket.logits(batch)
        dense_pieces.append((positions, probabilities_of(logits_dense, dense.dtype)))
        ticket_pieces.append((positions, probabilities_of(logits_ticket, ticket.dtype)))
        release_free_heap()
        if progress is not None:
            progress(2 * len(dense_pieces[-1][1]))  # both models' rows
    rows = len(features)
    return PairedPass(finite(in_row_order(dense_pieces, rows=rows)), finite(in_row_order(ticket_pieces, rows=rows)),
                      in_row_order(observed_pieces, rows=rows) if observer is not None else None)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Class probabilities and predicted labels of both models on the same rows."""

    proba_dense: np.ndarray
    proba_ticket: np.ndarray

    @property
    def pred_dense(self) -> np.ndarray:
        return np.argmax(self.proba_dense, axis=1)

    @property
    def pred_ticket(self) -> np.ndarray:
        return np.argmax(self.proba_ticket, axis=1)


def predict_both(dense: ModelRunner, ticket: ModelRunner, features: Features, *, batch_size: int,
                 progress: Callable[[int], None] | None = None) -> Predictions:
    """Run both models once over ``features``."""
    return Predictions(dense.probabilities(features, batch_size=batch_size, progress=progress),
                       ticket.probabilities(features, batch_size=batch_size, progress=progress))
