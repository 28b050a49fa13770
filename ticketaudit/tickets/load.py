"""Every model and ticket format of the contract becomes a ``LoadedModel`` with one ``Mask``: ``load_model`` tries
each format module under ``tickets/`` in ``FORMATS`` order (adding a format adds a file and one entry here).

Safe by default: ``.pt`` files are read with ``torch.load(weights_only=True)``; whole pickled
modules load only with ``allow_pickle=True``. The caller's modules are deep-copied, never changed.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .._validation import fail
from . import bundle, gguf, huggingface, weights, weights_directory
from .mask import Mask
from .model import Format, LoadedModel, ModelSource, dense_model, hash_module, private_copy, ticket_model

FORMATS: tuple[Format, ...] = (gguf.FORMAT, huggingface.FORMAT, weights_directory.FORMAT, bundle.FORMAT,
                               weights.FORMAT)
"""Tried in order; the first whose ``matches`` accepts the path reads it (weights files last: any other path)."""

__all__ = ["FORMATS", "LoadedModel", "ModelSource", "load_dense", "load_model", "load_ticket"]


def load_model(source: ModelSource, *, dense: LoadedModel | None = None, factory: str | None = None,
               allow_pickle: bool = False) -> LoadedModel:
    """The dense model (``dense`` None) or a ticket of ``dense``, from an ``nn.Module`` or a path in any format."""
    if isinstance(source, nn.Module):
        module = private_copy(source)
        if dense is None:
            return dense_model(module, format="module", sha256=hash_module(module), source="<nn.Module>")
        return ticket_model(dense, module, Mask.from_zeros(module), "module", hash_module(module), "<nn.Module>")
    path = Path(source)
    found = next(f for f in FORMATS if f.matches(path))
    if dense is None:
        return found.dense(path, factory=factory, allow_pickle=allow_pickle)
    return found.ticket(path, dense=dense, factory=factory, allow_pickle=allow_pickle)


def load_dense(source: ModelSource, *, factory: str | None = None, allow_pickle: bool = False) -> LoadedModel:
    """Load the dense (unpruned) model from a module, a Hugging Face or bundle directory, a GGUF or weights file."""
    return load_model(source, factory=factory, allow_pickle=allow_pickle)


def load_ticket(
    source: ModelSource | None,
    *,
    dense: LoadedModel,
    mask: str | Path | None = None,
    factory: str | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load the ticket: a pruned model in any contract format, or the dense model times ``mask``."""
    if source is None and mask is None:
        fail("give the ticket: --ticket MODEL, or --mask MASKFILE to prune the dense model.")
    if source is not None and mask is not None:
        fail("give either --ticket or --mask, not both: with --mask the ticket is the dense weights times the mask.")
    if mask is not None:
        return weights.ticket_from_mask(Path(mask), dense=dense)
    assert source is not None
    return load_model(source, dense=dense, factory=factory, allow_pickle=allow_pickle)
