"""Benchmark: audit time, peak memory and report size for 10k / 100k / 1M generated rows.

A 20-feature tabular task with two sensitive columns (region: 5 groups, cohort: 3 groups with a
10% minority), a dense MLP and an 80%-sparse ticket. Each audit runs as its own
``ticketaudit report`` process (CSV in, HTML + JSON out, 1,000 bootstrap replicates) so its
wall time and peak resident memory are measured alone. Targets (issue 7): 1M rows in < 60 s and
< 2 GB peak on 2 cores; the HTML stays < 2 MB whatever the row count.

Run: python bench/scale.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ticketaudit.models import MLP
from ticketaudit.pruning.imp import TrainSettings, global_magnitude_mask, train
from ticketaudit.tickets.bundle import save_bundle

FEATURES = [f"f{i}" for i in range(20)]
ARGUMENTS = {"in_features": 20, "hidden": [32], "out_features": 2}


def generate(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20)).astype(np.float32)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["region"] = rng.choice(["north", "south", "east", "west", "centre"], size=n)
    frame["cohort"] = rng.choice(["a", "b", "minority"], size=n, p=[0.5, 0.4, 0.1])
    weights = np.linspace(1.0, 0.05, 20)
    frame["label"] = (x @ weights + rng.normal(scale=1.0, size=n) > 0).astype(np.int8)
    return frame


def models(root: Path) -> tuple[Path, Path]:
    train_frame = generate(20_000, seed=1)
    features = torch.tensor(train_frame[FEATURES].to_numpy(np.float32))
    labels = torch.tensor(train_frame["label"].to_numpy(np.int64))
    torch.manual_seed(0)
    dense, _ = train(MLP(**ARGUMENTS), features, labels, settings=TrainSettings(epochs=3))
    mask = global_magnitude_mask(dense, keep=0.2)
    ticket, _ = train(mask.apply(dense), features, labels, settings=TrainSettings(epochs=2), mask=mask)
    return (save_bundle(root / "dense", dense, architecture="mlp", arguments=ARGUMENTS),
            save_bundle(root / "ticket", ticket, architecture="mlp", arguments=ARGUMENTS, mask=mask))


def run_audit(dense: Path, ticket: Path, data: Path, out: Path) -> tuple[float, float, int, int]:
    """(seconds, peak RSS in MiB, HTML bytes, exit code) of one report process."""
    command = [sys.executable, "-m", "ticketaudit", "report", "--dense", str(dense), "--ticket", str(ticket),
               "--data", str(data), "--target", "label", "--sensitive", "region,cohort", "--features",
               ",".join(FEATURES), "--seed", "0", "--quiet", "--out", str(out / "r.html"), "--json", str(out / "r.json")]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    return seconds, usage.ru_maxrss / 1024, (out / "r.html").stat().st_size, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dense, ticket = models(root)
        print(f"{'rows':>10} {'seconds':>8} {'peak MiB':>9} {'HTML KiB':>9} {'JSON KiB':>9} exit  (cores: {os.cpu_count()})")
        for size in (int(s) for s in args.sizes.split(",")):
            data = root / f"data_{size}.csv"
            generate(size).to_csv(data, index=False)
            seconds, peak, html_bytes, code = run_audit(dense, ticket, data, root)
            json_kib = (root / "r.json").stat().st_size / 1024
            print(f"{size:>10} {seconds:>8.1f} {peak:>9.0f} {html_bytes / 1024:>9.0f} {json_kib:>9.0f} {code:>4}")


if __name__ == "__main__":
    main()
