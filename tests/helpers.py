"""Test helpers: run the CLI in-process and build analysis inputs from synthetic predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from ticketaudit.analyses.base import AnalysisInputs
from ticketaudit.analyses.predict import Predictions
from ticketaudit.cli import app
from ticketaudit.data import build_groups


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], *, stdin: str | None = None) -> Run:
    result = CliRunner().invoke(app, args, input=stdin, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def one_hot_proba(pred: np.ndarray, n_classes: int = 2, confidence: float = 0.8) -> np.ndarray:
    """Probabilities whose argmax is ``pred``."""
    other = (1 - confidence) / (n_classes - 1)
    proba = np.full((len(pred), n_classes), other)
    proba[np.arange(len(pred)), pred] = confidence
    return proba


def synthetic_inputs(labels: np.ndarray, dense: np.ndarray, ticket: np.ndarray, sensitive: dict[str, np.ndarray], *,
                     n_boot: int = 200, seed: int = 0, confidence: float = 0.95, min_group_size: int = 30,
                     n_classes: int = 2) -> AnalysisInputs:
    groups = build_groups(pd.DataFrame(sensitive), list(sensitive))
    predictions = Predictions(one_hot_proba(dense, n_classes), one_hot_proba(ticket, n_classes))
    return AnalysisInputs(
        class_names=tuple(str(i) for i in range(n_classes)),
        groups=groups,
        confidence=confidence,
        min_group_size=min_group_size,
        n_boot=n_boot,
        seed=seed,
        ece_bins=10,
        labels=labels,
        predictions=predictions,
    )
