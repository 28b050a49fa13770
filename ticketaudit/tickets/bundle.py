"""The bundle format, read and written: config.json (ticketaudit's architecture name and arguments) +
model.safetensors [+ mask.safetensors] [+ preprocess.json] [+ preprocessor_config.json]."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from dataclasses import dataclass

from .. import paths
from .._io import sha256_path, write_atomically
from .._validation import MSG_FILE_MISSING, fail, read_json
from ..images import PROCESSOR_FILE, ImageProcessor
from ..models import build_architecture
from ..preprocess import Preprocessor
from .checks import check_same_metadata
from .mask import Mask
from .model import Format, LoadedModel, dense_model, image_processor_in, ticket_model

BUNDLE_VERSION = 1


def bundle_files(directory: Path, module: nn.Module, *, architecture: str | None = None,
                 arguments: dict[str, Any] | None = None, labels: tuple[str, ...] | None = None,
                 preprocess: Preprocessor | None = None, mask: Mask | None = None,
                 image_processor: dict[str, Any] | None = None) -> dict[Path, bytes]:
    """The files of a bundle as {path: bytes}, to be written together. Without ``architecture`` (a dense
    model that is a state_dict or a module) the directory holds the weights and the mask only, and
    loads with ``--ticket DIR`` over the dense model's architecture."""
    files: dict[Path, bytes] = {}
    if mask is not None:
        files[directory / paths.BUNDLE_MASK] = save({k: v.to(torch.uint8).contiguous() for k, v in mask.items()})
    weights = mask.apply(module) if mask is not None else module
    files[directory / paths.BUNDLE_WEIGHTS] = save(
        {k: v.detach().to("cpu").contiguous() for k, v in weights.state_dict().items()})
    if architecture is None:
        return files
    meta: dict[str, Any] = {"bundle_version": BUNDLE_VERSION}
    if labels is not None:
        meta["labels"] = list(labels)
    config = {"architecture": architecture, "arguments": arguments or {}, "ticketaudit": meta}
    files[directory / paths.BUNDLE_CONFIG] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if preprocess is not None:
        files[directory / paths.BUNDLE_PREPROCESS] = (json.dumps(preprocess.to_dict(), indent=2) + "\n").encode()
    if image_processor is not None:  # a Hugging Face preprocessor_config.json: how images become inputs
        files[directory / PROCESSOR_FILE] = (json.dumps(image_processor, indent=2, sort_keys=True) + "\n").encode()
    return files


def save_bundle(directory: Path, module: nn.Module, *, architecture: str, arguments: dict[str, Any],
                labels: tuple[str, ...] | None = None, preprocess: Preprocessor | None = None,
                mask: Mask | None = None, image_processor: dict[str, Any] | None = None) -> Path:
    """Save ``module`` (times ``mask``, when given) as a bundle that ``ticketaudit report`` loads."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(bundle_files(directory, module, architecture=architecture, arguments=arguments, labels=labels,
                                  preprocess=preprocess, mask=mask, image_processor=image_processor))
    return directory


@dataclass(frozen=True)
class _Bundle:
    module: nn.Module
    mask: Mask | None
    labels: tuple[str, ...] | None
    preprocess: Preprocessor | None
    image_processor: ImageProcessor | None = None


def dense_from_bundle(path: Path, **_: Any) -> LoadedModel:
    bundle = _read_bundle(path)
    return dense_model(bundle.module, format="bundle", sha256=sha256_path(path), source=str(path),
                       labels=bundle.labels, preprocess=bundle.preprocess, image_processor=bundle.image_processor)


def ticket_from_bundle(path: Path, *, dense: LoadedModel, **_: Any) -> LoadedModel:
    bundle = _read_bundle(path)
    check_same_metadata(dense, labels=bundle.labels, preprocess=bundle.preprocess, source=path)
    the_mask = bundle.mask if bundle.mask is not None else Mask.from_zeros(bundle.module)
    return ticket_model(dense, bundle.module, the_mask, "bundle", sha256_path(path), str(path), tokenizer=None)


def _read_bundle(directory: Path) -> _Bundle:
    from .weights import load_state, read_safetensors

    config = _bundle_config(directory / paths.BUNDLE_CONFIG)
    meta = config.get("ticketaudit", {})
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if labels is not None and (not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels)):
        fail(f"'{directory / paths.BUNDLE_CONFIG}': ticketaudit.labels must be a list of at least 2 distinct labels.")
    skeleton = build_architecture(str(config["architecture"]), dict(config.get("arguments", {})))
    weights_path = directory / paths.BUNDLE_WEIGHTS
    if not weights_path.is_file():
        fail(MSG_FILE_MISSING.format(what="bundle weights", path=weights_path))
    module = load_state(skeleton, read_safetensors(weights_path), what=f"bundle '{directory}'",
                        fix="The config.json arguments must describe the saved weights.")
    mask = None
    if (directory / paths.BUNDLE_MASK).is_file():
        mask = Mask(read_safetensors(directory / paths.BUNDLE_MASK), model=module)
        module = mask.apply(module)
    preprocess_path = directory / paths.BUNDLE_PREPROCESS
    preprocess = Preprocessor.from_file(preprocess_path) if preprocess_path.is_file() else None
    return _Bundle(module, mask, tuple(map(str, labels)) if labels else None, preprocess,
                   image_processor_in(directory))


def _bundle_config(config_path: Path) -> dict[str, Any]:
    """A bundle's config.json: a JSON object with an ``architecture`` entry."""
    if not config_path.is_file():
        fail(f"'{config_path.parent}' is a directory without {paths.BUNDLE_CONFIG}; a bundle holds config.json and "
             "model.safetensors.")
    config = read_json(config_path, what=f"'{config_path}'")
    if not isinstance(config, dict):
        fail(f"'{config_path}' must hold a JSON object.")
    if "architecture" not in config:
        fail(f"'{config_path}' has no \"architecture\" entry; see docs/guide/models-and-tickets.md, 'Bundles'.")
    return config


FORMAT = Format(name="bundle", matches=lambda path: path.is_dir() and (path / paths.BUNDLE_CONFIG).is_file(),
                dense=dense_from_bundle, ticket=ticket_from_bundle)
