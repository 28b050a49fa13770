"""The process's memory helpers: resident size read right, free heap handed back only above the bound."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ticketaudit import _process
from ticketaudit._process import release_free_heap, resident_bytes

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's malloc_trim")


def _status_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@linux
def test_resident_bytes_agrees_with_the_kernels_status() -> None:
    assert resident_bytes() == pytest.approx(_status_rss(), rel=0.05)


@linux
def test_below_the_bound_nothing_is_trimmed() -> None:
    assert release_free_heap(above=2**62) is False


@linux
def test_free_blocks_inside_the_heap_are_handed_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Freed blocks below glibc's mmap threshold stay resident while a live block sits above them; trimming
    returns them."""
    monkeypatch.setattr(_process, "_resident_after_trim", 0)
    blocks = [np.ones(12_000) for _ in range(3_000)]  # 96 kB each (heap, not mmap): about 290 MB
    keep = blocks[-1]
    del blocks
    before = resident_bytes()
    assert release_free_heap(above=0, slack=0) is True
    after = resident_bytes()
    assert before is not None and after is not None
    assert before - after > 100 * 2**20, (before, after)
    assert keep.sum() == 12_000


@linux
def test_a_trim_waits_for_the_slack_above_the_last_trims_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live data above the bound do not make every batch trim: the next trim waits until the heap grows by the
    slack."""
    monkeypatch.setattr(_process, "_resident_after_trim", 0)
    assert release_free_heap(above=0, slack=0) is True
    assert _process._resident_after_trim > 0
    assert release_free_heap(above=0, slack=2**40) is False
    monkeypatch.setattr(_process, "_resident_after_trim", 2**50)  # a larger audit earlier in this process
    release_free_heap(above=2**62)
    assert _process._resident_after_trim == pytest.approx(resident_bytes(), rel=0.05)  # the level follows it down
