"""Architectures a bundle's ``config.json`` can name, built from keyword arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .._validation import fail
from .cnn import CNN
from .ft_transformer import FTTransformer
from .mlp import MLP

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "ft-transformer": FTTransformer, "cnn": CNN}


def build_architecture(name: str, arguments: dict[str, Any]) -> nn.Module:
    """Instantiate a registered architecture, with a clear error for unknown names or arguments."""
    if name not in ARCHITECTURES:
        fail(f"bundle architecture '{name}' is unknown. Known: {', '.join(sorted(ARCHITECTURES))}.")
    try:
        return ARCHITECTURES[name](**arguments)
    except (TypeError, ValueError) as error:
        fail(f"bundle architecture '{name}' cannot be built from its config arguments: {error}.")
