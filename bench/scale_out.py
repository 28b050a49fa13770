"""Scale-out benchmark: one process (fragment after fragment) vs local Ray with 2 workers.

Generates a Parquet dataset (default 10 million rows: 10 files x 1M rows, row groups of 250,000),
an MLP and its 90% ticket, then audits it with ``engine="local"`` and ``engine="ray"``, each in a
fresh process, at 1/10 of the rows and at all of them. Prints wall time, the driver's peak resident
memory and rows/s, and checks that both engines give the same JSON. Target: the driver's memory
does not grow with the row count.

    python bench/scale_out.py [--rows 10000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

FEATURES = [f"f{i}" for i in range(8)]
FILES = 10


def generate(root: Path, rows: int) -> None:
    """FILES Parquet files of rows/FILES generated rows; the label depends on features and group."""
    per_file = rows // FILES
    for i in range(FILES):
        rng = np.random.default_rng(i)
        frame = pd.DataFrame({f: rng.normal(size=per_file).astype(np.float32) for f in FEATURES})
        frame["sex"] = rng.choice(["F", "M"], size=per_file)
        frame["race"] = rng.choice(["A", "B", "C", "D", "E"], size=per_file, p=[0.6, 0.2, 0.1, 0.06, 0.04])
        score = frame.f0 + 0.5 * frame.f1 - 0.3 * frame.f2 + 0.4 * (frame.race == "E") + rng.normal(size=per_file)
        frame["y"] = (score > 0).astype(np.int8)
        frame.to_parquet(root / f"part-{i:02d}.parquet", row_group_size=250_000)


def models(root: Path) -> None:
    from ticketaudit.models import MLP
    from ticketaudit.pruning.imp import global_magnitude_mask
    from ticketaudit.tickets.bundle import save_bundle

    torch.manual_seed(0)
    arguments = {"in_features": len(FEATURES), "hidden": [64, 64], "out_features": 2}
    dense = MLP(**arguments)
    mask = global_magnitude_mask(dense, keep=0.1)
    save_bundle(root / "dense", dense, architecture="mlp", arguments=arguments)
    save_bundle(root / "ticket", mask.apply(dense), architecture="mlp", arguments=arguments, mask=mask)


def run_one(root: Path, data: str, engine: str, workers: int, out: Path) -> None:
    """One audit in this (fresh) process; prints wall seconds and peak RSS as JSON."""
    import ticketaudit as ta

    start = time.perf_counter()
    result = ta.audit(dense=root / "dense", ticket=root / "ticket", data=data, target="y", sensitive="sex,race",
                      features=FEATURES, seed=0, n_boot=1000, batch_size=8192, engine=engine, num_workers=workers)
    wall = time.perf_counter() - start
    report = result.to_dict()
    out.write_text(json.dumps(report, sort_keys=True))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "peak_mib": peak, "rows": report["data"]["rows"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run", nargs=4, metavar=("ROOT", "DATA", "ENGINE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        root, data, engine, out = args.run
        run_one(Path(root), data, engine, args.workers, Path(out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        start = time.perf_counter()
        generate(root / "data", args.rows)
        models(root)
        print(f"generated {args.rows:,} rows in {FILES} Parquet files ({time.perf_counter() - start:.0f} s)")
        results = {}
        for label, data in (("1/10", str(root / "data" / "part-00.parquet")), ("all", str(root / "data"))):
            for engine in ("local", "ray"):
                out = root / f"{engine}-{label.replace('/', '_')}.json"
                command = [sys.executable, __file__, "--workers", str(args.workers), "--run", str(root), data, engine,
                           str(out)]
                line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                measured = json.loads(line)
                results[(label, engine)] = (measured, out.read_text())
                print(f"{engine:5s} {measured['rows']:>11,} rows: {measured['wall']:7.1f} s, "
                      f"{measured['rows'] / measured['wall']:>10,.0f} rows/s, driver peak {measured['peak_mib']:6.0f} MiB")
        for label in ("1/10", "all"):
            local, ray = results[(label, "local")], results[(label, "ray")]
            same = json.loads(local[1]) == json.loads(ray[1])
            print(f"{label:4s}: ray / local wall {ray[0]['wall'] / local[0]['wall']:.2f}x; identical JSON: {same}")
        for engine in ("local", "ray"):
            small, big = results[("1/10", engine)][0], results[("all", engine)][0]
            print(f"{engine:5s} driver peak, all rows vs 1/10: {big['peak_mib']:.0f} vs {small['peak_mib']:.0f} MiB "
                  f"({big['peak_mib'] / small['peak_mib']:.2f}x for {big['rows'] / small['rows']:.0f}x the rows)")


if __name__ == "__main__":
    main()
