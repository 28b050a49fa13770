"""Pruning methods that reach a requested sparsity exactly: global and layer-wise magnitude,
group-balanced saliency (FairGRAPE-style), worst-group protection, and structured (neuron) pruning.

Saliency of weight w for group g: I_g(w) = sum over mini-batches b of g's rows of (w * dL_b/dw)^2
(first-order Taylor importance, Molchanov et al. 2019). It does not depend on the inputs' scale,
unlike magnitude: a group whose useful weights are small but matter keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import fail
from ..tickets.mask import Mask, prunable_parameters

METHODS = ("global-magnitude", "layerwise-magnitude", "group-balanced", "worst-group", "structured")
SALIENCY_BATCH = 32
"""Rows per mini-batch gradient in the saliency sums: small enough that the squared batch gradients
measure importance even when the model has converged (the mean gradient is then near zero)."""


@dataclass(frozen=True, eq=False)
class Calibration:
    """Rows used to choose masks (and to fine-tune): float32 inputs, labels, and a group id per row."""

    features: torch.Tensor
    labels: torch.Tensor
    groups: np.ndarray
    group_names: tuple[str, ...]


def _flatten(scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([s.detach().flatten().to(torch.float64) for s in scores.values()])


def _unflatten(flat: torch.Tensor, model: nn.Module) -> Mask:
    tensors, offset = {}, 0
    for name, param in prunable_parameters(model).items():
        tensors[name] = flat[offset:offset + param.numel()].view_as(param).clone()
        offset += param.numel()
    return Mask(tensors, model=model)


def _top(scores: torch.Tensor, alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Boolean keep-vector of the ``n_keep`` highest scores among ``alive`` (ties by position)."""
    ranked = torch.where(alive, scores, torch.full_like(scores, -torch.inf))
    order = torch.argsort(ranked, descending=True, stable=True)
    keep = torch.zeros_like(alive)
    keep[order[:n_keep]] = True
    return keep


def mask_from_scores(model: nn.Module, scores: Mapping[str, torch.Tensor], *, sparsity: float | Mapping[str, float],
                     scope: str = "global", previous: Mask | None = None) -> Mask:
    """Keep the highest-scoring weights so that exactly round((1 - sparsity) * N) survive, over all
    prunable weights (``scope="global"``) or per tensor (``"layer"``, or a {name: sparsity} mapping).
    Weights ``previous`` pruned stay pruned."""
    params = prunable_parameters(model)
    alive_flat = (_flatten(previous) > 0) if previous is not None else torch.ones(
        sum(p.numel() for p in params.values()), dtype=torch.bool)
    flat = _flatten(scores)
    if scope == "global" and not isinstance(sparsity, Mapping):
        keep = _top(flat, alive_flat, int(round((1 - sparsity) * flat.numel())))
        return _unflatten(keep, model)
    keep, offset = torch.zeros_like(alive_flat), 0
    for name, param in params.items():
        size = param.numel()
        layer_sparsity = sparsity[name] if isinstance(sparsity, Mapping) else sparsity
        part = slice(offset, offset + size)
        keep[part] = _top(flat[part], alive_flat[part], int(round((1 - layer_sparsity) * size)))
        offset += size
    return _unflatten(keep, model)


def group_saliency(model: nn.Module, calibration: Calibration) -> dict[int, dict[str, torch.Tensor]]:
    """I_g(w) per group id g (every group with rows), from mini-batches of that group's rows."""
    work = _trainable_copy(model)
    params = prunable_parameters(work)
    loss_fn = nn.CrossEntropyLoss()
    result: dict[int, dict[str, torch.Tensor]] = {}
    for group in np.unique(calibration.groups):
        rows = torch.as_tensor(np.flatnonzero(calibration.groups == group))
        totals = {n: torch.zeros_like(p) for n, p in params.items()}
        for start in range(0, len(rows), SALIENCY_BATCH):
            batch = rows[start:start + SALIENCY_BATCH]
            work.zero_grad()
            loss_fn(work(calibration.features[batch]), calibration.labels[batch]).backward()
            with torch.no_grad():
                for name, param in params.items():
                    if param.grad is not None:
                        totals[name] += (param * param.grad) ** 2
        result[int(group)] = {n: t.detach() for n, t in totals.items()}
    return result


def _trainable_copy(model: nn.Module) -> nn.Module:
    import copy

    work = copy.deepcopy(model).to(torch.float32).train()
    for param in work.parameters():
        param.requires_grad_(True)
    return work


