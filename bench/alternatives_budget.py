"""Benchmark: the pruning alternatives' time budget (issue: defaults that finish, item 2).

`ticketaudit prune` on UCI Adult (sex x race; the training split chooses masks and fine-tunes, the test split
compares), every method at 80% sparsity, for MLPs saved as bundles: the demo's (128-64, about 22 thousand
multiply-adds a row), a 512-512 one (0.3 million) and a deliberately expensive 2048-2048 one (4.4 million). For each job the budget prices
(``pruning.budget``: the audited ticket, one candidate per method, the sweep of each method) it prints the estimate
beside the time measured in this process, and the ratio; then one run with a budget of a third of the full estimate:
which jobs ran, and its measured time against the budget. Target: every budget kept within 1.5x.

Run: python bench/alternatives_budget.py [--models demo,mid] [--recover finetune] [--epochs 2] [--sweep 0.5,0.9]
     python bench/alternatives_budget.py --models wide --sweep '' --epochs 1 --budget 600   (one budgeted run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import ticketaudit.pruning.alternatives as alternatives
from ticketaudit.datasets import ADULT_LABELS, load_adult
from ticketaudit.demo import HIDDEN, fit_preprocess
from ticketaudit.models import build_architecture
from ticketaudit.prune import prune
from ticketaudit.tickets.bundle import save_bundle

WIDTHS = {"demo": HIDDEN, "mid": [512, 512], "wide": [2048, 2048]}


def save_model(folder: Path, hidden: list[int]) -> Path:
    """An MLP on Adult's encoded columns (random weights: the time does not depend on them), saved as a bundle."""
    train = load_adult("train")
    preprocess = fit_preprocess(train)
    torch.manual_seed(0)
    arguments = {"in_features": preprocess.width, "hidden": hidden, "out_features": 2}
    save_bundle(folder, build_architecture("mlp", arguments), architecture="mlp", arguments=arguments,
                labels=ADULT_LABELS, preprocess=preprocess)
    return folder


def timed_jobs() -> dict[str, float]:
    """Measure each priced job by wrapping the functions that run them (this benchmark's process only)."""
    measured: dict[str, float] = {}

    def wrap(name: str, original: Any, job_of: Any) -> None:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = original(*args, **kwargs)
            measured[job_of(*args, **kwargs)] = time.perf_counter() - start
            return out
        setattr(alternatives, name, run)

    wrap("_method_candidates", alternatives._method_candidates, lambda setup, method, **_: method)
    original_sweep = alternatives._sweep

    def sweep(methods: list[str], *args: Any, **kwargs: Any) -> Any:
        points = []
        for method in methods:
            start = time.perf_counter()
            points += original_sweep([method], *args, **kwargs)
            measured[alternatives._sweep_job(method)] = time.perf_counter() - start
        return points
    alternatives._sweep = sweep
    return measured


def run(model: Path, *, recover: str, epochs: int, sweep: tuple[float, ...], budget: float | None) -> tuple[Any, float]:
    train, test = load_adult("train"), load_adult("test")
    start = time.perf_counter()
    result = prune(dense=model, data=test, train_data=train, target="income", sensitive=["sex", "race"],
                   sparsity=0.8, recover=recover, epochs=epochs, sweep=sweep, budget_seconds=budget, seed=0)
    return result.alternatives, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,mid")
    parser.add_argument("--recover", default="finetune")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sweep", default="0.5,0.9")
    parser.add_argument("--budget", type=float, default=None,
                        help="only one run with this budget (for models whose unbounded run takes too long)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    sweep = tuple(float(v) for v in args.sweep.split(",")) if args.sweep else ()
    measured = timed_jobs()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = save_model(Path(tmp) / name, WIDTHS[name])
            if args.budget is not None:
                measured.clear()
                limited, seconds = run(model, recover=args.recover, epochs=args.epochs, sweep=sweep, budget=args.budget)
                plan = limited.budget
                print(f"{name} MLP {WIDTHS[name]}, --budget {args.budget:g} s: ran {', '.join(plan.to_dict()['ran'])} "
                      f"(estimated {plan.estimated_seconds:.1f} s); skipped "
                      f"{', '.join(f'{j.name} (~{j.seconds:.0f} s)' for j in plan.skipped) or 'nothing'}; the priced "
                      f"jobs took {sum(measured.values()):.1f} s = {sum(measured.values()) / args.budget:.2f}x the "
                      f"budget (target <= 1.5x); {seconds:.1f} s with loading and set-up")
                continue
            measured.clear()
            result, wall = run(model, recover=args.recover, epochs=args.epochs, sweep=sweep, budget=None)
            estimates = {job.name: job.seconds for job in result.budget.kept}
            print(f"\n{name} MLP {WIDTHS[name]}, --recover {args.recover} ({args.epochs} epochs), sweep {sweep}: "
                  f"{wall:.1f} s in all (estimated {result.budget.estimated_seconds:.1f} s for the priced jobs)")
            print(f"{'job':42} {'estimated':>10} {'measured':>10} {'ratio':>6}")
            ratios = []
            for job, seconds in measured.items():
                ratio = seconds / estimates[job]
                ratios.append(ratio)
                print(f"{job:42} {estimates[job]:9.1f}s {seconds:9.1f}s {ratio:6.2f}")
            print(f"measured / estimated per job: {min(ratios):.2f} to {max(ratios):.2f}")
            budget = round(result.budget.estimated_seconds / 3, 1)
            measured.clear()
            limited, seconds = run(model, recover=args.recover, epochs=args.epochs, sweep=sweep, budget=budget)
            spent = sum(measured.values())
            print(f"--budget {budget:g} s (a third): ran {', '.join(limited.budget.to_dict()['ran'])}; skipped "
                  f"{len(limited.budget.skipped)} job(s); the priced jobs took {spent:.1f} s = "
                  f"{spent / budget:.2f}x the budget (target <= 1.5x); {seconds:.1f} s with loading and set-up")


if __name__ == "__main__":
    main()
