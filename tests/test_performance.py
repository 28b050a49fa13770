"""Per-group metrics: equal to fairlearn's MetricFrame, groups built right, multiclass, batching."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from helpers import synthetic_inputs
from sklearn.metrics import accuracy_score, precision_score, recall_score

from ticketaudit.analyses.cells import build_cells, metrics_from_sums
from ticketaudit.analyses.performance import analyse_performance, metric_names, sklearn_metrics
from ticketaudit.data import MISSING, build_groups


def _scenario(n: int = 1500, seed: int = 0, n_classes: int = 2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    dense = np.where(rng.random(n) < 0.8, labels, rng.integers(0, n_classes, size=n))
    ticket = np.where(rng.random(n) < 0.1, rng.integers(0, n_classes, size=n), dense)
    sensitive = {"sex": rng.choice(["F", "M"], size=n), "race": rng.choice(["A", "B", "C"], size=n, p=[.5, .4, .1])}
    return labels, dense, ticket, sensitive


def test_counts_equal_metricframe_for_every_group() -> None:
    labels, dense, ticket, sensitive = _scenario()
    result = analyse_performance(synthetic_inputs(labels, dense, ticket, sensitive))
    reference = {"accuracy": accuracy_score, "tpr": functools.partial(true_positive_rate, pos_label=1),
                 "fpr": functools.partial(false_positive_rate, pos_label=1),
                 "selection_rate": functools.partial(selection_rate, pos_label=1),
                 "precision": functools.partial(precision_score, zero_division=np.nan)}
    for model, preds in (("dense", dense), ("ticket", ticket)):
        frame = MetricFrame(metrics=reference, y_true=labels, y_pred=preds, sensitive_features=pd.DataFrame(sensitive))
        for (sex, race), row in frame.by_group.iterrows():
            group = next(g for g in result.subgroups if g.group == f"sex={sex}|race={race}")
            for name in reference:
                assert getattr(group.metrics[name], model) == pytest.approx(row[name], abs=1e-12), (group.group, name)
        sex_frame = MetricFrame(metrics=reference, y_true=labels, y_pred=preds, sensitive_features=sensitive["sex"])
        for sex, row in sex_frame.by_group.iterrows():
            group = next(g for g in result.subgroups if g.group == f"sex={sex}")
            for name in reference:
                assert getattr(group.metrics[name], model) == pytest.approx(row[name], abs=1e-12)
        for name in reference:
            assert getattr(result.overall.metrics[name], model) == pytest.approx(frame.overall[name], abs=1e-12)


def test_counts_path_equals_fairlearn_path() -> None:
    labels, dense, ticket, sensitive = _scenario(seed=3)
    inputs = synthetic_inputs(labels, dense, ticket, sensitive)
    a, b = analyse_performance(inputs), analyse_performance(inputs, point_estimates="counts")
    for ga, gb in zip((a.overall, *a.subgroups), (b.overall, *b.subgroups)):
        for name in ga.metrics:
            assert ga.metrics[name].dense == pytest.approx(gb.metrics[name].dense, abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_metric_names_are_those_fairlearn_and_sklearn_define(n_classes: int) -> None:
    assert metric_names(n_classes) == list(sklearn_metrics(n_classes))


def test_ece_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    labels = rng.integers(0, 2, size=n)
    p1 = rng.random(n).astype(np.float32)  # the audit's probabilities are float32 values
    proba = np.stack([1 - p1, p1], axis=1).astype(np.float64)
    cells = build_cells(labels=labels, proba_dense=proba, proba_ticket=proba, stratum=np.zeros(n, np.int64), n_strata=1,
                        bins=10)
    ece = metrics_from_sums(cells.sums.sum(axis=0), cells.layout, "dense")["ece"]
    confidence, prediction = proba.max(axis=1), proba.argmax(axis=1)
    bins = np.minimum((confidence * 10).astype(int), 9)
    direct = sum(abs(confidence[bins == b].sum() - (prediction == labels)[bins == b].sum()) for b in range(10)) / n
    assert ece == pytest.approx(direct, abs=1e-12)


def test_groups_are_intersectional_marginal_and_keep_missing() -> None:
    frame = pd.DataFrame({"sex": ["F", "M", None, "F"], "race": ["A", "A", "B", None]})
    groups = build_groups(frame, ["sex", "race"])
    names = [g.name for g in groups.groups]
    assert names[:3] == ["sex=<missing>", "sex=F", "sex=M"] or set(names[:3]) == {f"sex={MISSING}", "sex=F", "sex=M"}
    assert f"sex=F|race={MISSING}" in names and "sex=F|race=A" in names
    assert sum(groups.rows(g).sum() for g in groups.groups if g.attribute == "sex") == 4
    assert sum(groups.rows(g).sum() for g in groups.groups if g.attribute == "sex|race") == 4


def test_multiclass_recall_and_macro() -> None:
    labels, dense, ticket, sensitive = _scenario(n_classes=3, seed=2)
    result = analyse_performance(synthetic_inputs(labels, dense, ticket, sensitive, n_classes=3))
    assert result.task == "multiclass"
    for k in range(3):
        expected = recall_score(labels, ticket, labels=[k], average=None)[0]
        assert result.overall.metrics[f"recall:{k}"].ticket == pytest.approx(expected)
    macro = recall_score(labels, dense, average="macro")
    assert result.overall.metrics["macro_recall"].dense == pytest.approx(macro)
    assert {g.metric for g in result.gaps} == {"accuracy", "macro_recall"}


def test_small_groups_are_flagged_and_not_gated() -> None:
    labels, dense, ticket, sensitive = _scenario(n=400)
    result = analyse_performance(synthetic_inputs(labels, dense, ticket, sensitive, min_group_size=100))
    small = [g for g in result.subgroups if g.n < 100]
    assert small and all(g.insufficient for g in small)
    from ticketaudit.checks import evaluate_policy
    from ticketaudit.config import Policy

    gated = {c.group for c in evaluate_policy(Policy(min_group_size=100), result)}
    assert not gated & {g.group for g in small}


def test_string_labels_through_a_bundle(fx, tmp_path) -> None:
    import ticketaudit as ta
    from conftest import ARGUMENTS, FEATURES
    from ticketaudit.tickets.bundle import save_bundle

    dense_dir = save_bundle(tmp_path / "d", fx.dense, architecture="mlp", arguments=ARGUMENTS, labels=("no", "yes"))
    ticket_dir = save_bundle(tmp_path / "t", fx.ticket, architecture="mlp", arguments=ARGUMENTS, labels=("no", "yes"),
                             mask=fx.mask)
    frame = fx.frame.assign(y=fx.frame.y.map({0: "no", 1: "yes"}))
    result = ta.audit(dense=dense_dir, ticket=ticket_dir, data=frame, target="y", sensitive="sex", features=FEATURES,
                      n_boot=100)
    numeric = ta.audit(dense=fx.dense_dir, ticket=fx.ticket_dir, data=fx.frame, target="y", sensitive="sex",
                       features=FEATURES, n_boot=100)
    assert result.data["classes"] == ["no", "yes"]
    assert result.performance.overall.metrics["tpr"] == numeric.performance.overall.metrics["tpr"]


def test_parquet_and_tsv_give_the_same_audit(fx, tmp_path) -> None:
    import ticketaudit as ta
    from conftest import FEATURES

    fx.frame.to_parquet(tmp_path / "d.parquet")
    fx.frame.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    results = [ta.audit(dense=fx.dense_dir, ticket=fx.ticket_dir, data=path, target="y", sensitive="sex,race",
                        features=FEATURES, n_boot=100).to_dict() for path in (fx.csv, tmp_path / "d.parquet", tmp_path / "d.tsv")]
    for r in results:
        r["data"].pop("sha256")
    assert results[0] == results[1] == results[2]


def test_multiclass_end_to_end_through_the_cli(tmp_path) -> None:
    import json

    import torch
    from helpers import run_cli

    from ticketaudit.models import MLP
    from ticketaudit.pruning.imp import global_magnitude_mask
    from ticketaudit.tickets.bundle import save_bundle

    rng = np.random.default_rng(0)
    n = 900
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "g": rng.choice(["p", "q"], size=n)})
    frame["kind"] = np.select([frame.a > 0.5, frame.b > 0], ["cat", "dog"], "eel")
    torch.manual_seed(0)
    model = MLP(in_features=2, hidden=[8], out_features=3)
    arguments = {"in_features": 2, "hidden": [8], "out_features": 3}
    labels = ("cat", "dog", "eel")
    dense = save_bundle(tmp_path / "d", model, architecture="mlp", arguments=arguments, labels=labels)
    ticket = save_bundle(tmp_path / "t", model, architecture="mlp", arguments=arguments, labels=labels,
                         mask=global_magnitude_mask(model, keep=0.5))
    frame.to_csv(tmp_path / "data.csv", index=False)
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(tmp_path / "data.csv"),
                   "--target", "kind", "--sensitive", "g", "--features", "a,b", "--n-boot", "200", "--quiet",
                   "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")])
    assert run.code in (0, 1), run.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["performance"]["task"] == "multiclass" and document["data"]["classes"] == list(labels)
    assert {"recall:0", "recall:1", "recall:2", "macro_recall", "ece"} <= set(document["subgroups"][0]["metrics"])
    assert "tpr_gap_widening:g" not in {c["id"] for c in document["checks"]}
