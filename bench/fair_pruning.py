"""Benchmark: fairness-aware pruning methods against global magnitude at the same sparsity.

Generated data (``ticketaudit.datasets.make_minority_reliance``: a 15% minority whose label rides on
a feature with small useful weights), 6,000 training and 6,000 held-out rows per repeat, a dense MLP
(64-32) trained per repeat seed; every method prunes it to 90% sparsity and fine-tunes on the
training rows (``--recover``), with the same seeds. Printed per method, mean and range over repeats:
accuracy-gap widening (held out), worst-group and overall accuracy, seconds. Target (issue 6): a fair
method cuts gap widening by >= 50% versus global magnitude while losing <= 0.5 points of overall
accuracy. Then the same on Adult (sex x race groups; dense MLP 128-64 trained 4 epochs).

Run: python bench/fair_pruning.py [--repeats 5] [--sparsity 0.9] [--recover finetune] [--rounds 1]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from ticketaudit.datasets import ADULT_LABELS, MINORITY_FEATURES, load_adult, make_minority_reliance
from ticketaudit.demo import HIDDEN, fit_preprocess
from ticketaudit.models import MLP
from ticketaudit.prune import prune
from ticketaudit.pruning.imp import TrainSettings, train
from ticketaudit.tickets.bundle import save_bundle


def run(dense: torch.nn.Module, *, test, train_frame, sensitive: str, features, args, seed: int) -> list[dict]:
    start = time.perf_counter()
    result = prune(dense=dense, data=test, train_data=train_frame, target=args.target, sensitive=sensitive,
                   features=features, sparsity=args.sparsity, methods="all", recover=args.recover, rounds=args.rounds,
                   epochs=args.epochs, n_boot=200, seed=seed)
    elapsed = time.perf_counter() - start
    rows = []
    for c in result.alternatives.candidates:
        rows.append({"method": c.method, "gap": c.gap_widening.value, "worst": c.worst_group_accuracy.value,
                     "accuracy": c.accuracy, "seconds": elapsed / len(result.alternatives.candidates)})
    return rows


def summarise(title: str, repeats: list[list[dict]]) -> None:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for rows in repeats:
        for row in rows:
            by_method[row["method"]].append(row)
    base = by_method["global-magnitude"]
    print(f"\n== {title} ({len(repeats)} repeat(s))")
    print(f"{'method':22s} {'gap widening (pts)':>22s} {'worst group':>13s} {'overall':>10s} "
          f"{'gap cut vs global':>18s} {'Δ accuracy vs global':>21s} {'s/method':>9s}")
    for method, rows in by_method.items():
        gap = np.array([r["gap"] for r in rows])
        cut = [1 - r["gap"] / b["gap"] if b["gap"] > 0 else np.nan for r, b in zip(rows, base)]
        loss = [(r["accuracy"] - b["accuracy"]) * 100 for r, b in zip(rows, base)]
        print(f"{method:22s} {gap.mean() * 100:+8.2f} [{gap.min() * 100:+.1f}, {gap.max() * 100:+.1f}] "
              f"{np.mean([r['worst'] for r in rows]) * 100:12.1f}% {np.mean([r['accuracy'] for r in rows]) * 100:9.1f}% "
              f"{np.nanmean(cut) * 100:16.0f}%  {np.mean(loss):+10.2f} [{min(loss):+.2f}, {max(loss):+.2f}] "
              f"{np.mean([r['seconds'] for r in rows]):8.1f}")
    for method, rows in by_method.items():
        if method == "global-magnitude":
            continue
        met = [(1 - r["gap"] / b["gap"] >= 0.5) and (r["accuracy"] - b["accuracy"] >= -0.005)
               for r, b in zip(rows, base) if b["gap"] > 0]
        print(f"target (gap cut >= 50% and accuracy loss <= 0.5 pts) met by {method}: {sum(met)}/{len(met)} repeats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--recover", default="finetune")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-adult", action="store_true")
    args = parser.parse_args()
    print(f"sparsity {args.sparsity}, recovery {args.recover}, rounds {args.rounds}, epochs {args.epochs}, "
          f"torch {torch.get_num_threads()} threads")
    repeats = []
    args.target = "y"
    for seed in range(args.repeats):
        train_frame = make_minority_reliance(6000, seed=seed)
        test = make_minority_reliance(6000, seed=1000 + seed)
        x = torch.tensor(train_frame[list(MINORITY_FEATURES)].to_numpy(np.float32))
        y = torch.tensor(train_frame["y"].to_numpy())
        torch.manual_seed(seed)
        dense, _ = train(MLP(in_features=6, hidden=[64, 32], out_features=2), x, y,
                         settings=TrainSettings(epochs=30, batch_size=64, seed=seed))
        repeats.append(run(dense, test=test, train_frame=train_frame, sensitive="group",
                           features=list(MINORITY_FEATURES), args=args, seed=seed))
    summarise("generated minority-reliance data", repeats)
    if args.skip_adult:
        return
    import tempfile
    from pathlib import Path

    args.target = "income"
    train_frame, test = load_adult("train"), load_adult("test")
    preprocess = fit_preprocess(train_frame)
    x = torch.tensor(preprocess.transform(train_frame), dtype=torch.float32)
    y = torch.tensor((train_frame["income"] == ADULT_LABELS[1]).to_numpy(dtype=np.int64))
    adult = []
    for seed in range(min(args.repeats, 2)):
        torch.manual_seed(seed)
        arguments = {"in_features": preprocess.width, "hidden": HIDDEN, "out_features": 2}
        dense, _ = train(MLP(**arguments), x, y, settings=TrainSettings(epochs=4, seed=seed))
        with tempfile.TemporaryDirectory() as tmp:
            bundle = save_bundle(Path(tmp) / "dense", dense, architecture="mlp", arguments=arguments,
                                 labels=ADULT_LABELS, preprocess=preprocess)
            adult.append(run(bundle, test=test, train_frame=train_frame, sensitive="sex,race", features=None,
                             args=args, seed=seed))
    summarise("UCI Adult, sex x race", adult)


if __name__ == "__main__":
    main()
