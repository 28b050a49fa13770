"""Magnitude-anchored fair pruning: start from global magnitude's mask and repair the groups it harms.

Global magnitude keeps the large weights most rows rely on; a group whose useful weights are small
(its inputs are on a large scale, or rare) loses them. Ranking every weight by a per-group first-order
saliency instead throws that ordering away and costs the majority more than it saves the minority.
So the fair methods keep magnitude's mask and spend a *swap budget*: they restore the pruned weights
that matter most to the groups with the largest excess accuracy drop (drop minus the overall drop, on
the calibration rows), and prune as many of the kept weights that matter least to everyone in exchange,
so the sparsity is unchanged. The budget is chosen on the calibration rows from ``SWAP_BUDGETS``: the one
that narrows the accuracy gap most without costing more than ``ACCURACY_SLACK`` of overall accuracy
against global magnitude, among those that narrow it clearly (by more than ``CLEAR_GAIN_Z`` standard errors
of the paired change, or while raising overall accuracy by that many: choosing the best of many swaps on the
same rows otherwise picks noise, which then costs on new rows). Budget 0 — global magnitude itself — wins whenever no swap clearly helps, so on the
calibration rows an anchored method never has a wider gap than global magnitude, nor more than
``ACCURACY_SLACK`` less accuracy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..tickets.mask import prunable_parameters

SWAP_BUDGETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5)
"""Shares of the kept weights a swap may replace (0: global magnitude's mask as it is)."""
ACCURACY_SLACK = 0.0025
"""Overall calibration accuracy a swap may cost against global magnitude's mask (a quarter point)."""
SHORTLIST = 3
"""Swaps (the best before recovery) that are recovered and judged again when the model will be fine-tuned."""
CLEAR_GAIN_Z = 3.0
"""How many standard errors a swap must narrow the calibration gap by to be taken over global magnitude's mask
(3, chosen on bench/fair_pruning.py and checked on fresh seeds: see docs/guide/alternatives.md, "Fair pruning:
measured").
The standard error is the paired one, from the rows each group's prediction changes on (McNemar's counts)."""


@dataclass(frozen=True)
class Harm:
    """Per calibration group (stratum) with enough rows: its excess accuracy drop under a mask."""

    overall: float
    """Overall calibration accuracy."""
    gap: float
    """Largest minus smallest group accuracy."""
    excess: dict[int, float]
    """Group's accuracy drop from the dense model minus the overall drop."""
    accuracy: dict[int, float] = field(default_factory=dict, compare=False)
    """Group's accuracy."""
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), compare=False)
    """Per calibration row: predicted right."""


class _Scorer:
    """Accuracy of ``model`` under any keep-vector on the calibration rows (one float32 copy, reused)."""

    def __init__(self, model: nn.Module, features: torch.Tensor, labels: torch.Tensor, groups: np.ndarray, *,
                 min_rows: int) -> None:
        self.work = copy.deepcopy(model).to(torch.float32).eval()
        self.params = prunable_parameters(self.work)
        self.dense_weights = {n: p.detach().clone() for n, p in self.params.items()}
        self.features, self.labels = features, labels.numpy()
        counts = {int(g): int((groups == g).sum()) for g in np.unique(groups)}
        sized = [g for g, n in counts.items() if n >= min_rows] or list(counts)
        self.members = {g: groups == g for g in sized}
        self.dense_correct = self._correct(None)

    def _correct(self, keep: torch.Tensor | None) -> np.ndarray:
        offset = 0
        with torch.no_grad():
            for name, param in self.params.items():
                weights = self.dense_weights[name]
                if keep is None:
                    param.copy_(weights)
                else:
                    param.copy_(weights * keep[offset:offset + weights.numel()].view_as(weights))
                offset += weights.numel()
            predicted = _predicted(self.work, self.features)
        return predicted == self.labels

    def harm_of(self, model: nn.Module) -> Harm:
        """The harm of another model (a recovered ticket, in eval mode), against the same dense model's."""
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        return self._harm(_predicted(model, self.features, dtype=dtype) == self.labels)

    def harm(self, keep: torch.Tensor) -> Harm:
        return self._harm(self._correct(keep))

    def _harm(self, correct: np.ndarray) -> Harm:
        overall, dense_overall = float(correct.mean()), float(self.dense_correct.mean())
        accuracy = {g: float(correct[m].mean()) for g, m in self.members.items()}
        drop = {g: float(self.dense_correct[m].mean()) - accuracy[g] for g, m in self.members.items()}
        return Harm(overall=overall, gap=max(accuracy.values()) - min(accuracy.values()),
                    excess={g: d - (dense_overall - overall) for g, d in drop.items()}, accuracy=accuracy,
                    correct=correct)

    def clearly_better(self, other: Harm, *, than: Harm) -> bool:
        """Whether ``other``'s gap is narrower than ``than``'s and clearly so: it narrows by more than
        ``CLEAR_GAIN_Z`` standard errors of the paired change (the groups at either end of either gap; per group
        (b + c) / n^2, b and c the rows only one of the two gets right), or overall accuracy rises by that many
        (a swap that gives everyone back their weights barely moves the gap)."""
        gain = than.gap - other.gap
        if gain <= 1e-12:
            return False
        ends = {max(than.accuracy, key=than.accuracy.get), min(than.accuracy, key=than.accuracy.get),
                max(other.accuracy, key=other.accuracy.get), min(other.accuracy, key=other.accuracy.get)}
        variance = 0.0
        for group in ends:
            rows = self.members[group]
            changed = int((other.correct[rows] != than.correct[rows]).sum())
            variance += changed / max(int(rows.sum()), 1) ** 2
        if gain > CLEAR_GAIN_Z * variance ** 0.5:
            return True
        changed = int((other.correct != than.correct).sum())
        return other.overall - than.overall > CLEAR_GAIN_Z * changed ** 0.5 / max(len(other.correct), 1)


