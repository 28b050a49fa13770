"""Known-truth simulations of the release gate: dense and ticket predictions with a planted harm.

The tests and ``bench/verdicts.py`` use them to measure how often each outcome (pass, fail,
inconclusive) happens when the truth is known; a user can use them to plan how many rows a group needs
before a harm of a given size can be ruled out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .analyses.base import AnalysisInputs
from .analyses.performance import PerformanceResult, analyse_performance
from .analyses.predict import Predictions
from .checks import Check, evaluate_policy, verdict_of
from .config import Policy
from .data import build_groups


@dataclass(frozen=True, kw_only=True)
class Simulated:
    """Labels, both models' predicted classes and each row's group."""

    labels: np.ndarray
    dense: np.ndarray
    ticket: np.ndarray
    group: np.ndarray


def paired_predictions(rng: np.random.Generator, *, sizes: Mapping[str, int], accuracy: float = 0.85,
                       discordance: float = 0.03, excess_drop: Mapping[str, float] | None = None) -> Simulated:
    """Rows in groups of ``sizes``; the dense model is right with probability ``accuracy``; the ticket
    changes a ``discordance`` share of every group's rows, as many right-to-wrong as wrong-to-right in
    expectation (no true change), then breaks enough correct rows of each group in ``excess_drop`` that
    its expected excess drop (its drop minus the overall drop) is the given value."""
    group = np.concatenate([np.full(n, name, dtype=object) for name, n in sizes.items()])
    n = len(group)
    labels = rng.integers(0, 2, size=n)
    dense = np.where(rng.random(n) < accuracy, labels, 1 - labels)
    flip = np.where(dense == labels, discordance / 2 / accuracy, discordance / 2 / (1 - accuracy))
    ticket = np.where(rng.random(n) < flip, 1 - dense, dense)
    for name, psi in (excess_drop or {}).items():
        rows = np.flatnonzero(group == name)
        drop = psi / (1 - len(rows) / n)  # psi = drop - drop * n_g / n in expectation
        correct = rows[ticket[rows] == labels[rows]]
        broken = rng.choice(correct, size=int(round(drop * len(rows))), replace=False)
        ticket[broken] = 1 - labels[broken]
    return Simulated(labels=labels, dense=dense, ticket=ticket, group=group)


def one_hot(predicted: np.ndarray, *, n_classes: int = 2, confidence: float = 0.8) -> np.ndarray:
    """Class probabilities whose argmax is ``predicted``."""
    proba = np.full((len(predicted), n_classes), (1 - confidence) / (n_classes - 1))
    proba[np.arange(len(predicted)), predicted] = confidence
    return proba


def simulated_performance(simulated: Simulated, *, policy: Policy, n_boot: int = 200,
                          seed: int = 0) -> PerformanceResult:
    """The performance analysis of a simulation (counts-based point estimates: fast and equal)."""
    groups = build_groups(pd.DataFrame({"group": simulated.group}), ["group"])
    inputs = AnalysisInputs(
        class_names=("0", "1"),
        groups=groups,
        confidence=policy.confidence,
        min_group_size=policy.min_group_size,
        n_boot=n_boot,
        seed=seed,
        ece_bins=10,
        labels=simulated.labels,
        predictions=Predictions(one_hot(simulated.dense), one_hot(simulated.ticket)),
    )
    return analyse_performance(inputs, point_estimates="counts")


def gate(simulated: Simulated, *, policy: Policy, n_boot: int = 200, seed: int = 0) -> tuple[Check, ...]:
    """The policy's checks on a simulation."""
    return evaluate_policy(policy, simulated_performance(simulated, policy=policy, n_boot=n_boot, seed=seed))


def outcome_rates(
    sizes: Mapping[str, int],
    excess_drop: Mapping[str, float],
    *,
    group: str,
    runs: int,
    seed: int,
    policy: Policy | None = None,
) -> dict[str, float]:
    """Over ``runs`` simulations: how often ``group``'s excess-drop check passes and fails, how often the
    whole verdict passes and any check fails, and the mean minimum detectable harm it reported."""
    policy = policy or Policy()
    rng = np.random.default_rng(seed)
    counts = {"check_pass": 0, "check_fail": 0, "verdict_pass": 0, "any_fail": 0}
    detectable = []
    for i in range(runs):
        checks = gate(paired_predictions(rng, sizes=sizes, excess_drop=excess_drop), policy=policy, seed=seed + i)
        check = next(c for c in checks if c.id == f"group_excess_drop:group={group}")
        counts["check_pass"] += check.status == "pass"
        counts["check_fail"] += check.status == "fail"
        counts["verdict_pass"] += verdict_of(checks) == "pass"
        counts["any_fail"] += any(c.status == "fail" for c in checks)
        detectable.append(check.minimum_detectable_harm)
    return {**{k: v / runs for k, v in counts.items()}, "minimum_detectable_harm": float(np.mean(detectable))}


def power_crossing(
    sizes: Mapping[str, int], *, group: str, grid: np.ndarray, runs: int, seed: int, power: float = 0.8
) -> tuple[float, float]:
    """(the excess drop at which ``group``'s check fails in ``power`` of simulations, the mean minimum
    detectable harm the audit reported there), both interpolated linearly on ``grid``; NaN if the
    grid does not bracket the crossing."""
    rates = [outcome_rates(sizes, {group: float(psi)}, group=group, runs=runs, seed=seed) for psi in grid]
    fails = np.array([r["check_fail"] for r in rates])
    reported = np.array([r["minimum_detectable_harm"] for r in rates])
    above = int(np.argmax(fails >= power))
    if fails[above] < power or above == 0:
        return float("nan"), float("nan")
    t = (power - fails[above - 1]) / (fails[above] - fails[above - 1])
    return (
        float(grid[above - 1] + t * (grid[above] - grid[above - 1])),
        float(reported[above - 1] + t * (reported[above] - reported[above - 1])),
    )