def _normalised(saliency: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    total = float(sum(float(s.sum()) for s in saliency.values()))
    return {n: s / total if total > 0 else s for n, s in saliency.items()}


def balanced_scores(saliency: Mapping[int, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each group's saliency normalised to sum 1, then averaged: every group, whatever its size,
    has the same say in which weights survive."""
    normalised = [_normalised(s) for s in saliency.values()]
    return {name: sum(n[name] for n in normalised) / len(normalised) for name in normalised[0]}


def worst_group_scores(saliency: Mapping[int, Mapping[str, torch.Tensor]], worst: int) -> dict[str, torch.Tensor]:
    """max(pooled saliency, the worst group's saliency), each normalised: weights important to the
    worst-off group are kept even when they matter little on average."""
    pooled = _normalised({name: sum(s[name] for s in saliency.values()) for name in next(iter(saliency.values()))})
    worst_scores = _normalised(saliency[worst])
    return {name: torch.maximum(pooled[name], worst_scores[name]) for name in pooled}


def worst_group(model: nn.Module, calibration: Calibration, *, min_rows: int) -> int:
    """The group id with the lowest accuracy of ``model`` on the calibration rows (groups >= min_rows)."""
    with torch.inference_mode():
        predicted = model.to(torch.float32)(calibration.features).argmax(dim=1).numpy()
    correct = predicted == calibration.labels.numpy()
    candidates = [(float(correct[calibration.groups == g].mean()), int(g)) for g in np.unique(calibration.groups)
                  if (calibration.groups == g).sum() >= min_rows]
    if not candidates:
        candidates = [(float(correct[calibration.groups == g].mean()), int(g)) for g in np.unique(calibration.groups)]
    return min(candidates)[1]


def linear_chain(model: nn.Module) -> list[str]:
    """Names of the prunable weights when they form a chain of nn.Linear layers (an MLP), else []."""
    linear_weights = {f"{name}.weight" if name else "weight" for name, m in model.named_modules()
                      if isinstance(m, nn.Linear)}
    params = prunable_parameters(model)
    names = list(params)
    if len(names) < 2 or any(n not in linear_weights for n in names):
        return []
    for first, second in zip(names[:-1], names[1:]):
        if params[first].shape[0] != params[second].shape[1]:
            return []
    return names


def structured_mask(model: nn.Module, *, sparsity: float) -> Mask:
    """Prune whole hidden neurons (a row of one layer and the matching column of the next), lowest
    L2 norm first, until the share of zeroed weights reaches ``sparsity`` (to within one neuron)."""
    chain = linear_chain(model)
    if not chain:
        fail("structured pruning needs a model whose weight matrices form a chain of nn.Linear layers (an MLP); "
             "this model has none. Choose an unstructured --method.")
    params = prunable_parameters(model)
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    neurons = []
    for first, second in zip(chain[:-1], chain[1:]):
        w_in, w_out = params[first].detach(), params[second].detach()
        norms = torch.sqrt((w_in**2).sum(dim=1) + (w_out**2).sum(dim=0))
        for row in range(w_in.shape[0]):
            neurons.append((float(norms[row]), first, second, row, w_in.shape[1] + w_out.shape[0]))
    total = sum(p.numel() for p in params.values())
    target = sparsity * total
    removed = 0
    per_layer_left = {name: params[name].shape[0] for name in chain[:-1]}
    for norm, first, second, row, cost in sorted(neurons, key=lambda n: (n[0], n[1], n[3])):
        if removed + cost > target + cost / 2 or per_layer_left[first] <= 1:
            continue
        keep[first][row, :] = False
        keep[second][:, row] = False
        per_layer_left[first] -= 1
        removed += cost
    return Mask(keep, model=model)


def choose_mask(method: str, model: nn.Module, *, sparsity: float | Mapping[str, float],
                calibration: Calibration | None, min_group_rows: int, previous: Mask | None = None) -> Mask:
    """The mask of ``method`` on ``model`` at ``sparsity`` (a share, or per-layer shares)."""
    if method == "global-magnitude":
        scores = {n: p.detach().abs() for n, p in prunable_parameters(model).items()}
        return mask_from_scores(model, scores, sparsity=sparsity, previous=previous)
    if method == "layerwise-magnitude":
        scores = {n: p.detach().abs() for n, p in prunable_parameters(model).items()}
        return mask_from_scores(model, scores, sparsity=sparsity, scope="layer", previous=previous)
    if method == "structured":
        if isinstance(sparsity, Mapping):
            fail("structured pruning takes one --sparsity, not per-layer densities.")
        return structured_mask(model, sparsity=sparsity)
    if calibration is None:
        fail(f"method '{method}' needs rows with labels and groups to measure saliency.")
    saliency = group_saliency(model, calibration)
    if method == "group-balanced":
        scores = balanced_scores(saliency)
    else:
        scores = worst_group_scores(saliency, worst_group(model, calibration, min_rows=min_group_rows))
    return mask_from_scores(model, scores, sparsity=sparsity, previous=previous)


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Validated method names (``all`` = every method)."""
    if list(methods) == ["all"]:
        return METHODS
    for method in methods:
        if method not in METHODS:
            fail(f"pruning method '{method}' is unknown. Choose from: {', '.join(METHODS)} (or all).")
    if not methods:
        fail("choose at least one pruning method.")
    return tuple(dict.fromkeys(methods))
