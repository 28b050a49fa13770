"""A plain multilayer perceptron for tabular data (the demo's dense model)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Linear -> ReLU blocks ending in a linear layer with ``out_features`` logits."""

    def __init__(self, *, in_features: int, hidden: Sequence[int], out_features: int) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
            raise ValueError("layer sizes must be positive")
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(size_in, size_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
