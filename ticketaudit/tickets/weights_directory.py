"""A directory without config.json: ``model.safetensors`` (the ticket's own weights over the dense model's
architecture) and/or ``mask.safetensors`` (alone: ticket = dense weights × mask, what ``ticketaudit prune`` saves
for a state_dict dense model). As the dense model, its ``model.safetensors`` is a state_dict (needs ``--factory``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import paths
from .._io import sha256_path
from .._validation import fail
from .mask import Mask
from .model import Format, LoadedModel
from .weights import dense_from_weights, read_mask_file, read_safetensors, ticket_from_state

MSG_EMPTY_TICKET_DIR = (
    "'{path}' holds no config.json (a bundle or a Hugging Face model), no model.safetensors and no "
    "mask.safetensors (what ticketaudit prune saves for a state_dict dense model). Point --ticket at one of those."
)


def dense_from_directory(path: Path, *, factory: str | None, allow_pickle: bool, **_: Any) -> LoadedModel:
    if not (path / paths.BUNDLE_WEIGHTS).is_file():
        fail(f"'{path}' is a directory without {paths.BUNDLE_CONFIG}; a bundle holds config.json and model.safetensors.")
    return dense_from_weights(path / paths.BUNDLE_WEIGHTS, factory=factory, allow_pickle=allow_pickle)


def ticket_from_directory(path: Path, *, dense: LoadedModel, factory: str | None, **_: Any) -> LoadedModel:
    weights_path, mask_path = path / paths.BUNDLE_WEIGHTS, path / paths.BUNDLE_MASK
    if not weights_path.is_file() and not mask_path.is_file():
        fail(MSG_EMPTY_TICKET_DIR.format(path=path))
    module, fmt = dense.module, "mask-directory"
    if weights_path.is_file():
        module = ticket_from_state(read_safetensors(weights_path), path=weights_path, dense=dense, factory=factory)[0]
        fmt = "weights-directory"
    the_mask = read_mask_file(mask_path, model=module) if mask_path.is_file() else Mask.from_zeros(module)
    return LoadedModel(module=the_mask.apply(module), mask=the_mask, format=fmt, sha256=sha256_path(path),
                       source=str(path), labels=dense.labels, preprocess=dense.preprocess, tokenizer=dense.tokenizer,
                       image_processor=dense.image_processor)


FORMAT = Format(name="weights directory",
                matches=lambda path: path.is_dir() and not (path / paths.BUNDLE_CONFIG).is_file(),
                dense=dense_from_directory, ticket=ticket_from_directory)
