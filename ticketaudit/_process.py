"""The process's memory: settings of the ``ticketaudit`` command's own process (the Python API never changes its
caller's settings), and handing free heap pages back between batches (which any caller may)."""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the number of malloc arenas (``MALLOC_ARENA_MAX``)."""


def share_one_malloc_arena() -> bool:
    """Make every thread allocate from glibc's main arena, as ``MALLOC_ARENA_MAX=1`` does, unless the user set
    that variable; True when applied. Why: the layer-by-layer attention pass runs the dense model in a second
    thread, and in an arena of its own glibc hands freed blocks back to the system at once, so every batch
    pays the page faults again (measured: 0.45 s against 0.37 s per 512-token row). Must run before any thread
    starts."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, 1))


TRIM_ABOVE_BYTES = 3 * 2**29
"""Resident memory (1.5 GiB) above which the free heap is handed back between batches. Why: glibc keeps freed
blocks inside its heap, and a long-text attention pass (512-token maps of every layer, freed batch by batch) left
about 1 GiB of them resident: 300 texts of a 6-layer MiniLM-size model peaked at 2.02 GiB for a live 1.06 GiB; with
this bound 1.54 GiB, at the same speed (a 1 GiB bound: 1.22 GiB, 10% slower; large blocks mmapped: 1.07 GiB, 75%
slower)."""


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux ``/proc/self/statm``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


TRIM_SLACK_BYTES = 2**28
"""Free heap (256 MiB) tolerated above what was resident after the last trim: where the live data alone exceed
``TRIM_ABOVE_BYTES`` (two language models), batches do not each pay for a trim and the page faults after it."""

_resident_after_trim = 0


def release_free_heap(*, above: int = TRIM_ABOVE_BYTES, slack: int = TRIM_SLACK_BYTES) -> bool:
    """Hand glibc's free heap pages back to the system (``malloc_trim``) when resident memory exceeds ``above``
    and the last trim's level by ``slack``; True when trimmed. It frees nothing in use and changes no setting,
    so the Python API calls it too (Linux only)."""
    global _resident_after_trim
    if not sys.platform.startswith("linux"):
        return False
    resident = resident_bytes()
    if resident is None:
        return False
    _resident_after_trim = min(_resident_after_trim, resident)  # follows the process down (a later, smaller audit)
    if resident <= max(above, _resident_after_trim + slack):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    _resident_after_trim = resident_bytes() or 0
    return True
