"""A small FT-Transformer for tabular data: one token per raw column, a CLS token, a Transformer
encoder (``nn.MultiheadAttention`` inside), and a linear head on the CLS token."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ColumnTokenizer(nn.Module):
    """Input features -> one ``d_token`` token per raw column (a linear map of the column's inputs).

    The embedding layer that ``layer-integrated-gradients`` attributes to: token c is column c.
    """

    def __init__(self, *, in_features: int, column_sizes: Sequence[int], d_token: int) -> None:
        super().__init__()
        segments = torch.zeros(in_features, len(column_sizes))
        start = 0
        for column, size in enumerate(column_sizes):
            segments[start:start + size, column] = 1.0
            start += size
        self.register_buffer("segments", segments, persistent=False)
        self.weight = nn.Parameter(torch.randn(in_features, d_token) / d_token**0.5)
        self.bias = nn.Parameter(torch.zeros(len(column_sizes), d_token))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ni,id,ic->ncd", x, self.weight, self.segments.to(x.dtype)) + self.bias


class FTTransformer(nn.Module):
    """Columns of width 1 (numeric) or k (one-hot) each become one ``d_token`` token."""

    def __init__(self, *, in_features: int, column_sizes: Sequence[int], out_features: int, d_token: int = 16,
                 heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        if sum(column_sizes) != in_features or any(size < 1 for size in column_sizes):
            raise ValueError("column_sizes must be positive and add up to in_features")
        if d_token % heads:
            raise ValueError("d_token must be divisible by heads")
        self.tokenizer = ColumnTokenizer(in_features=in_features, column_sizes=column_sizes, d_token=d_token)
        self.cls = nn.Parameter(torch.randn(1, 1, d_token) / d_token**0.5)
        layer = nn.TransformerEncoderLayer(d_token, heads, dim_feedforward=2 * d_token, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_token)
        self.head = nn.Linear(d_token, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.tokenizer(x)], dim=1)
        return self.head(self.norm(self.encoder(tokens)[:, 0]))
