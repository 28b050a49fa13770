"""The pruning alternatives' time budget (issue: defaults that finish, item 2): jobs priced from counted multiply-adds,
run in priority order, the rest skipped and named; deterministic, so the JSON stays byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli

from ticketaudit.analyses import cost
from ticketaudit.datasets import MINORITY_FEATURES, make_minority_reliance
from ticketaudit.models import MLP
from ticketaudit.prune import prune
from ticketaudit.pruning.budget import Job, Workload, plan
from ticketaudit.tickets.bundle import save_bundle

FEATURES = ",".join(MINORITY_FEATURES)


def test_jobs_run_in_priority_order_within_the_budget() -> None:
    jobs = [Job("audited", 5.0, required=True), Job("a", 4.0, required=True), Job("b", 30.0), Job("c", 8.0),
            Job("d", 5.0)]
    chosen = plan(jobs, budget_seconds=20.0)
    assert [j.name for j in chosen.kept] == ["audited", "a", "c"]  # b does not fit; c still does; d no longer
    assert [j.name for j in chosen.skipped] == ["b", "d"] and chosen.estimated_seconds == 17.0
    assert "b (about 30 s); d (about 5 s)" in chosen.note()
    tiny = plan(jobs, budget_seconds=1.0)  # required jobs run whatever the budget: there is always a candidate
    assert [j.name for j in tiny.kept] == ["audited", "a"]
    unbounded = plan(jobs, budget_seconds=None)
    assert not unbounded.skipped and unbounded.note() is None


def _workload(model: torch.nn.Module, width: int) -> Workload:
    return Workload(row=cost.row_cost(model, np.zeros((1, width), dtype=np.float32)), calibration_rows=30_000,
                    evaluation_rows=15_000, saliency_rows=12_000,
                    weights=sum(p.numel() for p in model.parameters() if p.dim() > 1), per_row_gradients=True)


def test_an_expensive_model_is_priced_by_its_multiply_adds() -> None:
    """A 17M-multiply-add MLP costs far more per job than a 3-thousand one; fine-tuning scales with epochs; the
    group-aware methods pay for their saliency, magnitude methods do not."""
    cheap = _workload(MLP(in_features=64, hidden=[32, 32], out_features=2), 64)
    dear = _workload(torch.nn.Sequential(torch.nn.Linear(64, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096),
                                         torch.nn.ReLU(), torch.nn.Linear(4096, 2)), 64)
    for method in ("global-magnitude", "worst-group"):
        assert dear.candidate_seconds(method, recover="finetune", epochs=3, rounds=1) > 20 * cheap.candidate_seconds(
            method, recover="finetune", epochs=3, rounds=1)
    assert dear.recovery_seconds("finetune", 6) == pytest.approx(2 * dear.recovery_seconds("finetune", 3))
    assert dear.mask_seconds("global-magnitude") == 0 < dear.mask_seconds("worst-group")
    assert dear.mask_seconds("worst-group", fraction=0.25) < dear.mask_seconds("worst-group")
    # exact per-row gradients of 17M weights on 12,000 rows: written, squared and summed, far beyond the passes
    assert dear.mask_seconds("worst-group") > 1000
    # 17M multiply-adds x 3 passes x 30,000 rows x 3 epochs: minutes on 2 cores, as measured
    assert 60 < dear.recovery_seconds("finetune", 3) < 600


def test_the_group_aware_swap_search_is_priced_on_models_without_per_row_gradients() -> None:
    """On a CNN or transformer the group-aware methods' swap search re-runs the calibration rows once per swap budget
    and layout (``SEARCH_PASSES``); an MLP's search is inside its fitted per-row-gradient price."""
    import dataclasses

    from ticketaudit.pruning.anchored import SWAP_BUDGETS
    from ticketaudit.pruning.budget import SALIENCY_PASSES, SEARCH_PASSES

    assert SEARCH_PASSES == 2 + 2 * (len(SWAP_BUDGETS) - 1)
    mlp = _workload(MLP(in_features=64, hidden=[32, 32], out_features=2), 64)
    other = dataclasses.replace(mlp, per_row_gradients=False)
    assert other.mask_seconds("worst-group") == pytest.approx(
        other.forward_seconds(12_000, SALIENCY_PASSES) + other.forward_seconds(30_000, SEARCH_PASSES))
    assert other.mask_seconds("group-balanced", fraction=0.5) == pytest.approx(0.5 * other.mask_seconds("worst-group"))
    assert mlp.mask_seconds("worst-group") == pytest.approx(
        mlp.forward_seconds(12_000, SALIENCY_PASSES) + 1.4e-8 * mlp.weights * 12_000)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("budget")
    torch.manual_seed(0)
    save_bundle(root / "dense", MLP(in_features=6, hidden=[64, 32], out_features=2), architecture="mlp",
                arguments={"in_features": 6, "hidden": [64, 32], "out_features": 2})
    make_minority_reliance(2000, seed=1).to_csv(root / "test.csv", index=False)
    return root


def test_a_small_budget_skips_jobs_names_them_and_stays_reproducible(bundle: Path) -> None:
    def run(budget: float | None) -> dict:
        return prune(dense=bundle / "dense", data=bundle / "test.csv", target="y", sensitive="group",
                     features=FEATURES, sparsity=0.8, methods="global-magnitude,group-balanced,worst-group",
                     sweep=(0.5, 0.9), n_boot=100, seed=0, budget_seconds=budget).to_dict()["alternatives"]

    everything = run(None)
    assert not everything["budget"]["skipped"] and len(everything["sweep"]) == 6
    priced = everything["budget"]["ran"]
    assert priced == ["global-magnitude", "group-balanced", "worst-group", "sparsity sweep of global-magnitude",
                            "sparsity sweep of group-balanced", "sparsity sweep of worst-group"]
    limited = run(0.001)  # only the first method's candidate, which always runs
    assert limited["budget"]["ran"] == ["global-magnitude"]
    assert [c["name"] for c in limited["candidates"]] == ["global-magnitude"] and limited["sweep"] == []
    assert {s["job"] for s in limited["budget"]["skipped"]} == set(priced[1:])
    assert any("--alternatives-budget" in note and "worst-group" in note for note in limited["notes"])
    assert json.dumps(limited, sort_keys=True) == json.dumps(run(0.001), sort_keys=True)  # no clock in the choice


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_bad_budget_is_refused(bundle: Path, value: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_cli(["prune", "--dense", str(bundle / "dense"), "--data", str(bundle / "test.csv"), "--target", "y",
                    "--sensitive", "group", "--features", FEATURES, "--sparsity", "0.8", "--budget", value,
                    "--out", str(out), "--quiet"])
    assert done.code == 2 and "--alternatives-budget (prune: --budget) must be a positive number of seconds" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
