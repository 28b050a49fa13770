"""What every format loads into: ``LoadedModel``, a private eval-mode copy of a model with one ``Mask``."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._validation import fail
from ..images import PROCESSOR_FILE, ImageProcessor
from ..preprocess import Preprocessor
from .mask import Mask, prunable_parameters

ModelSource = nn.Module | str | Path


@dataclass(frozen=True, eq=False, kw_only=True)
class LoadedModel:
    """A private, eval-mode copy of a model with its mask and provenance."""

    module: nn.Module
    mask: Mask
    format: str
    sha256: str
    source: str
    labels: tuple[str, ...] | None = None
    preprocess: Preprocessor | None = None
    tokenizer: Any = None
    """The Hugging Face tokenizer of a text model (None for tabular models)."""
    image_processor: ImageProcessor | None = None
    """How images become the model's inputs (``preprocessor_config.json`` of a Hugging Face directory or bundle)."""
    quantization: dict[str, Any] | None = None
    """What a quantised file stores (GGUF: bits per weight and tensor types); None for plain weights."""
    same_shape: bool = True
    """Whether the ticket has the dense model's parameter names and shapes. A ticket with its own, smaller
    architecture (structured pruning that removed units, a distilled student) is audited on its
    predictions; analyses that compare weights one by one with the dense model are skipped."""

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def nonzero(self) -> int:
        return sum(int(torch.count_nonzero(p)) for p in self.module.parameters())

    @property
    def weights(self) -> int:
        """Values in weight tensors with >= 2 dimensions (biases and norms excluded)."""
        return sum(w.numel() for w in prunable_parameters(self.module).values())

    @property
    def nonzero_weights(self) -> int:
        return sum(int(torch.count_nonzero(w)) for w in prunable_parameters(self.module).values())

    @property
    def sparsity(self) -> float:
        """Share of exact zeros among weight tensors with >= 2 dimensions (contract definition)."""
        total = self.weights
        return (total - self.nonzero_weights) / total if total else 0.0


@dataclass(frozen=True)
class Format:
    """One model / ticket format (a module of its own under ``tickets/``): which paths it reads, and how it loads
    them as the dense model and as a ticket. ``load.FORMATS`` tries them in order; a new format is a new file."""

    name: str
    matches: Callable[[Path], bool]
    dense: Callable[..., LoadedModel]
    """(path, *, factory, allow_pickle) -> the dense model."""
    ticket: Callable[..., LoadedModel]
    """(path, *, dense, factory, allow_pickle) -> the ticket of ``dense``."""


def differences(dense: nn.Module, ticket: nn.Module) -> str | None:
    """The first difference in parameter names or shapes between two modules (None: the same)."""
    dense_state, ticket_state = dense.state_dict(), ticket.state_dict()
    for key, tensor in dense_state.items():
        if key not in ticket_state:
            return f"the dense model has '{key}' but the ticket does not"
        if ticket_state[key].shape != tensor.shape:
            return (
                f"'{key}' has shape {tuple(ticket_state[key].shape)} in the ticket but {tuple(tensor.shape)} in "
                "the dense model"
            )
    for key in ticket_state:
        if key not in dense_state:
            return f"the ticket has '{key}', which the dense model does not"
    return None


def same_shape(dense: nn.Module, ticket: nn.Module) -> bool:
    """Whether a ticket that carries its own architecture (bundle, Hugging Face, module) has the dense
    model's shapes; when not, it is audited on predictions only."""
    return differences(dense, ticket) is None


def hash_module(module: nn.Module) -> str:
    """sha256 over a module's tensor names, shapes and bytes (an in-memory model's provenance)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def private_copy(module: nn.Module) -> nn.Module:
    """A deep, eval-mode, gradient-free CPU copy: the caller's module is never changed."""
    if not isinstance(module, nn.Module):
        fail(f"expected a torch nn.Module or a path, got {type(module).__name__}.")
    private = copy.deepcopy(module).to("cpu")
    private.eval()
    for param in private.parameters():
        param.requires_grad_(False)
    return private


def dense_model(module: nn.Module, **found: Any) -> LoadedModel:
    """A loaded dense model: every weight kept (an all-ones mask)."""
    return LoadedModel(module=module, mask=Mask.ones(module), **found)


def ticket_model(dense: LoadedModel, module: nn.Module, mask: Mask, fmt: str, sha256: str, source: str, *,
                 compare_shapes: bool = True, **own: Any) -> LoadedModel:
    """A ticket: its module and mask, with what it shares with the dense model (labels, preprocessing, tokenizer,
    image processor) unless ``own`` gives its own."""
    shared = {"labels": dense.labels, "preprocess": dense.preprocess, "tokenizer": dense.tokenizer,
              "image_processor": dense.image_processor, "quantization": None}
    extra = {"same_shape": same_shape(dense.module, module)} if compare_shapes else {}
    return LoadedModel(module=module, mask=mask, format=fmt, sha256=sha256, source=source, **{**shared, **own},
                       **extra)


def image_processor_in(directory: Path) -> ImageProcessor | None:
    """The ``preprocessor_config.json`` of a model directory, checked (None when it has none)."""
    path = directory / PROCESSOR_FILE
    return ImageProcessor.from_file(path) if path.is_file() else None
