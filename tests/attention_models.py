"""Small models with ``nn.MultiheadAttention`` whose attention is known in closed form.

``OneHotAttention``: 4 tokens of 3 features each. Head 0's query is 100*x1 + b*x2 and its key 100*x0.
With token 0 the only one with x0 = 100 (x0 = 0 elsewhere) and x1 = 1, x2 = 100 on every token:
b = -1 (dense) gives query 0 and uniform attention (entropy 1); b = 0 (the ticket masks it) gives
scores 10^6 apart, attention exactly one-hot (entropy 0). Rows with x2 = 0 are one-hot in both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

TOKENS, WIDTH = 4, 3


class OneHotAttention(nn.Module):
    def __init__(self, *, query_x2: float = -1.0, positional: bool = False) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(WIDTH - 1, 2, batch_first=True, bias=False)
        self.embed = nn.Linear(WIDTH, WIDTH - 1, bias=False)  # unused by the attention scores (see forward)
        self.head = nn.Linear(WIDTH - 1, 2)
        self.positional = positional
        with torch.no_grad():
            self.attention.in_proj_weight.zero_()
            # The module's inputs are 2-d; scores come from the raw features through these rows (see forward).
            self.q0 = nn.Parameter(torch.tensor([[0.0, 100.0, query_x2]]))
            self.k0 = nn.Parameter(torch.tensor([[100.0, 0.0, 0.0]]))
            self.rest = nn.Parameter(torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(0)))
            self.attention.in_proj_weight[4:] = torch.eye(2)
            self.attention.out_proj.weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(len(x), TOKENS, WIDTH)
        # Per-head projections are built outside the MHA so the test controls them; the MHA gets
        # pre-projected q/k (its q/k rows are the identity) and its own value rows.
        q = torch.cat([tokens @ self.q0.T, tokens @ self.rest[:1].T], dim=-1)
        k = torch.cat([tokens @ self.k0.T, tokens @ self.rest[1:2].T], dim=-1)
        v = tokens @ self.rest[2:].T
        if self.positional:
            out, _ = self.attention(q, k, v, None, False)
        else:
            out, _ = self.attention(q, k, v, need_weights=False)
        return self.head(out.mean(dim=1))


def identity_qk(model: OneHotAttention) -> OneHotAttention:
    with torch.no_grad():
        model.attention.in_proj_weight[:4] = torch.cat([torch.eye(2), torch.eye(2)])
    return model


def one_hot_pair(*, positional: bool = False) -> tuple[nn.Module, nn.Module]:
    """(dense, ticket): the ticket is the dense model with the query's x2 weight pruned to 0."""
    dense = identity_qk(OneHotAttention(query_x2=-1.0, positional=positional))
    ticket = identity_qk(OneHotAttention(query_x2=0.0, positional=positional))
    ticket.load_state_dict({**dense.state_dict(), "q0": ticket.q0.detach().clone()})
    return dense.eval(), ticket.eval()


def one_hot_table(rows: int, *, share_x2: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Group 'spread' rows have x2 = 100 (dense uniform, ticket one-hot), group 'sharp' rows x2 = 0."""
    rng = np.random.default_rng(seed)
    spread = rng.random(rows) < share_x2
    features = np.zeros((rows, TOKENS, WIDTH))
    features[:, 0, 0] = 100.0
    features[:, :, 1] = 1.0
    features[spread, :, 2] = 100.0
    frame = pd.DataFrame(features.reshape(rows, -1), columns=[f"f{i}" for i in range(TOKENS * WIDTH)])
    frame["group"] = np.where(spread, "spread", "sharp")
    frame["y"] = rng.integers(0, 2, size=rows)
    return frame
