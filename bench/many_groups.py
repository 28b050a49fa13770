"""Benchmark: an audit with many intersectional groups (issue: defaults that finish, item 5).

Two sensitive columns of --values values each (100: 10,000 intersections, 10,200 groups) on --rows rows (1M), an
MLP and its 80% ticket (bench/scale.py), `--analyses metrics`, 1,000 bootstrap replicates, in this process. Prints
the time of each stage (statistics = the metrics analysis: bootstrap, intervals, checks), and the JSON and HTML
sizes. Targets: statistics < 10 s; JSON < 1 MB, HTML < 2 MB.

Run: python bench/many_groups.py [--rows 1000000] [--values 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scale import FEATURES, models

import ticketaudit as ta
from ticketaudit.report.render import document_bytes, render_html, report_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--values", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 20)).astype(np.float32)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["a"] = rng.integers(0, args.values, args.rows).astype(str)
    frame["b"] = rng.integers(0, args.values, args.rows).astype(str)
    frame["label"] = (x @ np.linspace(1, 0.05, 20) + rng.normal(size=args.rows) > 0).astype(np.int8)
    with tempfile.TemporaryDirectory() as tmp:
        dense, ticket = models(Path(tmp))
        stages: list[tuple[str, float]] = []

        def progress(description: str, done: int, total: int) -> None:
            if not stages or stages[-1][0] != description:
                stages.append((description, time.perf_counter()))

        started = time.perf_counter()
        result = ta.audit(dense=dense, ticket=ticket, data=frame, target="label", sensitive=["a", "b"],
                          features=FEATURES, analyses="metrics", seed=0, progress=progress)
        audited = time.perf_counter()
        document = report_dict(result)
        payload = document_bytes(document)
        html = render_html(document)
        written = time.perf_counter()
    for (name, start), (_, end) in zip(stages, [*stages[1:], ("end", audited)]):
        print(f"{end - start:7.1f} s  {name}")
    statistics = next((audited - start for name, start in stages if name.startswith("Measuring groups")), float("nan"))
    print(f"statistics (groups, bootstrap, intervals, checks): {statistics:.1f} s (target < 10)")
    print(f"groups: {len(result.performance.subgroups):,}; audit {audited - started:.1f} s; JSON + HTML "
          f"{written - audited:.1f} s; JSON {len(payload) / 1e6:.2f} MB (target < 1), HTML {len(html) / 1e6:.2f} MB "
          f"(target < 2)")


if __name__ == "__main__":
    main()
