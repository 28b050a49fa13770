"""Benchmark: start-up cost of ticketaudit beyond torch, each measured in fresh processes.

- ``import torch`` alone (the reference: an audit cannot start without it);
- ``import torch; from ticketaudit import audit`` (the Python API's front door), target < 0.5 s more;
- ``ticketaudit --help`` and ``ticketaudit schema`` as commands (target about a second).

Prints the median of ``--repeats`` runs of each. Run: python bench/startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "ticketaudit"


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    python = sys.executable
    bare = median_seconds([python, "-c", "pass"], repeats)
    torch_only = median_seconds([python, "-c", "import torch"], repeats)
    front_door = median_seconds([python, "-c", "import torch; from ticketaudit import audit"], repeats)
    print(f"python alone                          {bare:.2f} s")
    print(f"import torch                          {torch_only:.2f} s")
    print(f"import torch + from ticketaudit import audit  {front_door:.2f} s: "
          f"{front_door - torch_only:.2f} s beyond torch (target < 0.5 s)")
    for args in (["--help"], ["schema"]):
        seconds = median_seconds([str(SCRIPT), *args], repeats)
        print(f"ticketaudit {' '.join(args):26s} {seconds:.2f} s (target about 1 s)")


if __name__ == "__main__":
    main()
