"""Both models' predictions, computed once (batched, ``torch.inference_mode``) and shared.

Models run in float64 and probabilities are rounded to float32: the last bits of a row's output
otherwise depend on the batch size (different BLAS kernels), and an audit's answer must not.
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


def call_model(module: nn.Module, batch: Features, *, device: torch.device, **options: Any) -> Any:
    """Run ``module`` on a batch: a float64 tensor for tables, ``input_ids`` + ``attention_mask`` for text."""
    if isinstance(batch, TokenInputs):
        return module(input_ids=torch.as_tensor(batch.input_ids, device=device),
                      attention_mask=torch.as_tensor(batch.attention_mask, device=device), **options)
    return module(torch.as_tensor(batch, dtype=torch.float64, device=device), **options)


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
    """A float64 copy of a model on a device that maps input rows to class probabilities."""

    def __init__(self, module: nn.Module, *, device: torch.device) -> None:
        self.device = device
        self.module = copy.deepcopy(module).to(device=device, dtype=torch.float64).eval()

    def logits(self, features: Features) -> torch.Tensor:
        with torch.inference_mode():
            return logits_of(call_model(self.module, features, device=self.device))

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
