"""Compute-fair ensembles (issue 18, part 3): M tickets at sparsity s against K = round(M (1 - s)) dense models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, synthetic_inputs

from ticketaudit.datasets import MINORITY_FEATURES, make_minority_reliance
from ticketaudit.exceptions import InvalidInputError
from ticketaudit.models import MLP
from ticketaudit.prune import prune
from ticketaudit.analyses.performance import analyse_performance
from ticketaudit.pruning.alternatives import compare_ensembles, compute_equivalent, split_by_group
from ticketaudit.pruning.imp import TrainSettings, train
from ticketaudit.tickets import load_dense
from ticketaudit.tickets.bundle import save_bundle

ARGUMENTS = {"in_features": 6, "hidden": [16, 8], "out_features": 2}
FEATURES = list(MINORITY_FEATURES)


@pytest.mark.parametrize("tickets, sparsity, expected", [(4, 0.75, 1), (8, 0.5, 4), (5, 0.9, 1), (10, 0.8, 2),
                                                         (3, 0.5, 2), (20, 0.95, 1)])
def test_compute_equivalent_dense_models(tickets: int, sparsity: float, expected: int) -> None:
    assert compute_equivalent(tickets, sparsity) == expected


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ensembles")
    train_frame, test_frame = make_minority_reliance(1200, seed=3), make_minority_reliance(900, seed=4)
    x = torch.tensor(train_frame[FEATURES].to_numpy(np.float32))
    y = torch.tensor(train_frame["y"].to_numpy())
    paths = []
    for i in range(3):
        torch.manual_seed(i)
        dense, _ = train(MLP(**ARGUMENTS), x, y, settings=TrainSettings(epochs=4, batch_size=64, seed=i))
        paths.append(save_bundle(root / f"dense{i}", dense, architecture="mlp", arguments=ARGUMENTS))
    return {"root": root, "train": train_frame, "test": test_frame, "paths": paths}


def _prune(models, **options):
    return prune(dense=models["paths"][0], data=models["test"], target="y", sensitive="group", features=FEATURES,
                 methods="global-magnitude", n_boot=100, seed=0, **options)


def test_the_dense_ensemble_of_equal_compute_averages_the_given_models(models) -> None:
    """6 tickets at 50% cost 3 dense models: the dense model and the 2 given, whose averaged probabilities
    give the accuracy computed directly here."""
    result = _prune(models, sparsity=0.5, seeds=6, dense_ensemble=[str(p) for p in models["paths"][1:]])
    block = result.alternatives.compute_fair
    assert block["tickets"] == 6 and block["dense_models"] == 3 and block["trained_here"] == 0
    reference = next(c for c in result.alternatives.candidates if c.method == "dense-ensemble")
    _, evaluation = split_by_group(models["test"], ["group"], seed=0)  # no training rows: the compared half
    x = torch.tensor(evaluation[FEATURES].to_numpy(np.float64))
    proba = np.mean([torch.softmax(load_dense(p).module.double()(x), 1).detach().numpy() for p in models["paths"]], 0)
    assert reference.accuracy == pytest.approx(float((proba.argmax(1) == evaluation["y"].to_numpy()).mean()),
                                               abs=1e-12)
    comparison = block["comparisons"][0]
    assert comparison["tickets"] == "global-magnitude ensemble of 6" and comparison["dense"] == reference.name
    tickets = next(c for c in result.alternatives.candidates if c.name == comparison["tickets"])
    for group, values in comparison["groups"].items():  # the two candidates' own accuracies, paired on the rows
        assert values["tickets"] == pytest.approx(tickets.group_accuracy[group], abs=1e-12)
        assert values["dense"] == pytest.approx(reference.group_accuracy[group], abs=1e-12)
        assert values["difference"] == pytest.approx(values["tickets"] - values["dense"], abs=1e-12)
        low, high = values["ci"]
        assert low <= values["difference"] <= high and values["p_holm"] >= values["p_value"]
        assert values["finding"] in ("tickets better", "dense better", "no detectable difference", "too few rows")
    assert result.alternatives.recommended != reference.name
    document = json.loads(json.dumps(result.to_dict()))
    assert document["alternatives"]["compute_fair"]["dense_members_sha256"][0] == load_dense(models["paths"][0]).sha256


def test_missing_dense_models_are_trained_on_the_training_rows(models) -> None:
    result = _prune(models, sparsity=0.5, seeds=4, train_data=models["train"], epochs=2)
    block = result.alternatives.compute_fair
    assert block["dense_models"] == 2 and block["trained_here"] == 1 and block["epochs_if_trained"] == 2
    assert any("trained here from scratch" in note for note in result.alternatives.notes)


def test_without_more_models_or_training_rows_it_says_so(models) -> None:
    result = _prune(models, sparsity=0.5, seeds=4)
    block = result.alternatives.compute_fair
    assert block["dense_models"] == 2 and len(block["dense_members_sha256"]) == 1
    assert any("Only 1 of 2 were available" in note for note in result.alternatives.notes)


def test_dense_ensemble_needs_seeds_and_the_same_classes(models, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="add --seeds M"):
        _prune(models, sparsity=0.5, dense_ensemble=[str(models["paths"][1])])
    three = save_bundle(tmp_path / "three", MLP(**{**ARGUMENTS, "out_features": 3}), architecture="mlp",
                        arguments={**ARGUMENTS, "out_features": 3})
    with pytest.raises(InvalidInputError, match="outputs 3 value"):
        _prune(models, sparsity=0.5, seeds=2, dense_ensemble=[str(three)])


def test_cli_dense_ensemble(models, tmp_path: Path) -> None:
    data = tmp_path / "test.csv"
    models["test"].to_csv(data, index=False)
    out = tmp_path / "out"
    run = run_cli(["prune", "--dense", str(models["paths"][0]), "--data", str(data), "--target", "y", "--sensitive",
                   "group", "--features", ",".join(FEATURES), "--sparsity", "0.5", "--method", "global-magnitude",
                   "--seeds", "4", "--dense-ensemble", str(models["paths"][1]), "--n-boot", "100", "--out", str(out),
                   "--quiet"])
    assert run.code == 0, run.stderr
    document = json.loads((out / "alternatives.json").read_text())
    assert document["alternatives"]["compute_fair"]["dense_models"] == 2
    html = (out / "alternatives.html").read_text()
    assert "dense-ensemble of 2" in html and "Compute-fair ensembles" in html
    comparison = document["alternatives"]["compute_fair"]["comparisons"][0]
    for group, values in comparison["groups"].items():  # each group's row, with its finding
        assert f"<td>{group}</td><td>{values['n']}</td>" in html
    assert html.count(f"<td>{comparison['groups'][group]['finding']}</td>") >= 1


def _simulated_comparison(seed: int, *, rows: int = 400, better: float = 0.08) -> dict[str, object]:
    """Two ensembles scored on the same rows: in group 'a' the tickets are right 88% of the time against the dense
    ensemble's 80% (their errors independent), in group 'b' both 85%. Compared as ``prune`` compares them."""
    rng = np.random.default_rng(seed)
    group = np.repeat(["a", "b"], rows)
    labels = rng.integers(0, 2, size=2 * rows)
    dense_right = rng.random(2 * rows) < np.where(group == "a", 0.80, 0.85)
    tickets_right = rng.random(2 * rows) < np.where(group == "a", 0.80 + better, 0.85)
    dense_pred, tickets_pred = np.where(dense_right, labels, 1 - labels), np.where(tickets_right, labels, 1 - labels)
    paired = analyse_performance(synthetic_inputs(labels, dense_pred, tickets_pred, {"group": group}, n_boot=50,
                                                  seed=seed))
    return compare_ensembles(paired, tickets="tickets", dense="dense", confidence=0.95)


