"""What attributing one row costs, from counted multiply-adds rather than a timer, so a time budget
(``--attribution-budget``) becomes a sample size that is the same on every machine for the same inputs and seed.

The cost of a row is: multiply-adds of one forward pass, split by kind of operation (matrix products; dense
convolutions; grouped and depthwise convolutions, which run far below a CPU's peak), each divided by that kind's
throughput in the precision the models run in, times the forward-pass equivalents the attribution method needs
(a backward pass counts as two forwards), times two models. The throughputs are measured on 2 CPU cores
(``bench/attribution_cost.py`` prints them and how close the model comes on real models); a faster machine simply
finishes early.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

THROUGHPUT: dict[str, dict[str, float]] = {
    "matmul": {"float32": 3.5e10, "float64": 2.5e10, "bfloat16": 1e10},
    "conv": {"float32": 5e10, "float64": 6e9, "bfloat16": 1e10},
    "grouped_conv": {"float32": 9e8, "float64": 2e8, "bfloat16": 3e8},
}
"""Multiply-adds per second on 2 CPU cores, by kind of operation and precision, for forward passes in Captum's
batches (bench/attribution_cost.py, fitted on MobileNetV2, ResNet-18, an MLP and a MiniLM-size BERT). Depthwise
convolutions (with their memory-bound batch norms) run 50x below dense ones per multiply-add; float64 convolutions
have no oneDNN kernels (about 4-8x slower than float32); bfloat16 on CPUs without bfloat16 units is slow too."""
BACKWARD = 2.0
"""A backward pass costs about two forwards."""
MIN_STEPS = 16
"""Integrated Gradients and GradientSHAP drop to at most this few steps (samples) before rows fall below the floor."""
MIN_ROWS = 2
"""The sample never shrinks below this, whatever the budget (the report then says the comparison is thin)."""


@dataclass(frozen=True)
class RowCost:
    """Multiply-adds of one forward pass on one row, by kind of operation."""

    macs: dict[str, float]

    @property
    def total(self) -> float:
        """Multiply-adds of every kind: what ``--precision auto`` weighs."""
        return sum(self.macs.values())

    def seconds(self, *, passes: float, precision: str) -> float:
        """Seconds for ``passes`` forward-pass equivalents of one model on one row."""
        rate = {kind: THROUGHPUT[kind].get(precision, THROUGHPUT[kind]["float32"]) for kind in THROUGHPUT}
        return passes * sum(count / rate[kind] for kind, count in self.macs.items())


def row_cost(module: torch.nn.Module, inputs: Any, *, rows: int = 1) -> RowCost:
    """Counted on ``inputs`` (``rows`` rows) in float32 on the CPU: convolutions by their groups through hooks,
    everything else (matrix products, attention) from torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    from .predict import call_model, own_precision

    model = module if own_precision(module) == "float32" else copy.deepcopy(module).to(torch.float32)
    convs = {"conv": 0.0, "grouped_conv": 0.0}

    def count(layer: torch.nn.Module, _: Any, output: torch.Tensor) -> None:
        kernel = math.prod(layer.kernel_size) * layer.in_channels // layer.groups
        convs["grouped_conv" if layer.groups > 1 else "conv"] += float(output.numel()) * kernel

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            call_model(model, inputs, device=torch.device("cpu"), dtype=torch.float32)
        total = counter.get_total_flops() / 2
    except Exception:  # noqa: BLE001 - an op the counter cannot trace: the model's size per row instead
        total = float(sum(p.numel() for p in module.parameters())) * rows
    finally:
        for hook in hooks:
            hook.remove()
    matmul = max(total - convs["conv"] - convs["grouped_conv"], 0.0)
    return RowCost({"matmul": matmul / rows, "conv": convs["conv"] / rows, "grouped_conv": convs["grouped_conv"] / rows})


def forward_passes(method: str, *, steps: int, inputs: int) -> float:
    """Forward-pass equivalents per row and model: gradient methods pay a backward pass per evaluation; ablation
    and occlusion pay one forward per feature or window (``inputs``) plus the baseline."""
    gradient = 1.0 + BACKWARD
    if method in ("integrated-gradients", "layer-integrated-gradients", "gradient-shap"):
        return gradient * steps + 1
    if method in ("feature-ablation", "occlusion"):
        return float(inputs + 1)
    if method == "deeplift":
        return 2 + BACKWARD
    return gradient


@dataclass(frozen=True)
class BudgetedSample:
    """How many rows fit the budget, with how many steps, and what they are expected to cost."""

    rows: int
    steps: int
    seconds: float
    """The cost model's estimate for both models on ``rows`` rows."""
    floor_missed: bool
    """Whether the budget forced the sample below the usual floor (the comparison per group is then thin)."""


def budgeted(cost: RowCost, *, method: str, steps: int, inputs: int, precision: str, budget_seconds: float,
             population: int, floor: int) -> BudgetedSample:
    """The largest sample (at most ``population``) that both models attribute within ``budget_seconds``; below
    ``floor`` rows, Integrated Gradients and GradientSHAP first give up steps (down to ``MIN_STEPS``), then rows
    (down to ``MIN_ROWS``)."""
    def per_row(n_steps: int) -> float:
        return 2 * cost.seconds(passes=forward_passes(method, steps=n_steps, inputs=inputs), precision=precision)

    fit = int(budget_seconds // max(per_row(steps), 1e-12))
    wanted = min(population, floor)
    if fit < wanted and method in ("integrated-gradients", "layer-integrated-gradients", "gradient-shap"):
        cheaper = max(min(MIN_STEPS, steps), int(steps * max(fit, 1) / wanted))
        if cheaper < steps:
            steps, fit = cheaper, int(budget_seconds // max(per_row(cheaper), 1e-12))
    rows = min(population, max(fit, MIN_ROWS))
    return BudgetedSample(rows=rows, steps=steps, seconds=rows * per_row(steps), floor_missed=rows < wanted)
