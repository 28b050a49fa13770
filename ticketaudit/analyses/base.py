"""Shared pieces of analysis results: JSON-safe conversion and the inputs every analysis reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Groups
from .predict import Predictions


def number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None (JSON null = undefined)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def interval(low: Any, high: Any) -> list[float | None]:
    return [number(low), number(high)]


@dataclass(frozen=True, eq=False)
class AnalysisSettings:
    """What every analysis needs besides the rows: classes, groups and the statistical settings."""

    class_names: tuple[str, ...]
    groups: Groups
    confidence: float
    min_group_size: int
    n_boot: int
    seed: int
    ece_bins: int


@dataclass(frozen=True, eq=False)
class AnalysisInputs(AnalysisSettings):
    """Settings plus per-row inputs: labels and both models' predictions (every row in memory; the
    sharded path feeds the same analyses from merged accumulators instead)."""

    labels: np.ndarray = field(kw_only=True)
    predictions: Predictions = field(kw_only=True)

    @property
    def settings(self) -> AnalysisSettings:
        return self
