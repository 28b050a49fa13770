"""Mergeable per-stratum sums of per-row values, with Poisson-bootstrap replicate sums.

Each row gets a Poisson(1) weight per replicate that depends only on (seed, row index): rows are
consumed in fixed blocks of ``BLOCK`` rows, block k drawing its weights from ``SeedSequence([seed,
stream, k])``. So any batch size gives the same sums, and memory is O(strata x replicates x width),
never O(rows). (Poisson bootstrap: Hanley & MacGibbon 2006; Chamandy et al. 2012.)
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096


class BootstrapSums:
    """Per-stratum row counts and value sums, plus the same under Poisson(1) weights for each replicate."""

    def __init__(self, *, n_strata: int, width: int, n_boot: int, seed: int, stream: int, first_block: int = 0) -> None:
        """``first_block``: index of the first ``BLOCK`` of rows this accumulator sees (a shard's offset)."""
        self.n_boot, self.seed, self.stream = n_boot, seed, stream
        self.count = np.zeros(n_strata)
        self.sums = np.zeros((n_strata, width))
        self.boot_count = np.zeros((n_strata, n_boot))
        self.boot_sums = np.zeros((n_strata, n_boot, width))
        self._values: list[np.ndarray] = []
        self._strata: list[np.ndarray] = []
        self._buffered = 0
        self._block = first_block

    def update(self, values: np.ndarray, strata: np.ndarray) -> None:
        """Add the next rows (in table order): ``values`` (rows, width), ``strata`` (rows,)."""
        self._values.append(values)
        self._strata.append(strata)
        self._buffered += len(values)
        while self._buffered >= BLOCK:
            self._flush(BLOCK)

    def finish(self) -> BootstrapSums:
        """Fold in the last, partial block; call once after the last ``update``."""
        if self._buffered:
            self._flush(self._buffered)
        return self

    def merge(self, other: BootstrapSums) -> BootstrapSums:
        """Add another accumulator's (finished) sums, e.g. from another shard of whole blocks."""
        self.count += other.count
        self.sums += other.sums
        self.boot_count += other.boot_count
        self.boot_sums += other.boot_sums
        return self

    def _flush(self, size: int) -> None:
        values, strata = np.concatenate(self._values), np.concatenate(self._strata)
        block_values, block_strata = values[:size], strata[:size]
        self._values, self._strata = [values[size:]], [strata[size:]]
        self._buffered -= size
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.stream, self._block])))
        self._block += 1
        weights = rng.poisson(1.0, size=(self.n_boot, size)).astype(np.float64)
        for stratum in np.unique(block_strata):
            rows = block_strata == stratum
            self.count[stratum] += rows.sum()
            self.sums[stratum] += block_values[rows].sum(axis=0)
            self.boot_count[stratum] += weights[:, rows].sum(axis=1)
            self.boot_sums[stratum] += weights[:, rows] @ block_values[rows]

    def means(self, strata: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(rows, mean per column, replicate means (n_boot, width)) over the union of ``strata``."""
        n = float(self.count[strata].sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sums[strata].sum(axis=0) / n
            boot = self.boot_sums[strata].sum(axis=0) / self.boot_count[strata].sum(axis=0)[:, None]
        return n, mean, boot

    def complement_means(self, strata: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Like ``means`` over every stratum not in ``strata``."""
        rest = np.setdiff1d(np.arange(len(self.count)), strata)
        return self.means(rest)
