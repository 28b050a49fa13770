"""Iterative magnitude pruning with weight rewinding (Frankle et al.), on CPU, deterministic."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..tickets.mask import Mask, prunable_parameters
from .methods import select_weights


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0


BatchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""batch_loss(logits, row indices of the batch) -> scalar loss."""


def train(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, *, settings: TrainSettings,
          mask: Mask | None = None, snapshot_at: int | None = None, on_epoch: Callable[[], None] | None = None,
          batch_loss: BatchLoss | None = None,
          after_epoch: Callable[[nn.Module], None] | None = None) -> tuple[nn.Module, nn.Module | None]:
    """Train a copy of ``model`` with Adam; pruned weights stay zero. Returns (trained, snapshot at step k).

    ``batch_loss`` replaces the cross-entropy (recovery losses); ``after_epoch`` sees the model after
    each epoch (the constrained recovery's dual step)."""
    model = copy.deepcopy(model).train()
    for param in model.parameters():
        param.requires_grad_(True)
    generator = torch.Generator().manual_seed(settings.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    cross_entropy = nn.CrossEntropyLoss()
    loss_fn = batch_loss or (lambda logits, rows: cross_entropy(logits, labels[rows]))
    masks = {n: mask[n].to(p.dtype) for n, p in prunable_parameters(model).items()} if mask is not None else None
    params = prunable_parameters(model)
    snapshot = None
    step = 0
    for _ in range(settings.epochs):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(features), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            optimiser.zero_grad()
            loss_fn(model(features[batch]), batch).backward()
            optimiser.step()
            if masks is not None:
                with torch.no_grad():
                    for name, param in params.items():
                        param.mul_(masks[name])
            step += 1
            if snapshot_at is not None and step == snapshot_at:
                snapshot = copy.deepcopy(model).eval()
        if after_epoch is not None:
            after_epoch(model)
        if on_epoch is not None:
            on_epoch()
    return model.eval(), snapshot


def global_magnitude_mask(model: nn.Module, *, keep: float, previous: Mask | None = None) -> Mask:
    """Keep the largest-magnitude ``keep`` share of all prunable weights (ties broken by position)."""
    magnitude = {n: p.detach().abs() for n, p in prunable_parameters(model).items()}
    return select_weights(model, magnitude, density=keep, previous=previous)


def iterative_magnitude_pruning(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, *, rounds: int,
                                final_density: float, settings: TrainSettings, rewind_step: int = 200,
                                on_epoch: Callable[[], None] | None = None) -> tuple[nn.Module, nn.Module, Mask]:
    """Train dense, then ``rounds`` times: prune globally by magnitude, rewind to step ``rewind_step``, retrain.

    Returns (dense trained model, ticket trained model, ticket mask).
    """
    dense, rewind = train(model, features, labels, settings=settings, snapshot_at=rewind_step, on_epoch=on_epoch)
    assert rewind is not None
    per_round = final_density ** (1 / rounds)
    mask: Mask | None = None
    current = dense
    for r in range(1, rounds + 1):
        mask = global_magnitude_mask(current, keep=per_round**r, previous=mask)
        current, _ = train(mask.apply(rewind), features, labels, settings=settings, mask=mask, on_epoch=on_epoch)
    assert mask is not None
    return dense, mask.apply(current), mask
