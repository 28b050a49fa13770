"""Statistics: intervals for rates and paired differences, McNemar, Holm, and a vectorised,
paired, group-stratified bootstrap over sufficient-statistic cells.

Conventions: a paired difference is ticket minus dense. For a 0/1 indicator on the same rows,
``b`` counts rows where dense = 1 and ticket = 0 and ``c`` rows where dense = 0 and ticket = 1,
so the difference is (c - b) / n.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import special


def z_value(confidence: float) -> float:
    """Two-sided normal quantile for ``confidence``."""
    return float(special.ndtri(0.5 + confidence / 2))


def wilson_interval(k: np.ndarray | float, n: np.ndarray | float, *, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes out of n (NaN where n = 0)."""
    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z = z_value(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@dataclass(frozen=True, kw_only=True)
class PairedDifference:
    """Estimate, interval and two-sided p-value of a paired difference of proportions."""

    estimate: np.ndarray
    centre: np.ndarray
    se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray


def paired_difference(b: np.ndarray, c: np.ndarray, n: np.ndarray, *, confidence: float) -> PairedDifference:
    """Bonett–Price adjusted-Wald interval for (c - b) / n (ticket - dense).

    Adds one to each discordant cell and two to n; unlike a percentile bootstrap it keeps its
    coverage when discordant pairs are few. The p-value inverts the same interval.
    """
    b, c, n = (np.asarray(x, dtype=np.float64) for x in (b, c, n))
    z = z_value(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = (c - b) / n
        p_b, p_c = (b + 1) / (n + 2), (c + 1) / (n + 2)
        centre = p_c - p_b
        se = np.sqrt((p_b + p_c - centre**2) / (n + 2))
        p_value = 2 * special.ndtr(-np.abs(centre) / se)
    return PairedDifference(
        estimate=estimate,
        centre=centre,
        se=se,
        low=np.clip(centre - z * se, -1, 1),
        high=np.clip(centre + z * se, -1, 1),
        p_value=p_value,
    )


def difference_of_differences(
    first: PairedDifference, second: PairedDifference, *, scale: np.ndarray, confidence: float
) -> PairedDifference:
    """``scale * (first - second)`` for two independent paired differences (MOVER with Wald parts)."""
    z = z_value(confidence)
    estimate = scale * (first.estimate - second.estimate)
    centre = scale * (first.centre - second.centre)
    se = scale * np.sqrt(first.se**2 + second.se**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = 2 * special.ndtr(-np.abs(centre) / se)
    return PairedDifference(
        estimate=estimate, centre=centre, se=se, low=centre - z * se, high=centre + z * se, p_value=p_value
    )


def mcnemar_p_value(b: int, c: int) -> float:
    """McNemar's test on discordant pairs: exact binomial when b + c < 25, else chi-square with
    continuity correction."""
    if b + c == 0:
        return 1.0
    if b + c < 25:  # exact: Binomial(b + c, 1/2) is symmetric, so two-sided p = 2 P(X <= min(b, c)), at most 1
        return float(min(1.0, 2 * special.bdtr(min(b, c), b + c, 0.5)))
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return float(special.chdtrc(1, statistic))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control); NaNs are left out of the family."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if not valid.size:
        return adjusted
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def bootstrap_p_value(replicates: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Two-sided p-value for 'the statistic is 0' by inverting the percentile interval."""
    reps = np.asarray(replicates, dtype=np.float64)
    valid = (~np.isnan(reps)).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = (reps <= 0).sum(axis=axis) / valid
        above = (reps >= 0).sum(axis=axis) / valid
        p = np.minimum(1.0, 2 * np.minimum(below, above))
        floor = 1.0 / (valid + 1)
    return np.where(valid > 0, np.maximum(p, floor), np.nan)


def bootstrap_se(replicates: np.ndarray) -> float:
    """Standard deviation of the finite bootstrap replicates (NaN with fewer than two)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    return float(np.std(reps, ddof=1)) if reps.size > 1 else float("nan")


def normal_p_value(value: float, se: float) -> float:
    """Two-sided p-value for 'the statistic is 0' with a normal reference and standard error ``se``."""
    if not np.isfinite(se) or not np.isfinite(value):
        return float("nan")
    if se == 0:
        return 1.0 if value == 0 else 0.0
    return float(2 * special.ndtr(-abs(value) / se))


def se_p_value(value: float, replicates: np.ndarray) -> float:
    """Two-sided p-value from the bootstrap standard error (normal reference), which stays smooth at
    the small per-test levels that multiplicity control asks for."""
    return normal_p_value(value, bootstrap_se(replicates))


def percentile_interval(replicates: np.ndarray, *, confidence: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval, ignoring replicates where the statistic is undefined (NaN where all are)."""
    alpha = 1 - confidence
    reps = np.moveaxis(np.asarray(replicates, dtype=np.float64), axis, 0)
    low, high = nan_quantiles(reps, (alpha / 2, 1 - alpha / 2))
    return low, high


def nan_quantiles(values: np.ndarray, quantiles: tuple[float, ...]) -> list[np.ndarray]:
    """``np.nanquantile(values, q, axis=0)`` (linear interpolation) for each q, from one sort: numpy's own falls back
    to a Python loop over columns as soon as one NaN is present (10,000 groups: seconds instead of milliseconds)."""
    ordered = np.sort(values, axis=0)  # NaNs last
    valid = (~np.isnan(values)).sum(axis=0)
    out = []
    for q in quantiles:
        position = q * np.maximum(valid - 1, 0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(valid - 1, 0))
        low_v = np.take_along_axis(ordered, below[None], axis=0)[0]
        high_v = np.take_along_axis(ordered, above[None], axis=0)[0]
        value = low_v + (high_v - low_v) * (position - below)
        out.append(np.where(valid > 0, value, np.nan))
    return out


def worker_threads() -> int:
    """Threads for the bootstrap's draws: the processors this process may use (numpy's draws and products release
    the interpreter lock), at most 8."""
    available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, min(8, len(available)))


@dataclass(frozen=True, eq=False)
class ResampleBlock:
    """Strata redrawn together from one random stream: several of the same row count with few rows per cell (row-index
    draws, each stratum's cells padded to ``width``), or one stratum drawn multinomially (``by_row`` False)."""

    strata: np.ndarray
    cells: np.ndarray
    """The block's cells (indices into the counts), stratum by stratum."""
    bounds: np.ndarray
    """Offsets of each stratum's cells in ``cells`` (strata + 1)."""
    by_row: bool
    width: int
    """The most cells of any of its strata: each stratum's counts take this many columns in ``draw_padded``."""
    rows: int
    """Rows of each of its strata (all alike)."""


class StratumResampler:
    """Multinomial redraws of each stratum's cells (rows resampled with replacement within their stratum).

    Strata with few rows per cell draw row indices: the same law as the multinomial, far faster than one binomial
    per cell, and drawn many strata at a time (``ResampleBlock``: strata of the same row count, so one exact integer
    draw serves them all, up to ``BLOCK_ROWS`` rows) so the cost is the draws, not a Python step per stratum. Blocks
    and their random streams depend only on the counts and the seed, never on the threads that run them.
    """

    ROWS_PER_CELL = 16
    """Up to this many rows per cell, drawing row indices costs less than a multinomial's binomial per cell."""
    BLOCK_ROWS = 16384
    """Rows of a block: enough that each draw is one large vectorised step, small enough to stay in cache."""

    def __init__(self, counts: np.ndarray, stratum_of_cell: np.ndarray, *, n_strata: int, seed: int) -> None:
        self.counts = counts
        order = np.argsort(stratum_of_cell, kind="stable")  # each stratum's cells in cell order, in one pass
        per_stratum = np.bincount(stratum_of_cell, minlength=n_strata)
        starts = np.concatenate([[0], np.cumsum(per_stratum)])
        sizes = np.rint(np.bincount(stratum_of_cell, weights=counts, minlength=n_strata)).astype(np.int64)
        by_row = (sizes > 0) & (sizes <= self.ROWS_PER_CELL * per_stratum)
        self.blocks: list[ResampleBlock] = []
        for s in np.flatnonzero((sizes > 0) & ~by_row):
            self.blocks.append(ResampleBlock(np.array([s]), order[starts[s]:starts[s + 1]],
                                             np.array([0, per_stratum[s]]), False, int(per_stratum[s]), int(sizes[s])))
        few = np.flatnonzero(by_row)
        few = few[np.lexsort((per_stratum[few], sizes[few]))]  # equal row counts together, alike widths side by side
        first = 0
        while first < len(few):
            rows = sizes[few[first]]
            last = first + 1
            while last < len(few) and sizes[few[last]] == rows and (last - first + 1) * rows <= self.BLOCK_ROWS:
                last += 1
            strata = np.sort(few[first:last])
            cells = np.concatenate([order[starts[s]:starts[s + 1]] for s in strata])
            self.blocks.append(ResampleBlock(strata, cells, np.concatenate([[0], np.cumsum(per_stratum[strata])]),
                                             True, int(per_stratum[strata].max()), int(rows)))
            first = last
        self.streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(self.blocks))]
        self._row_maps: dict[int, tuple[np.ndarray, ...]] = {}
        self._local = threading.local()

    def _row_map(self, b: int) -> tuple[np.ndarray, ...]:
        """Per row of the block (strata's rows in turn, each cell's rows together): its stratum's first row, its
        stratum's place in the block, and its cell's place in its stratum."""
        if b not in self._row_maps:
            block = self.blocks[b]
            cell_rows = self.counts[block.cells].astype(np.intp)
            stratum_of_cell = np.repeat(np.arange(len(block.strata)), np.diff(block.bounds))
            local = np.arange(len(block.cells)) - block.bounds[stratum_of_cell]
            row_stratum = np.repeat(stratum_of_cell, cell_rows)
            self._row_maps[b] = (row_stratum * block.rows, row_stratum, np.repeat(local, cell_rows))
        return self._row_maps[b]

    def draw_padded(self, b: int, size: int) -> np.ndarray:
        """(block strata, size, width) redrawn counts, each stratum's cells padded with zeros to the block's width.
        Advances the block's stream: call in chunk order."""
        block, stream = self.blocks[b], self.streams[b]
        if not block.by_row:
            counts = self.counts[block.cells]
            return stream.multinomial(block.rows, counts / block.rows, size=size).astype(np.float64)[None]
        first_row, row_stratum, row_cell = self._row_map(b)
        strata, width = len(block.strata), block.width
        index, cell = self._scratch((size, len(first_row)))
        small = np.uint16 if block.rows <= np.iinfo(np.uint16).max else np.uint32  # fewer random bits, same law
        np.add(stream.integers(0, block.rows, size=(size, len(first_row)), dtype=small), first_row, out=index)
        slot = row_stratum * (size * width) + row_cell  # where a row's cell counts in (strata, size, width)
        np.take(slot, index, out=cell)
        cell += (np.arange(size) * width)[:, None]
        return np.bincount(cell.ravel(), minlength=strata * size * width).reshape(strata, size, width).astype(np.float64)

    def _scratch(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """This thread's reusable draw buffers (fresh multi-megabyte arrays on every draw cost page faults, which
        threads take in turn)."""
        size = shape[0] * shape[1]
        buffers = getattr(self._local, "buffers", None)
        if buffers is None or buffers[0].size < size:
            buffers = (np.empty(size, dtype=np.intp), np.empty(size, dtype=np.intp))
            self._local.buffers = buffers
        return tuple(buffer[:size].reshape(shape) for buffer in buffers)  # type: ignore[return-value]

    def draw(self, b: int, size: int) -> np.ndarray:
        """(size, the block's cells) redrawn counts, in the order of ``blocks[b].cells``."""
        block = self.blocks[b]
        padded = self.draw_padded(b, size)  # (strata, size, width)
        stratum_of_cell = np.repeat(np.arange(len(block.strata)), np.diff(block.bounds))
        return padded[stratum_of_cell, :, np.arange(len(block.cells)) - block.bounds[stratum_of_cell]].T


def stratified_multinomial(
    counts: np.ndarray, stratum_of_cell: np.ndarray, *, n_strata: int, n_boot: int, seed: int, chunk: int = 128
) -> Iterator[np.ndarray]:
    """Yield (replicates, cells) resampled counts, ``chunk`` replicates at a time.

    Within each stratum the cells are drawn multinomially with the stratum's size: the same
    distribution as resampling that stratum's rows with replacement, at a cost independent of
    the number of rows (``StratumResampler``).
    """
    resampler = StratumResampler(counts, stratum_of_cell, n_strata=n_strata, seed=seed)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        out = np.zeros((size, len(counts)), dtype=np.float64)
        for b, block in enumerate(resampler.blocks):
            out[:, block.cells] = resampler.draw(b, size)
        yield out
