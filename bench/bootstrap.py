"""Benchmark: ticketaudit's paired, stratified bootstrap vs fairlearn's MetricFrame(n_boot=...).

Same rows (UCI Adult test split, 16,281 rows), same groups (sex x race), same four metrics
(accuracy, TPR, FPR, selection rate), both models (the demo's dense MLP and its IMP ticket).
fairlearn resamples rows serially, one model per MetricFrame; ticketaudit resamples sufficient-
statistic cells for both models and every group at once (its groups also include each column's
marginal groups and the whole data, which fairlearn's run does not compute).

Prints seconds per replicate for each, the speed ratio (target >= 50x) and peak traced memory.
Run: python bench/bootstrap.py [--fairlearn-boot 20] [--ours-boot 1000]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import accuracy_score

from ticketaudit.analyses.base import AnalysisInputs
from ticketaudit.analyses.cells import build_cells
from ticketaudit.analyses.performance import _bootstrap_metrics, _membership
from ticketaudit.analyses.predict import ModelRunner, predict_both
from ticketaudit.data import build_groups
from ticketaudit.demo import run_demo
from ticketaudit.inputs import build_features
from ticketaudit.tickets import load_dense, load_ticket


def seconds(func) -> float:
    """Wall time of one call (untraced: tracemalloc slows pure-Python code a lot)."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def peak_memory(func) -> int:
    """Peak traced Python/NumPy allocation of one call, in bytes."""
    tracemalloc.start()
    func()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fairlearn-boot", type=int, default=20)
    parser.add_argument("--ours-boot", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_demo(out, seed=0)
        dense = load_dense(out / "dense")
        ticket = load_ticket(out / "ticket", dense=dense)
        frame = pd.read_csv(out / "adult_test.csv")
    features, _ = build_features(frame, target="income", features=None, preprocess=dense.preprocess)
    labels = (frame["income"] == ">50K").to_numpy(dtype=np.int64)
    predictions = predict_both(ModelRunner(dense.module, device=torch.device("cpu")),
                               ModelRunner(ticket.module, device=torch.device("cpu")), features, batch_size=4096)
    sensitive = frame[["sex", "race"]]

    metrics = {"accuracy": accuracy_score, "tpr": functools.partial(true_positive_rate, pos_label=1),
               "fpr": functools.partial(false_positive_rate, pos_label=1),
               "selection_rate": functools.partial(selection_rate, pos_label=1)}

    def fairlearn_run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for preds in (predictions.pred_dense, predictions.pred_ticket):
                MetricFrame(metrics=metrics, y_true=labels, y_pred=preds, sensitive_features=sensitive,
                            n_boot=args.fairlearn_boot, ci_quantiles=[0.025, 0.975], random_state=0)

    groups = build_groups(frame, ["sex", "race"])
    inputs = AnalysisInputs(
        class_names=("<=50K", ">50K"),
        groups=groups,
        confidence=0.95,
        min_group_size=30,
        n_boot=args.ours_boot,
        seed=0,
        ece_bins=10,
        labels=labels,
        predictions=predictions,
    )

    def ours_run() -> None:
        cells = build_cells(
            labels=labels,
            proba_dense=predictions.proba_dense,
            proba_ticket=predictions.proba_ticket,
            stratum=groups.stratum_of_row,
            n_strata=groups.n_strata,
            bins=10,
        )
        _bootstrap_metrics(inputs, cells, _membership(groups.groups, groups.n_strata))

    fair_seconds, ours_seconds = seconds(fairlearn_run), seconds(ours_run)
    fair_peak, ours_peak = peak_memory(fairlearn_run), peak_memory(ours_run)
    fair_per = fair_seconds / args.fairlearn_boot
    ours_per = ours_seconds / args.ours_boot
    print(f"rows: {len(frame)}, groups: sex x race ({groups.n_strata} intersections), metrics: 4, models: 2")
    print(
        f"fairlearn MetricFrame(n_boot={args.fairlearn_boot}) x 2 models: {fair_seconds:.2f} s, "
        f"{fair_per * 1000:.1f} ms per replicate, peak traced memory {fair_peak / 2**20:.1f} MiB"
    )
    print(
        f"ticketaudit bootstrap (n_boot={args.ours_boot}, both models, {len(groups.groups) + 1} groups): "
        f"{ours_seconds:.2f} s, {ours_per * 1000:.3f} ms per replicate, peak traced memory {ours_peak / 2**20:.1f} MiB"
    )
    print(f"speed ratio (fairlearn / ticketaudit, per replicate): {fair_per / ours_per:.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
