"""A small convolutional network for images (the image demo's dense model; any ``cnn`` bundle)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CNN(nn.Module):
    """Conv 3x3 -> ReLU -> max-pool blocks, global average pooling and a linear layer with ``out_features`` logits."""

    def __init__(self, *, in_channels: int = 3, channels: Sequence[int] = (16, 32, 64), out_features: int = 2) -> None:
        super().__init__()
        if in_channels < 1 or out_features < 1 or not channels or any(c < 1 for c in channels):
            raise ValueError("channel counts and out_features must be positive")
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, kernel_size=3, padding=1), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(previous, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))
