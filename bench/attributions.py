"""Benchmark: ticketaudit's attribution step vs calling Captum directly, on the same rows.

Demo models (Adult MLP dense + IMP ticket), the same 2,000 stratified rows, Integrated Gradients
with the same steps, baseline, targets and batch size. "Captum directly" is what a user would write:
``IntegratedGradients(model).attribute(x, baselines, target, n_steps, internal_batch_size)`` for
both models in their own float32. ticketaudit's step runs in float64 (so batch size never changes an
answer) and, with --precision float32, in float32; it also sums one-hot inputs back to columns and
computes every comparison with its bootstrap. Targets: ratio <= 1.2 (issue 5, float64 step vs Captum
float32; issue 16, float32 mode vs Captum float32). Also prints peak traced memory for 500 and 2,000 rows.

Run: python bench/attributions.py [--rows 2000] [--steps 50] [--batch-size 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

from ticketaudit.analyses.attributions import AttributionSettings, analyse_attributions, stratified_sample
from ticketaudit.analyses.base import AnalysisInputs
from ticketaudit.analyses.predict import ModelRunner, predict_both
from ticketaudit.data import build_groups
from ticketaudit.demo import run_demo
from ticketaudit.inputs import build_features
from ticketaudit.tickets import load_dense, load_ticket
from _timing import best_of



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp), seed=0)
        dense = load_dense(Path(tmp) / "dense")
        ticket = load_ticket(Path(tmp) / "ticket", dense=dense)
        frame = pd.read_csv(Path(tmp) / "adult_test.csv")
    features, _ = build_features(frame, target="income", features=None, preprocess=dense.preprocess)
    labels = (frame["income"] == ">50K").to_numpy(dtype=np.int64)
    groups = build_groups(frame, ["sex", "race"])
    predictions = predict_both(ModelRunner(dense.module, device=torch.device("cpu")),
                               ModelRunner(ticket.module, device=torch.device("cpu")), features, batch_size=4096)
    inputs = AnalysisInputs(
        class_names=("<=50K", ">50K"),
        groups=groups,
        confidence=0.95,
        min_group_size=30,
        n_boot=1000,
        seed=0,
        ece_bins=10,
        labels=labels,
        predictions=predictions,
    )
    settings = AttributionSettings(rows=args.rows, steps=args.steps)
    device = torch.device("cpu")

    def ours(precision: str = "float64") -> None:
        analyse_attributions(
            inputs,
            dense=dense.module,
            ticket=ticket.module,
            features=features,
            column_of_input=dense.preprocess.column_of_input,
            sensitive=["sex", "race"],
            settings=settings,
            batch_size=args.batch_size,
            device=device,
            precision=precision,
        )

    rows = stratified_sample(groups.stratum_of_row, groups.n_strata, rows=args.rows, seed=0)
    x = torch.as_tensor(features[rows], dtype=torch.float32)
    target = torch.as_tensor(labels[rows])

    def direct(dtype: torch.dtype) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for module in (dense.module, ticket.module):
                explainer = IntegratedGradients(copy.deepcopy(module).to(dtype))
                for start in range(0, len(x), args.batch_size):
                    batch = x[start : start + args.batch_size].to(dtype)
                    explainer.attribute(
                        batch,
                        baselines=torch.zeros_like(batch[:1]),
                        target=target[start : start + args.batch_size],
                        n_steps=args.steps,
                        internal_batch_size=args.batch_size,
                        return_convergence_delta=True,
                    )

    ours_seconds = best_of(args.repeats, ours)
    ours32 = best_of(args.repeats, lambda: ours("float32"))
    direct32 = best_of(args.repeats, lambda: direct(torch.float32))
    direct64 = best_of(args.repeats, lambda: direct(torch.float64))
    print(f"rows {args.rows}, steps {args.steps}, batch size {args.batch_size}, both models, best of {args.repeats}")
    print(f"Captum directly, float32:            {direct32:.3f} s")
    print(f"Captum directly, float64:            {direct64:.3f} s")
    print(f"ticketaudit attribution step:        {ours_seconds:.3f} s (float64, + aggregation and bootstrap)")
    print(f"ratio vs Captum float32:             {ours_seconds / direct32:.2f}x (target <= 1.2x)")
    print(f"ratio vs Captum float64 (same math): {ours_seconds / direct64:.2f}x")
    print(f"ticketaudit step, --precision float32: {ours32:.3f} s")
    print(f"ratio float32 mode vs Captum float32:  {ours32 / direct32:.2f}x (issue 16 target <= 1.2x)")
    for n in (500, args.rows):
        small = AttributionSettings(rows=n, steps=args.steps)
        tracemalloc.start()
        analyse_attributions(
            inputs,
            dense=dense.module,
            ticket=ticket.module,
            features=features,
            column_of_input=dense.preprocess.column_of_input,
            sensitive=["sex", "race"],
            settings=small,
            batch_size=args.batch_size,
            device=device,
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"peak traced memory, {n} rows: {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
