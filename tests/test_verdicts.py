"""Three outcomes per check — pass, fail, inconclusive — validated against known truth (issue: verdicts a
reviewer can sign)."""

from __future__ import annotations

import numpy as np
import pytest

from ticketaudit.analyses import stats
from ticketaudit.checks import Candidate, decide, group_findings, rates_moved_together, verdict_of
from ticketaudit.config import Policy
from ticketaudit.simulate import Simulated, gate, outcome_rates, paired_predictions, power_crossing, simulated_performance


def _candidate(value: float, se: float, *, tolerance: float = 0.02, rows: int = 1000, two_sided: bool = False,
               name: str = "c") -> Candidate:
    def at(conf: float) -> tuple[float, float]:
        z = stats.z_value(conf)
        return value - z * se, value + z * se

    return Candidate(
        id=name,
        description="test",
        group="g",
        metric="accuracy",
        value=value,
        tolerance=tolerance,
        p_raw=stats.normal_p_value(value, se),
        interval_at=at,
        se=se,
        rows=rows,
        two_sided=two_sided,
    )


@pytest.mark.parametrize(
    ("value", "se", "status"),
    [
        (0.0, 0.002, "pass"),  # bound 0 + 1.645 * 0.002 << 0.02
        (0.015, 0.001, "pass"),  # close to the tolerance but tightly measured
        (0.01, 0.01, "inconclusive"),  # could be up to ~2.6 pts
        (0.05, 0.005, "fail"),  # material and significant
        (0.03, 0.02, "inconclusive"),  # material but not significant
        (0.019, 0.004, "inconclusive"),  # significant (p ~ 2e-6) but not material, and not ruled out
    ],
)
def test_each_outcome_follows_its_definition(value: float, se: float, status: str) -> None:
    (check,) = decide([_candidate(value, se)], confidence=0.95)
    assert check.status == status
    assert check.passed == (status != "fail")
    z_one_sided = stats.z_value(1 - 2 * 0.05)  # m = 1: one-sided bound at 95%
    assert check.pass_bound == pytest.approx(value + z_one_sided * se)


def test_bounds_tighten_with_the_number_of_checks() -> None:
    alone = decide([_candidate(0.012, 0.004)], confidence=0.95)[0]
    many = decide([_candidate(0.012, 0.004, name=str(i)) for i in range(20)], confidence=0.95)[0]
    assert alone.status == "pass" and many.status == "inconclusive"  # 1.645 vs 2.81 standard errors
    assert many.pass_bound > alone.pass_bound and many.minimum_detectable_harm >= alone.minimum_detectable_harm


def test_a_shift_either_way_passes_only_when_both_ends_are_within() -> None:
    checks = decide(
        [_candidate(-0.018, 0.002, two_sided=True), _candidate(0.0, 0.002, two_sided=True, name="d")], confidence=0.95
    )
    assert [c.status for c in checks] == ["inconclusive", "pass"]


def test_verdict_is_the_worst_status() -> None:
    def check(value: float, se: float) -> object:
        return decide([_candidate(value, se)], confidence=0.95)[0]

    passing, open_, failing = check(0.0, 0.001), check(0.01, 0.01), check(0.08, 0.005)
    assert verdict_of((passing, passing)) == "pass"
    assert verdict_of((passing, open_)) == "inconclusive"
    assert verdict_of((open_, failing, passing)) == "fail"


@pytest.mark.parametrize("value", [0.004, 0.012, 0.035])
def test_rows_to_settle_settle_it(value: float) -> None:
    """With the spread shrinking as 1/sqrt(rows), that many more rows turn the check conclusive and a
    fifth fewer do not."""
    rows, se = 200, 0.02

    def status_at(total: int) -> str:
        return decide([_candidate(value, se * np.sqrt(rows / total), rows=total)], confidence=0.95)[0].status

    (check,) = decide([_candidate(value, se, rows=rows)], confidence=0.95)
    assert check.status == "inconclusive" and check.rows_to_settle is not None
    assert status_at(rows + check.rows_to_settle) == ("pass" if value < 0.02 else "fail")
    assert status_at(rows + int(0.8 * check.rows_to_settle)) == "inconclusive"


def test_a_small_group_is_inconclusive_not_a_silent_pass() -> None:
    simulated = paired_predictions(np.random.default_rng(0), sizes={"big": 5000, "small": 46})
    checks = gate(simulated, policy=Policy())
    small = next(c for c in checks if c.group == "group=small")
    assert small.status == "inconclusive" and small.pass_bound > 0.05
    assert verdict_of(checks) == "inconclusive"
    findings = group_findings(simulated_performance(simulated, policy=Policy()), checks, confidence=0.95)
    assert findings["group=small"]["status"] == "inconclusive"
    assert findings["group=small"]["rows_to_settle"] == small.rows_to_settle
    assert (
        findings["group=big"]["minimum_detectable_harm"]["accuracy"]
        < findings["group=small"]["minimum_detectable_harm"]["accuracy"]
    )


