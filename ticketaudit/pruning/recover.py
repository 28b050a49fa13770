"""Recovering accuracy after pruning, with the mask held fixed: plain fine-tuning, group-reweighted
fine-tuning, constrained fine-tuning that bounds each group's excess drop (a Lagrangian, after CEAG,
ICLR'24), and distillation from the dense model."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..tickets.mask import Mask, prunable_parameters
from .methods import Calibration

RECOVERY = ("none", "finetune", "group-reweighted", "constrained", "distill")


@dataclass(frozen=True, kw_only=True)
class RecoverySettings:
    """How to fine-tune: epochs, Adam learning rate, mini-batch size, seed; ``epsilon`` bounds the
    excess drop for ``constrained``; ``temperature`` and ``alpha`` weigh the distillation loss."""

    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    epsilon: float = 0.02
    dual_step: float = 20.0
    temperature: float = 2.0
    alpha: float = 0.5


def excess_drops(dense: nn.Module, ticket: nn.Module, data: Calibration) -> np.ndarray:
    """psi_g per group id (index = group id): accuracy drop of g minus the overall drop."""
    with torch.inference_mode():
        correct_d = (dense(data.features).argmax(1) == data.labels).numpy()
        correct_t = (ticket(data.features).argmax(1) == data.labels).numpy()
    overall = correct_d.mean() - correct_t.mean()
    drops = np.zeros(int(data.groups.max()) + 1)
    for g in np.unique(data.groups):
        rows = data.groups == g
        drops[g] = (correct_d[rows].mean() - correct_t[rows].mean()) - overall
    return drops


def recover(ticket: nn.Module, mask: Mask, *, dense: nn.Module, data: Calibration, method: str,
            settings: RecoverySettings) -> nn.Module:
    """A fine-tuned copy of ``ticket``; pruned weights stay exactly zero; ``dense`` is not changed."""
    if method == "none":
        return copy.deepcopy(ticket).eval()
    model = copy.deepcopy(ticket).to(torch.float32).train()
    for param in model.parameters():
        param.requires_grad_(True)
    teacher = copy.deepcopy(dense).to(torch.float32).eval()
    with torch.inference_mode():
        teacher_logits = teacher(data.features)
    params = prunable_parameters(model)
    keep = {n: mask[n].to(torch.float32) for n in params}
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    groups = torch.as_tensor(data.groups)
    n_groups = int(data.groups.max()) + 1
    counts = torch.bincount(groups, minlength=n_groups).to(torch.float32)
    row_weight = (len(groups) / (counts.clamp(min=1) * (counts > 0).sum()))[groups]
    multipliers = torch.zeros(n_groups)
    best_feasible: nn.Module | None = None
    best_accuracy = -1.0
    for _ in range(settings.epochs):
        order = torch.randperm(len(data.labels), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            logits = model(data.features[batch])
            losses = F.cross_entropy(logits, data.labels[batch], reduction="none")
            if method == "group-reweighted":
                loss = (losses * row_weight[batch]).sum() / row_weight[batch].sum()
            elif method == "distill":
                t = settings.temperature
                soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(teacher_logits[batch] / t, dim=1),
                                reduction="batchmean") * t * t
                loss = (1 - settings.alpha) * losses.mean() + settings.alpha * soft
            elif method == "constrained":
                loss = losses.mean() + _lagrangian_terms(losses, groups[batch], multipliers)
            else:
                loss = losses.mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                for name, param in params.items():
                    param.mul_(keep[name])
        if method == "constrained":  # dual ascent on the accuracy-based excess drops (a proxy-Lagrangian)
            model.eval()
            drops = excess_drops(teacher, model, data)
            with torch.inference_mode():
                accuracy = float((model(data.features).argmax(1) == data.labels).float().mean())
            if drops.max() <= settings.epsilon and accuracy > best_accuracy:
                best_feasible, best_accuracy = copy.deepcopy(model), accuracy
            violation = torch.as_tensor(drops, dtype=torch.float32) - settings.epsilon
            multipliers = (multipliers + settings.dual_step * violation).clamp(min=0.0)
            model.train()
    if method == "constrained" and best_feasible is not None:
        model = best_feasible  # the most accurate iterate that met every bound on the training rows
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def _lagrangian_terms(losses: torch.Tensor, groups: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """sum_g lambda_g * (mean loss of g - mean loss): the constraints' smooth proxies, so groups whose
    excess drop exceeds its bound weigh more in the next steps."""
    overall = losses.mean()
    terms = losses.new_zeros(())
    for g in torch.unique(groups):
        if multipliers[g] > 0:
            terms = terms + multipliers[g] * (losses[groups == g].mean() - overall)
    return terms
