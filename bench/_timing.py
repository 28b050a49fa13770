"""Timing helper shared by the benchmarks (run as ``python bench/NAME.py``, so this folder is on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def best_of(repeats: int, func: Callable[[], Any]) -> float:
    """Fastest of ``repeats`` wall-clock runs of ``func``, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def process_peak(command: list[str], *, threads: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of ``command`` run in a fresh wrapper process (so its children's peak RSS
    is this run's alone), with ``threads`` OpenMP threads; exits with its stderr when it fails (exit code above 1)."""
    wrapper = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(done.stderr); "
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - start
    code, peak_kib = (int(v) for v in done.stdout.split())
    if code not in (0, 1):
        raise SystemExit(done.stderr)
    return seconds, peak_kib / 2**20