def _tpr_drop_everywhere(rng: np.random.Generator, share: float) -> Simulated:
    """The ticket predicts positive less often: ``share`` of every group's true positives turn negative."""
    simulated = paired_predictions(rng, sizes={"a": 3000, "b": 3000, "c": 3000}, discordance=0.01)
    ticket = simulated.ticket.copy()
    positives = np.flatnonzero((simulated.labels == 1) & (ticket == 1))
    lost = rng.choice(positives, size=int(share * len(positives)), replace=False)
    ticket[lost] = 0
    return Simulated(labels=simulated.labels, dense=simulated.dense, ticket=ticket, group=simulated.group)


def test_tpr_drop_in_every_group_is_said_and_gated_when_asked() -> None:
    simulated = _tpr_drop_everywhere(np.random.default_rng(1), share=0.08)
    default = gate(simulated, policy=Policy())
    assert not any(c.id.startswith("tpr_drop") for c in default)  # off by default
    assert not any(c.status == "fail" for c in default if "gap" in c.id)  # gaps cannot see a shift everyone shares
    shifts = rates_moved_together(simulated_performance(simulated, policy=Policy()))
    tpr = next(s for s in shifts if s["metric"] == "tpr")
    assert tpr["direction"] == "fell" and tpr["groups"] == tpr["of"] == 3 and tpr["overall"] < -0.05
    gated = gate(simulated, policy=Policy(max_tpr_drop=0.03))
    drops = [c for c in gated if c.id.startswith("tpr_drop:")]
    assert len(drops) == 3 and all(c.status == "fail" and c.value > 0.05 for c in drops)


def test_harmless_ticket_with_tpr_gate_does_not_fail() -> None:
    rng = np.random.default_rng(2)
    fails = sum(
        any(
            c.status == "fail"
            for c in gate(
                paired_predictions(rng, sizes={"a": 1500, "b": 1500}),
                policy=Policy(max_tpr_drop=0.03, max_fpr_rise=0.03, max_selection_rate_change=0.03),
                seed=i,
            )
        )
        for i in range(30)
    )
    assert fails <= 3


def test_simulated_outcomes_quick() -> None:
    at_tolerance = outcome_rates({"a": 500, "b": 2500}, {"a": 0.02}, group="a", runs=40, seed=3)
    harmless = outcome_rates({"a": 2000, "b": 2000}, {}, group="a", runs=40, seed=4)
    assert at_tolerance["check_pass"] <= 0.1 and harmless["check_pass"] >= 0.8 and harmless["any_fail"] <= 0.1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sizes", "psi", "key", "low", "high"),
    [
        ({"a": 500, "b": 2500}, {"a": 0.02}, "check_pass", 0.0, 0.05),  # the equivalence test's size
        ({"a": 2000, "b": 4000}, {"a": 0.02}, "check_pass", 0.0, 0.05),
        ({"a": 2000, "b": 2000}, {}, "check_pass", 0.80, 1.0),  # harm 0, 2,000 rows per group
        ({"a": 2000, "b": 2000}, {}, "any_fail", 0.0, 0.05),  # false fail
        ({"a": 500, "b": 2500}, {"a": 0.05}, "check_fail", 0.90, 1.0),  # power, 5 pts in 500 rows
        ({"a": 2000, "b": 18000}, {"a": 0.03}, "check_fail", 0.90, 1.0),  # power, 3 pts in 2,000 rows
    ],
)
def test_simulated_outcome_rates_meet_their_targets(sizes, psi, key: str, low: float, high: float) -> None:
    runs = 300
    rate = outcome_rates(sizes, psi, group="a", runs=runs, seed=21)[key]
    slack = 1.645 * np.sqrt(0.05 * 0.95 / runs)  # sampling error of a 5% / 95% rate
    assert low - slack <= rate <= high + slack, rate


@pytest.mark.slow
@pytest.mark.parametrize("sizes", [{"a": 500, "b": 2500}, {"a": 2000, "b": 18000}])
def test_minimum_detectable_harm_matches_simulated_power(sizes) -> None:
    crossing, reported = power_crossing(
        sizes, group="a", grid=np.round(np.arange(0.02, 0.0601, 0.005), 3), runs=150, seed=5
    )
    assert np.isfinite(crossing) and abs(crossing - reported) <= 0.02, (crossing, reported)
