"""Both models' predictions, computed once (batched, ``torch.inference_mode``) and shared.

In ``float64`` precision (``auto``'s choice for small models on the CPU) probabilities are rounded to
float32: the last bits of a row's output otherwise depend on the batch size (different BLAS kernels),
and an audit's answer must not. In the model's own precision (``float32``, ``bfloat16``) results are
reproducible for the same batch size and device, and far cheaper on large models and GPUs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from .._validation import fail
from ..inputs import TokenInputs

Features = Union[np.ndarray, TokenInputs]
"""A tabular float matrix, or tokenised text."""


DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
AUTO_FLOAT64_MAX_PARAMETERS = 5_000_000
"""``auto`` runs models up to this size in float64 on the CPU (cheap there); larger ones, and every model
on a GPU, in their own precision."""


def own_precision(module: nn.Module) -> str:
    """The precision a model's weights are stored in (float16 runs as float32: CPUs lack its kernels)."""
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    return {torch.float64: "float64", torch.bfloat16: "bfloat16"}.get(dtype, "float32")


def resolve_precision(requested: str, *, models: tuple[nn.Module, ...], device: str) -> str:
    """``auto`` → float64 for small models on the CPU, else the models' own precision (the wider of the two)."""
    if requested != "auto":
        return requested
    parameters = max(sum(p.numel() for p in m.parameters()) for m in models)
    if device == "cpu" and parameters <= AUTO_FLOAT64_MAX_PARAMETERS:
        return "float64"
    own = {own_precision(m) for m in models}
    return next(name for name in ("float64", "float32", "bfloat16") if name in own)


def call_model(module: nn.Module, batch: Features, *, device: torch.device, dtype: torch.dtype = torch.float64,
               **options: Any) -> Any:
    """Run ``module`` on a batch: a ``dtype`` tensor for tables, ``input_ids`` + ``attention_mask`` for text."""
    if isinstance(batch, TokenInputs):
        return module(input_ids=torch.as_tensor(batch.input_ids, device=device),
                      attention_mask=torch.as_tensor(batch.attention_mask, device=device), **options)
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
        self.module = copy.deepcopy(module).to(device=device, dtype=self.dtype).eval()

    def logits(self, features: Features) -> torch.Tensor:
        with torch.inference_mode():
            return logits_of(call_model(self.module, features, device=self.device, dtype=self.dtype))

    def output_width(self, features: Features) -> int:
        """Classes the model outputs (1 logit = binary), with a clear error on an input mismatch."""
        try:
            out = self.logits(features[:1])
        except (RuntimeError, IndexError) as error:
            if isinstance(features, TokenInputs):
                fail(f"the model cannot take the tokenised text ({str(error).splitlines()[0]}). Check that the "
                     "tokenizer files belong to this model.")
            fail(f"the model cannot take the {features.shape[1]} input features ({str(error).splitlines()[0]}). "
                 "Check --features (names and order) or the bundle's preprocess.json.")
        if out.dim() != 2:
            fail(f"the model must return a (rows, classes) tensor of logits, got shape {tuple(out.shape)}.")
        return int(out.shape[1])

    def probabilities(self, features: Features, *, batch_size: int,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(rows, classes) probabilities as float32 values (held in float64 arrays)."""
        chunks = []
        for start in range(0, len(features), batch_size):
            logits = self.logits(features[start:start + batch_size])
            if self.dtype != torch.float64:  # the softmax of bfloat16 logits in float32: no coarser than needed
                logits = logits.to(torch.float32)
            if logits.shape[1] == 1:
                p1 = torch.sigmoid(logits[:, 0])
                proba = torch.stack([1 - p1, p1], dim=1)
            else:
                proba = torch.softmax(logits, dim=1)
            chunks.append(proba.to("cpu", torch.float32).to(torch.float64).numpy())
            if progress is not None:
                progress(min(batch_size, len(features) - start))
        out = np.concatenate(chunks)
        if not np.isfinite(out).all():
            fail("the model produced NaN or infinite outputs on this data; check the inputs' scale and the weights.")
        return out


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