SCORED_ROWS = 256
"""Calibration rows the swap search runs at once (all at once held a 224-px CNN's activations for every row: 6.4 GiB
on 300 images)."""


def _predicted(model: nn.Module, features: torch.Tensor, *, dtype: torch.dtype | None = None) -> np.ndarray:
    """The class ``model`` predicts for each row, ``SCORED_ROWS`` rows at a time."""
    with torch.inference_mode():
        return np.concatenate([model(part if dtype is None else part.to(dtype)).argmax(dim=1).numpy()
                               for part in features.split(SCORED_ROWS)]) if len(features) else np.zeros(0, dtype=int)


def anchored_keep(model: nn.Module, *, anchor: torch.Tensor, alive: torch.Tensor, saliency: Mapping[int, torch.Tensor], features: torch.Tensor, labels: torch.Tensor,
                  groups: np.ndarray, min_rows: int, worst_only: bool, layers: list[slice],
                  per_layer_only: bool = False,
                  recovered: Callable[[torch.Tensor], nn.Module] | None = None) -> torch.Tensor:
    """Global magnitude's keep-vector ``anchor`` with the chosen swap budget spent.

    ``saliency`` holds each group's flat importance; ``worst_only`` repairs the group with the largest
    excess drop alone (else every harmed group, weighted by its excess drop). Swaps are tried across the
    whole model and within each layer (``layers``: each tensor's flat slice), which keeps every layer's
    density as magnitude chose it; ``per_layer_only`` (per-layer sparsity targets) tries the latter alone.
    ``recovered`` (keep-vector -> the fine-tuned model) judges the ``SHORTLIST`` best swaps and magnitude's
    own mask again after recovery, so the choice is made for the model that ships."""
    scorer = _Scorer(model, features, labels, groups, min_rows=min_rows)
    base = scorer.harm(anchor)
    harmed = sorted(((e, g) for g, e in base.excess.items() if e > 0 and g in saliency), reverse=True)
    if not harmed:
        return anchor
    if worst_only:
        harmed = harmed[:1]
    pruned = alive & ~anchor
    restore_score = torch.zeros(anchor.shape, dtype=torch.float64)
    for excess, group in harmed:
        importance = torch.where(pruned, saliency[group], torch.zeros_like(restore_score))
        total = float(importance.sum())
        if total > 0:
            restore_score += excess * importance / total
    # What a kept weight is worth to everyone: every group's saliency, per row (groups of any size count
    # by their rows, so the majority's working weights are the last to go).
    drop_score = torch.stack([s for s in saliency.values()]).sum(dim=0)
    layouts = [layers] if per_layer_only else [[slice(0, anchor.numel())], layers]
    tried: list[tuple[torch.Tensor, Harm]] = []  # budgets ascending: ties go to the smaller swap
    for budget in SWAP_BUDGETS[1:]:
        for parts in layouts:
            keep = anchor.clone()
            for part in parts:
                _swap(keep, part, share=budget, restore_score=restore_score, drop_score=drop_score, anchor=anchor)
            tried.append((keep, scorer.harm(keep)))
    better = [keep for keep, harm in sorted(tried, key=lambda pair: pair[1].gap)
              if scorer.clearly_better(harm, than=base) and harm.overall >= base.overall - ACCURACY_SLACK]
    if not better or recovered is None:
        return better[0] if better else anchor
    base = scorer.harm_of(recovered(anchor))  # the same comparison, after recovery
    best, best_gap = anchor, base.gap
    for keep in better[:SHORTLIST]:
        harm = scorer.harm_of(recovered(keep))
        if (harm.gap < best_gap - 1e-12 and scorer.clearly_better(harm, than=base)
                and harm.overall >= base.overall - ACCURACY_SLACK):
            best, best_gap = keep, harm.gap
    return best


def _swap(keep: torch.Tensor, part: slice, *, share: float, restore_score: torch.Tensor, drop_score: torch.Tensor,
          anchor: torch.Tensor) -> None:
    """Within ``part``: restore the pruned weights with the highest positive ``restore_score`` and prune as
    many of the kept weights with the lowest ``drop_score`` (in place; the part's kept count is unchanged)."""
    kept = anchor[part]
    n = int(round(share * int(kept.sum())))
    scores = restore_score[part]
    candidates = int(((scores > 0) & ~kept).sum())
    n = min(n, candidates, int(kept.sum()))
    if n <= 0:
        return
    restore = torch.argsort(torch.where(~kept, scores, torch.full_like(scores, -1.0)), descending=True,
                            stable=True)[:n]
    drop = torch.argsort(torch.where(kept, drop_score[part], torch.full_like(scores, torch.inf)),
                         stable=True)[:n]
    view = keep[part]
    view[drop] = False
    view[restore] = True
