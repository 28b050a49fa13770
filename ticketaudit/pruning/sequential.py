"""Layer-wise pruning of a causal language model, one decoder block at a time (bounded memory: one block's
calibration activations): each block sees the outputs of the blocks already pruned, as in the authors' code of
Wanda (Sun et al. 2023) and SparseGPT (Frantar & Alistarh 2023).

- ``magnitude``: the smallest |W| of each layer (or of each group of M inputs, N:M), as the Wanda code's baseline;
- ``wanda``: the smallest |W| x ||X_j||_2 (input feature norms over the calibration tokens), per output row;
- ``wanda-worst-group``: Wanda with each input's norm taken per calibration group (root mean square over that
  group's tokens) and the largest kept: a weight matters as much as it matters to the group that needs it most;
- ``sparsegpt``: the OBS-style sweep over columns with the inverse Hessian (2 X X^T, damped 1% of its mean
  diagonal): weights are removed by w^2 / [H^-1]_jj^2 within blocks of 128 columns and the rest updated to
  compensate, so the kept weights change too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._validation import fail
from .language import row_mask

METHODS = ("magnitude", "wanda", "sparsegpt", "wanda-worst-group")
BLOCK_SIZE = 128
DAMPING = 0.01


class _Stop(Exception):
    """Raised by the hook that records the first block's inputs: the rest of the forward pass is not needed."""


