"""Writing the bundle format (config.json + model.safetensors [+ mask.safetensors] [+ preprocess.json])."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from .. import paths
from .._io import write_atomically
from ..images import PROCESSOR_FILE
from ..preprocess import Preprocessor
from .mask import Mask

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
