"""Recovering accuracy after pruning, with the mask held fixed: plain fine-tuning, group-reweighted
fine-tuning, constrained fine-tuning that bounds each group's excess drop (a Lagrangian, after CEAG,
ICLR'24), and distillation from the dense model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..choices import RECOVERIES
from ..tickets.mask import Mask
from .imp import TrainSettings, train
from .methods import Calibration

RECOVERY = RECOVERIES


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


def _excess(correct_dense: np.ndarray, correct_ticket: np.ndarray, groups: np.ndarray) -> np.ndarray:
    overall = correct_dense.mean() - correct_ticket.mean()
    drops = np.zeros(int(groups.max()) + 1)
    for g in np.unique(groups):
        rows = groups == g
        drops[g] = (correct_dense[rows].mean() - correct_ticket[rows].mean()) - overall
    return drops


def _correct(model: nn.Module, data: Calibration) -> np.ndarray:
    with torch.inference_mode():
        return (model(data.features).argmax(1) == data.labels).numpy()


def excess_drops(dense: nn.Module, ticket: nn.Module, data: Calibration) -> np.ndarray:
    """psi_g per group id (index = group id): accuracy drop of g minus the overall drop."""
    return _excess(_correct(dense, data), _correct(ticket, data), data.groups)


def recover(ticket: nn.Module, mask: Mask, *, dense: nn.Module, data: Calibration, method: str,
            settings: RecoverySettings) -> nn.Module:
    """A fine-tuned copy of ``ticket`` (``imp.train`` with the method's loss); pruned weights stay exactly
    zero; ``dense`` is not changed."""
    if method == "none":
        return copy.deepcopy(ticket).eval()
    teacher = copy.deepcopy(dense).to(torch.float32).eval()
    with torch.inference_mode():
        teacher_logits = teacher(data.features)
    teacher_correct = (teacher_logits.argmax(1) == data.labels).numpy()
    groups = torch.as_tensor(data.groups)
    n_groups = int(data.groups.max()) + 1
    counts = torch.bincount(groups, minlength=n_groups).to(torch.float32)
    row_weight = (len(groups) / (counts.clamp(min=1) * (counts > 0).sum()))[groups]
    multipliers = torch.zeros(n_groups)
    best: dict[str, Any] = {"model": None, "accuracy": -1.0}

    def batch_loss(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits, data.labels[rows], reduction="none")
        if method == "group-reweighted":
            return (losses * row_weight[rows]).sum() / row_weight[rows].sum()
        if method == "distill":
            t = settings.temperature
            soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(teacher_logits[rows] / t, dim=1),
                            reduction="batchmean") * t * t
            return (1 - settings.alpha) * losses.mean() + settings.alpha * soft
        if method == "constrained":
            return losses.mean() + _lagrangian_terms(losses, groups[rows], multipliers)
        return losses.mean()

    def dual_step(model: nn.Module) -> None:
        """Dual ascent on the measured (accuracy-based) excess drops: a proxy-Lagrangian."""
        nonlocal multipliers
        model.eval()
        correct = _correct(model, data)
        drops = _excess(teacher_correct, correct, data.groups)
        accuracy = float(correct.mean())
        if drops.max() <= settings.epsilon and accuracy > best["accuracy"]:
            best.update(model=copy.deepcopy(model), accuracy=accuracy)
        violation = torch.as_tensor(drops, dtype=torch.float32) - settings.epsilon
        multipliers = (multipliers + settings.dual_step * violation).clamp(min=0.0)
        model.train()

    model, _ = train(copy.deepcopy(ticket).to(torch.float32), data.features, data.labels, mask=mask, batch_loss=batch_loss,
                     settings=TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size,
                                            learning_rate=settings.learning_rate, seed=settings.seed),
                     after_epoch=dual_step if method == "constrained" else None)
    if best["model"] is not None:
        model = best["model"].eval()  # the most accurate iterate that met every bound on the training rows
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
