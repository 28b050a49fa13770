"""Benchmark: the three outcomes of the release gate by simulation (known truth).

Each row plants a known excess drop psi (a group's accuracy drop minus the overall drop) with
``ticketaudit.simulate.paired_predictions`` (dense 85% accurate, 3% of rows changed at random in every
group), runs the default policy (tolerance 2 pts, 95% confidence) and counts outcomes:

- size of the equivalence test: psi exactly at the tolerance -> P(the group's check passes), target <= 5%;
- harm 0 with 2,000 rows per group -> P(the group's check passes), target >= 80% (and the whole verdict);
- false fail: harm 0 -> P(any check fails), target <= 5%;
- power: psi = 5 pts in a 500-row group, psi = 3 pts in a 2,000-row group -> P(fail), target >= 90%;
- minimum detectable harm: the psi at which simulated power crosses 80% vs the reported harm, target
  within 2 pts.

Run: python bench/verdicts.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ticketaudit.simulate import outcome_rates, power_crossing

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    runs = parser.parse_args().runs
    start = time.perf_counter()
    small, large = {"a": 500, "b": 2500}, {"a": 2000, "b": 18000}
    table = [
        ("psi = tolerance (2 pts), 500 of 3,000 rows", small, {"a": 0.02}, "check_pass", "<= 0.05"),
        ("psi = tolerance (2 pts), 2,000 of 6,000 rows", {"a": 2000, "b": 4000}, {"a": 0.02}, "check_pass", "<= 0.05"),
        ("harm 0, groups of 2,000 + 2,000 rows", {"a": 2000, "b": 2000}, {}, "check_pass", ">= 0.80"),
        ("harm 0, groups of 2,000 + 2,000 rows (whole verdict)", {"a": 2000, "b": 2000}, {}, "verdict_pass", "(report)"),
        ("harm 0, groups of 3,000 + 3,000 rows (whole verdict)", {"a": 3000, "b": 3000}, {}, "verdict_pass", "(report)"),
        ("harm 0, 500 of 3,000 rows: any check fails", small, {}, "any_fail", "<= 0.05"),
        ("harm 0, 2,000 + 2,000 rows: any check fails", {"a": 2000, "b": 2000}, {}, "any_fail", "<= 0.05"),
        ("psi = 5 pts, 500 of 3,000 rows: fails", small, {"a": 0.05}, "check_fail", ">= 0.90"),
        ("psi = 3 pts, 2,000 of 20,000 rows: fails", large, {"a": 0.03}, "check_fail", ">= 0.90"),
    ]
    print(f"{'scenario':58s} {'measured':>9s}  target   ({runs} runs each)")
    for label, sizes, psi, key, target in table:
        measured = outcome_rates(sizes, psi, group="a", runs=runs, seed=7)[key]
        print(f"{label:58s} {measured:9.3f}  {target}")
    for label, sizes in (("500 of 3,000 rows", small), ("2,000 of 20,000 rows", large)):
        crossing, reported = power_crossing(sizes, group="a", grid=np.round(np.arange(0.020, 0.0801, 0.005), 3),
                                            runs=max(200, runs // 3), seed=11)
        print(f"minimum detectable harm, {label:33s} simulated 80% power at psi = {crossing * 100:.2f} pts, "
              f"reported {reported * 100:.2f} pts (difference {abs(crossing - reported) * 100:.2f} pts, target <= 2)")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
