"""The release gate by simulation: false alarms on harmless tickets, power on a planted harm."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import synthetic_inputs

from ticketaudit.analyses.performance import analyse_performance
from ticketaudit.checks import evaluate_policy
from ticketaudit.config import Policy

ZERO_TOLERANCE = Policy(max_overall_accuracy_drop=0.0, max_group_excess_drop=0.0, max_gap_widening=0.0,
                        max_tpr_gap_widening=0.0, max_fpr_gap_widening=0.0)


def scenario(rng: np.random.Generator, *, n: int = 3000, planted_drop: float = 0.0, noise: float = 0.03):
    """Dense ~85% accurate; the ticket changes a random ``noise`` share of rows in every group, as many
    wrong-to-right as right-to-wrong in expectation (no true change in any rate), plus (optionally)
    breaks ``planted_drop`` x 500 correct rows of the 500-row minority group."""
    sex = np.where(np.arange(n) < 500, "minority", "majority")
    region = rng.choice(["north", "south"], size=n)
    labels = rng.integers(0, 2, size=n)
    dense = np.where(rng.random(n) < 0.85, labels, 1 - labels)
    flip_chance = np.where(dense == labels, noise / 2 / 0.85, noise / 2 / 0.15)
    ticket = np.where(rng.random(n) < flip_chance, 1 - dense, dense)
    if planted_drop:
        minority_correct = np.flatnonzero((sex == "minority") & (ticket == labels))
        broken = rng.choice(minority_correct, size=int(round(planted_drop * 500)), replace=False)
        ticket[broken] = 1 - labels[broken]
    return labels, dense, ticket, {"sex": sex, "region": region}


def gate_fails(labels, dense, ticket, sensitive, *, policy: Policy, seed: int) -> bool:
    inputs = synthetic_inputs(labels, dense, ticket, sensitive, n_boot=200, seed=seed)
    result = analyse_performance(inputs, point_estimates="counts")
    return not all(c.passed for c in evaluate_policy(policy, result))


def test_identical_models_give_zero_deltas_and_pass() -> None:
    labels, dense, _, sensitive = scenario(np.random.default_rng(0))
    inputs = synthetic_inputs(labels, dense, dense.copy(), sensitive, n_boot=200)
    result = analyse_performance(inputs)
    for group in (result.overall, *result.subgroups):
        for name, metric in group.metrics.items():
            assert metric.delta == 0 or np.isnan(metric.delta), (group.group, name)
        assert group.excess_drop is None or group.excess_drop.estimate == 0
    assert all(g.widening == 0 for g in result.gaps)
    assert all(c.passed for c in evaluate_policy(ZERO_TOLERANCE, result))


@pytest.mark.slow
def test_false_alarms_at_most_five_percent_with_zero_tolerance() -> None:
    """With every tolerance 0 only the significance test protects: Holm across all checks must hold
    the family-wise false-alarm rate at 5% when the ticket is the dense model plus group-free noise."""
    rng = np.random.default_rng(10)
    runs = 200
    alarms = sum(gate_fails(*scenario(rng), policy=ZERO_TOLERANCE, seed=i) for i in range(runs))
    assert alarms / runs <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / runs), alarms


def test_false_alarms_quick() -> None:
    rng = np.random.default_rng(11)
    alarms = sum(gate_fails(*scenario(rng), policy=ZERO_TOLERANCE, seed=i) for i in range(30))
    assert alarms <= 4


@pytest.mark.slow
def test_planted_five_point_drop_fails_the_gate() -> None:
    rng = np.random.default_rng(12)
    runs = 100
    caught = sum(gate_fails(*scenario(rng, planted_drop=0.05), policy=Policy(), seed=i) for i in range(runs))
    assert caught / runs >= 0.90, caught


def test_planted_drop_quick_and_names_the_group() -> None:
    labels, dense, ticket, sensitive = scenario(np.random.default_rng(13), planted_drop=0.08)
    inputs = synthetic_inputs(labels, dense, ticket, sensitive, n_boot=200)
    failed = [c for c in evaluate_policy(Policy(), analyse_performance(inputs)) if not c.passed]
    assert "group_excess_drop:sex=minority" in {c.id for c in failed}
    check = next(c for c in failed if c.id == "group_excess_drop:sex=minority")
    assert check.interval[0] > 0 and check.value > 0.02 and check.p_value < 0.05
