"""A time budget for pruning alternatives (``--alternatives-budget``): each job — one method's candidate, its extra
seeds, its sparsity sweep, the sweeps on shares of the training rows — is priced before anything runs, from counted
multiply-adds (``analyses.cost``) and the rows it touches, never from a clock. The jobs that fit run in a fixed order
of priority; the others are skipped and named. The same inputs and settings run the same jobs on every machine, so
the JSON stays byte-identical; a faster machine simply finishes early.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..analyses.base import number
from ..analyses.cost import BACKWARD, RowCost
from .anchored import SWAP_BUDGETS

SALIENCY_PASSES = 3 * (1.0 + BACKWARD)
"""Forward-pass equivalents per row of group saliency (per-row gradients of the logit margin: a forward and a
backward per row, unbatched through vmap or in micro-batches of 8, measured about 3x a batched pass)."""
TRAINING_PASSES = 1.0 + BACKWARD
"""Forward-pass equivalents per row and epoch of fine-tuning (forward and backward; distillation adds the dense
model's forward)."""
STATISTICS_SECONDS_PER_ROW = 6e-5
"""Seconds per evaluation row to compare one candidate with the dense model (paired statistics, 1,000-replicate
bootstrap), on 2 CPU cores: what dominates on small models (about 1 s at 16,000 rows)."""
SEARCH_PASSES = 2 + 2 * (len(SWAP_BUDGETS) - 1)
"""Forward passes over the calibration rows of the group-aware methods' swap search (``pruning.anchored``): the
dense model's answers, magnitude's mask, and each swap budget tried across the whole model and within each layer.
Cheap on an MLP; on a 224-px CNN they are most of the method's time (unpriced, a MobileNetV2's alternatives ran 2.7x their budget)."""
EVALUATION_PRECISION = "float64"
"""What each candidate is compared in (``alternatives._Evaluator``: a float64 copy): priced as such — a 224-px CNN runs
float64 convolutions several times slower than float32 (its magnitude jobs took 4x their float32 price)."""
OVERHEAD_SECONDS = 0.5
"""Fixed cost of one candidate (copies of the model, mask bookkeeping)."""
PER_ROW_GRADIENT_SECONDS = 1.4e-8
"""Seconds per weight and saliency row of the group-aware methods on an MLP, whose saliency takes exact per-row
gradients (every weight's gradient for every row is written, squared and summed: memory, not multiply-adds), with
the anchored swaps judged after it; on 2 CPU cores, fitted on the Adult MLP (bench/alternatives_budget.py)."""


@dataclass(frozen=True)
class Job:
    """A unit of the alternatives' work and its estimated seconds."""

    name: str
    seconds: float
    required: bool = False
    """Runs whatever the budget (the audited ticket's comparison, the first method's candidate)."""


@dataclass(frozen=True)
class BudgetPlan:
    """Which jobs run within ``budget_seconds`` (in priority order), which were skipped, and their estimates."""

    budget_seconds: float | None
    kept: tuple[Job, ...]
    skipped: tuple[Job, ...]

    def runs(self, name: str) -> bool:
        return any(job.name == name for job in self.kept)

    @property
    def estimated_seconds(self) -> float:
        return sum(job.seconds for job in self.kept)

    def note(self) -> str | None:
        """The report's line on what the budget left out (None when everything ran)."""
        if not self.skipped:
            return None
        skipped = "; ".join(f"{job.name} (about {job.seconds:.0f} s)" for job in self.skipped)
        return (f"Time budget: the jobs that fit the budget of {self.budget_seconds:g} s ran (estimated "
                f"{self.estimated_seconds:.0f} s, from counted multiply-adds, not a clock); skipped: {skipped}. "
                "Raise --alternatives-budget (prune: --budget) to run them.")

    def to_dict(self) -> dict[str, Any]:
        return {"budget_seconds": self.budget_seconds, "estimated_seconds": number(round(self.estimated_seconds, 1)),
                "ran": [job.name for job in self.kept],
                "skipped": [{"job": job.name, "estimated_seconds": number(round(job.seconds, 1))}
                            for job in self.skipped]}


def plan(jobs: Sequence[Job], *, budget_seconds: float | None) -> BudgetPlan:
    """Keep jobs in priority order while the running estimate stays within the budget (a later, cheaper job may
    still fit after a dear one is skipped); required jobs always run, so there is always a candidate."""
    if budget_seconds is None:
        return BudgetPlan(None, tuple(jobs), ())
    kept, skipped, spent = [], [], 0.0
    for job in jobs:
        if job.required or spent + job.seconds <= budget_seconds:
            kept.append(job)
            spent += job.seconds
        else:
            skipped.append(job)
    return BudgetPlan(budget_seconds, tuple(kept), tuple(skipped))


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What prices a job: one forward pass of the dense model per row, the two halves' sizes, the groups."""

    row: RowCost
    calibration_rows: int
    evaluation_rows: int
    saliency_rows: int
    """Rows the group-aware methods' saliency reads: each group's calibration rows, at most a cap per group."""
    weights: int
    """Prunable weights of the dense model."""
    per_row_gradients: bool
    """Whether the saliency takes exact per-row gradients (MLPs) rather than micro-batches."""

    def forward_seconds(self, rows: float, passes: float, *, precision: str = "float32") -> float:
        return self.row.seconds(passes=passes, precision=precision) * rows

    def mask_seconds(self, method: str, *, fraction: float = 1.0) -> float:
        """Choosing one mask: magnitude methods read the weights only; the group-aware ones measure saliency per
        group; structured pruning of attention heads scores the heads on the calibration rows."""
        rows = self.calibration_rows * fraction
        if method in ("group-balanced", "worst-group"):
            saliency = self.saliency_rows * fraction
            gradients = PER_ROW_GRADIENT_SECONDS * self.weights * saliency if self.per_row_gradients else 0.0
            search = 0.0 if self.per_row_gradients else self.forward_seconds(rows, SEARCH_PASSES)  # MLPs: in the fit
            return self.forward_seconds(saliency, SALIENCY_PASSES) + gradients + search
        if method == "structured":
            return self.forward_seconds(rows, 1.0 + BACKWARD)
        return 0.0

    def recovery_seconds(self, recover: str, epochs: int, *, fraction: float = 1.0) -> float:
        if recover == "none":
            return 0.0
        passes = TRAINING_PASSES + (1.0 if recover == "distill" else 0.0)
        return self.forward_seconds(self.calibration_rows * fraction, passes) * epochs

    def evaluation_seconds(self) -> float:
        return (self.forward_seconds(self.evaluation_rows, 1.0, precision=EVALUATION_PRECISION)
                + self.evaluation_rows * STATISTICS_SECONDS_PER_ROW + OVERHEAD_SECONDS)

    def candidate_seconds(self, method: str, *, recover: str, epochs: int, rounds: int, fraction: float = 1.0) -> float:
        """One ticket: ``rounds`` of choosing a mask and recovering, then its comparison with the dense model."""
        per_round = self.mask_seconds(method, fraction=fraction) + self.recovery_seconds(recover, epochs,
                                                                                           fraction=fraction)
        return rounds * per_round + self.evaluation_seconds()
