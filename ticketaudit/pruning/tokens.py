"""Hugging Face classifiers in the pruning code, called with one tensor: text models with (rows, 2, length) token
ids and attention mask, image models with pixel values. Masks, saliency, fine-tuning and scoring then treat them
as any model of one input tensor."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..tickets.huggingface import is_huggingface_module, reads_pixels
from ..tickets.load import LoadedModel
from ..tickets.mask import Mask

PREFIX = "model."
"""The wrapped model's parameter names start with it (masks are renamed on the way in and out)."""


class TokenClassifier(nn.Module):
    """A sequence classifier called with ``x[:, 0]`` as token ids and ``x[:, 1]`` as the attention mask (ids may
    arrive as floats from the float pipelines: exact below 2**24, far above any vocabulary)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        return self.model(input_ids=x[:, 0], attention_mask=x[:, 1]).logits


class PixelClassifier(nn.Module):
    """An image classifier called with its processed pixel values (rows, channels, height, width), in the
    model's own precision."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(p.dtype for p in self.model.parameters() if p.is_floating_point())
        return self.model(pixel_values=x.to(dtype)).logits


WRAPPERS = (TokenClassifier, PixelClassifier)


def wrapped(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` with its module wrapped (and its mask renamed) when it is a Hugging Face model; as it is
    otherwise."""
    if not is_huggingface_module(loaded.module):
        return loaded
    module = PixelClassifier(loaded.module) if reads_pixels(loaded.module) else TokenClassifier(loaded.module)
    mask = Mask({PREFIX + name: tensor for name, tensor in loaded.mask.items()}, model=module)
    return dataclasses.replace(loaded, module=module, mask=mask)


def unwrapped(module: nn.Module, mask: Mask | None) -> tuple[nn.Module, Mask | None]:
    """The Hugging Face model inside a wrapper and its mask with the original names (others as they are)."""
    if not isinstance(module, WRAPPERS):
        return module, mask
    inner = module.model
    if mask is None:
        return inner, None
    return inner, Mask({name.removeprefix(PREFIX): tensor for name, tensor in mask.items()}, model=inner)