def test_ensemble_comparison_intervals_cover_the_true_difference_by_simulation() -> None:
    """Known truth: +8 pts in group 'a', 0 in group 'b'. The 95% intervals cover it in about 95% of 200
    simulated audits, group 'b' is called different in about 5% at most (Holm), and group 'a''s real
    difference is found in most of them."""
    runs = [_simulated_comparison(seed) for seed in range(200)]
    cover_a = np.mean([r["groups"]["group=a"]["ci"][0] <= 0.08 <= r["groups"]["group=a"]["ci"][1] for r in runs])
    cover_b = np.mean([r["groups"]["group=b"]["ci"][0] <= 0.0 <= r["groups"]["group=b"]["ci"][1] for r in runs])
    false_b = np.mean([r["groups"]["group=b"]["finding"] != "no detectable difference" for r in runs])
    found_a = np.mean([r["groups"]["group=a"]["finding"] == "tickets better" for r in runs])
    assert 0.90 <= cover_a <= 0.99 and 0.90 <= cover_b <= 0.99, (cover_a, cover_b)
    assert false_b <= 0.08, false_b
    assert found_a >= 0.6, found_a
    worse = _simulated_comparison(0, better=-0.15)["groups"]["group=a"]
    assert worse["finding"] == "dense better" and worse["ci"][1] < 0
