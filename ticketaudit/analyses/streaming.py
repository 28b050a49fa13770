"""Mergeable per-stratum sums of per-row values, with Poisson-bootstrap replicate sums.

Each row gets a Poisson(1) weight per replicate that depends only on (seed, row index): rows are
consumed in fixed blocks of ``BLOCK`` rows, block k drawing its weights from ``SeedSequence([seed,
stream, k])``. So any batch size gives the same sums, and memory is O(strata x replicates x width),
never O(rows). (Poisson bootstrap: Hanley & MacGibbon 2006; Chamandy et al. 2012.)

Speed: weights come from 16 random bits through a Poisson(1) quantile table (each probability
within 2^-16 of Poisson(1)'s), about 6x faster than sampling; a block's replicate sums are formed
in float32 (the values are float32 numbers, the weights small integers) and added up in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from scipy import stats

BLOCK = 512
POISSON_TABLE = stats.poisson.ppf((np.arange(2**16) + 0.5) / 2**16, 1.0).astype(np.float32)


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
        bits = np.frombuffer(rng.bytes(2 * self.n_boot * size), dtype=np.uint16).reshape(self.n_boot, size)
        weights = POISSON_TABLE[bits]
        # Rows grouped by stratum (stable) take consecutive weight columns: iid weights, so which
        # column goes to which row does not matter, only that it is fixed; slices avoid copies.
        order = np.argsort(block_strata, kind="stable")
        ordered_values, ordered_strata = block_values[order], block_strata[order]
        # torch, not NumPy, multiplies: NumPy's BLAS threads would spin against torch's on the same cores.
        weights32, values32 = torch.from_numpy(weights), torch.from_numpy(ordered_values.astype(np.float32))
        strata_present, starts = np.unique(ordered_strata, return_index=True)
        ends = [*starts[1:], size]
        for stratum, start, end in zip(strata_present, starts, ends):
            self.count[stratum] += end - start
            self.sums[stratum] += ordered_values[start:end].sum(axis=0)
            self.boot_count[stratum] += weights[:, start:end].sum(axis=1, dtype=np.float64)
            self.boot_sums[stratum] += (weights32[:, start:end] @ values32[start:end]).numpy()

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
