"""Writing the bundle format (config.json + model.safetensors [+ mask.safetensors] [+ preprocess.json])."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .. import paths
from ..preprocess import Preprocessor
from .mask import Mask

BUNDLE_VERSION = 1


def save_bundle(directory: Path, module: nn.Module, *, architecture: str, arguments: dict[str, Any],
                labels: tuple[str, ...] | None = None, preprocess: Preprocessor | None = None,
                mask: Mask | None = None) -> Path:
    """Save ``module`` (times ``mask``, when given) as a bundle that ``ticketaudit report`` loads."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = mask.apply(module) if mask is not None else module
    state = {k: v.detach().to("cpu").contiguous() for k, v in weights.state_dict().items()}
    save_file(state, str(directory / paths.BUNDLE_WEIGHTS))
    if mask is not None:
        save_file({k: v.to(torch.uint8).contiguous() for k, v in mask.items()},
                  str(directory / paths.BUNDLE_MASK))
    meta: dict[str, Any] = {"bundle_version": BUNDLE_VERSION}
    if labels is not None:
        meta["labels"] = list(labels)
    config = {"architecture": architecture, "arguments": arguments, "ticketaudit": meta}
    (directory / paths.BUNDLE_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if preprocess is not None:
        (directory / paths.BUNDLE_PREPROCESS).write_text(json.dumps(preprocess.to_dict(), indent=2) + "\n",
                                                         encoding="utf-8")
    return directory