def decoder_blocks(module: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks: its longest ``nn.ModuleList`` (Llama's ``model.layers``, GPT-2's ``transformer.h``)."""
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        fail("the language model has no list of decoder blocks (nn.ModuleList) to prune layer by layer.")
    return max(lists, key=len)


def block_linears(block: nn.Module) -> dict[str, tuple[nn.Module, bool]]:
    """The block's linear layers by name, with whether the weight is stored (in, out) (GPT-2's ``Conv1D``)."""
    out = {}
    for name, layer in block.named_modules():
        if isinstance(layer, nn.Linear):
            out[name] = (layer, False)
        elif type(layer).__name__ == "Conv1D":
            out[name] = (layer, True)
    return out


def first_block_inputs(module: nn.Module, batches: list[torch.Tensor]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The positional and keyword arguments the first decoder block receives for each calibration batch."""
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured.append((args, dict(kwargs)))
        raise _Stop

    handle = decoder_blocks(module)[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            for batch in batches:
                try:
                    module(input_ids=batch, use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    return captured


def _hidden(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(call: tuple[tuple[Any, ...], dict[str, Any]], hidden: torch.Tensor
                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = call
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


class _Statistics:
    """Per linear layer of a block: the input norms' squares (Wanda; per group for ``wanda-worst-group``) or the
    Hessian 2 X X^T / n (SparseGPT)."""

    def __init__(self, layer: nn.Module, transposed: bool, *, hessian: bool, groups: int = 1) -> None:
        columns = layer.weight.shape[0] if transposed else layer.weight.shape[1]
        self.hessian = hessian
        self.tokens = 0
        self.value = torch.zeros((columns, columns) if hessian else columns, dtype=torch.float64)
        self.per_group = torch.zeros((groups, columns), dtype=torch.float64)
        self.group_tokens = torch.zeros(groups, dtype=torch.float64)
        self.group = 0
        """The group of the calibration sequence now running (set by ``_collect``)."""
        self.weights: torch.Tensor | None = None
        """Each token's weight in the sequence now running (protected items weigh more), or None: all 1."""

    def add(self, inputs: torch.Tensor) -> None:
        """Add one sequence's inputs: a token of weight w counts as w copies of it (norms, Hessian, token count)."""
        x = inputs.detach().reshape(-1, inputs.shape[-1]).to(torch.float64)
        w = torch.ones(x.shape[0], dtype=torch.float64) if self.weights is None else self.weights.reshape(-1)
        n = float(w.sum())
        if self.hessian:  # the reference's running mean: H = H * t / (t + n) + 2 X^T W X / (t + n)
            self.value *= self.tokens / (self.tokens + n)
            self.value += (2.0 / (self.tokens + n)) * (x.T @ (w[:, None] * x))
        else:
            squares = (w[:, None] * x.pow(2)).sum(dim=0)
            self.value += squares
            self.per_group[self.group] += squares
            self.group_tokens[self.group] += n
        self.tokens += n

    def worst_group_norms(self) -> torch.Tensor:
        """Each input's largest per-group root mean square (groups with tokens only)."""
        seen = self.group_tokens > 0
        return (self.per_group[seen] / self.group_tokens[seen, None]).sqrt().amax(dim=0)


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, *, sparsity: float,
                    pattern: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one (out, in) weight: the pruned and updated weight and its keep mask."""
    W = weight.clone().to(torch.float64)
    H = hessian.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += DAMPING * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    rows, columns = W.shape
    pruned = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, columns, BLOCK_SIZE):
        i2 = min(i1 + BLOCK_SIZE, columns)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)
        if pattern is None:
            scores = W1 ** 2 / (torch.diag(Hinv1).reshape(1, -1)) ** 2
            threshold = torch.sort(scores.flatten())[0][int(scores.numel() * sparsity)]
            mask1 = scores <= threshold
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            if pattern is not None and i % pattern[1] == 0:
                scores = W1[:, i:i + pattern[1]] ** 2 / (torch.diag(Hinv1)[i:i + pattern[1]].reshape(1, -1)) ** 2
                drop = pattern[1] - pattern[0]
                mask1.scatter_(1, i + torch.topk(scores, drop, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            error = (w - q) / d
            W1[:, i:] -= error.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = error
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W.to(weight.dtype), ~pruned


def prune_layerwise(module: nn.Module, batches: list[torch.Tensor], *, method: str,
                    sparsity: float | Mapping[str, float],
                    pattern: tuple[int, int] | None = None, groups: list[int] | None = None,
                    token_weights: list[torch.Tensor] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
    """Prune ``module``'s decoder blocks in place, one at a time; returns each pruned weight's keep mask by
    parameter name. The embeddings and the output head stay dense. ``groups``: each batch's calibration group
    (``wanda-worst-group`` needs them); ``token_weights``: each batch's per-token weights (protected items);
    ``sparsity``: one share for every layer, or each layer's by its weight's parameter name (another ticket's)."""
    if method not in METHODS:
        fail(f"--method for language models must be one of {', '.join(METHODS)}; got {method!r}.")
    if method == "wanda-worst-group" and groups is None:
        fail("--method wanda-worst-group takes each input's norm per group: give grouped calibration items "
             "(--calibration FILE --calibration-text COL --balance-groups COL).")
    owners = groups if groups is not None else [0] * len(batches)
    blocks = decoder_blocks(module)
    prefix = next(name for name, m in module.named_modules() if m is blocks)
    calls = first_block_inputs(module, batches)
    masks: dict[str, torch.Tensor] = {}
    for index, block in enumerate(blocks):
        linears = block_linears(block)
        stats = (_collect(block, linears, calls, owners, token_weights, hessian=method == "sparsegpt")
                 if method != "magnitude" else {})
        with torch.no_grad():
            for name, (layer, transposed) in linears.items():
                weight = layer.weight.T if transposed else layer.weight
                key = f"{prefix}.{index}.{name}.weight"
                share = sparsity if isinstance(sparsity, (int, float)) else sparsity[key]
                kept = _prune_one(weight, stats.get(name), method=method, sparsity=share, pattern=pattern)
                masks[key] = kept.T.contiguous() if transposed else kept
        with torch.inference_mode():  # the next block reads this pruned block's outputs
            calls = [_with_hidden(call, _output(block(*call[0], **call[1]))) for call in calls]
        if progress is not None:
            progress(index + 1, len(blocks))
    return masks


def _collect(block: nn.Module, linears: dict[str, tuple[nn.Module, bool]],
             calls: list[tuple[tuple[Any, ...], dict[str, Any]]], owners: list[int],
             token_weights: list[torch.Tensor] | None, *, hessian: bool) -> dict[str, _Statistics]:
    stats = {name: _Statistics(layer, transposed, hessian=hessian, groups=max(owners) + 1)
             for name, (layer, transposed) in linears.items()}
    handles = [layer.register_forward_hook(lambda _, inputs, __, s=stats[name]: s.add(inputs[0]))
               for name, (layer, _) in linears.items()]
    try:
        with torch.inference_mode():
            for index, ((args, kwargs), owner) in enumerate(zip(calls, owners)):
                for statistics in stats.values():
                    statistics.group = owner
                    statistics.weights = None if token_weights is None else token_weights[index]
                block(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return stats


def _output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _prune_one(weight: torch.Tensor, stats: _Statistics | None, *, method: str, sparsity: float,
               pattern: tuple[int, int] | None) -> torch.Tensor:
    """Prune one (out, in) weight view in place; its keep mask (all kept at sparsity 0: a layer another ticket left
    dense)."""
    if sparsity <= 0 and pattern is None:
        return torch.ones_like(weight, dtype=torch.bool)
    if method == "sparsegpt":
        assert stats is not None
        updated, kept = sparsegpt_prune(weight.detach(), stats.value, sparsity=sparsity, pattern=pattern)
        weight.copy_(updated)
        return kept
    score = weight.detach().abs().to(torch.float64)
    if method == "magnitude" and pattern is None:  # the reference baseline: one threshold over the whole layer
        threshold = torch.sort(score.flatten())[0][int(score.numel() * sparsity)]
        kept = score > threshold
        weight.mul_(kept.to(weight.dtype))
        return kept
    if method == "wanda":
        assert stats is not None
        score = score * stats.value.sqrt()[None, :]
    elif method == "wanda-worst-group":
        assert stats is not None
        score = score * stats.worst_group_norms()[None, :]
    kept = row_mask(score, sparsity=sparsity, pattern=pattern)
    weight.mul_(kept.to(weight.dtype))
    return kept
