"""Sufficient statistics: rows collapse into cells of (stratum, label, dense prediction, ticket
prediction, dense and ticket confidence bins); every classification metric of both models, and
every paired discordance count, is a sum over cells. Sums merge by addition across chunks and
resample with a multinomial draw per stratum (see ``stats.stratified_multinomial``).

Sums are exact integers (confidences in fixed point, units of 2^-32), so cells built from any split
of the rows into chunks or shards merge into exactly the same table: ``CellAccumulator``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import stats

MODELS = ("dense", "ticket")
CONFIDENCE_UNIT = 2.0**-32
"""Fixed-point unit of summed confidences: a float32 confidence >= 2^-8 is an exact multiple of it."""


@dataclass(frozen=True)
class PairedSpec:
    """A metric that is a proportion over a fixed domain of rows: ``indicator`` within ``domain``."""

    name: str
    domain: str  # "all" or "class:<k>"
    indicator: str  # "correct" or "pred:<k>"


def paired_specs(n_classes: int) -> tuple[PairedSpec, ...]:
    """Paired-proportion metrics: intervals for their deltas come from ``stats.paired_difference``."""
    if n_classes == 2:
        return (PairedSpec("accuracy", "all", "correct"), PairedSpec("tpr", "class:1", "pred:1"),
                PairedSpec("fpr", "class:0", "pred:1"), PairedSpec("selection_rate", "all", "pred:1"))
    return (PairedSpec("accuracy", "all", "correct"),
            *(PairedSpec(f"recall:{k}", f"class:{k}", f"pred:{k}") for k in range(n_classes)))


@dataclass(frozen=True)
class Layout:
    """Names of the summed quantities (columns) for ``n_classes`` and ``bins``."""

    n_classes: int
    bins: int
    only: tuple[str, ...] | None = None
    """The bootstrap's quantities (``metric_layout``), in their order; None: every quantity."""

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        if self.only is not None:
            return self.only
        names = ["n", *(f"support:{k}" for k in range(self.n_classes))]
        for m in MODELS:
            names += [f"{m}:correct"]
            names += [f"{m}:pred:{k}" for k in range(self.n_classes)]
            names += [f"{m}:hit:{k}" for k in range(self.n_classes)]
            for kind in ("count", "conf", "correct"):
                names += [f"{m}:ece_{kind}:{b}" for b in range(self.bins)]
        for spec in paired_specs(self.n_classes):
            names += [f"paired:{spec.name}:b", f"paired:{spec.name}:c"]
        return tuple(names)

    def index(self, name: str) -> int:
        return self._positions[name]

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def column(self, sums: np.ndarray, name: str) -> np.ndarray:
        return sums[..., self.index(name)]

    def block(self, sums: np.ndarray, prefix: str, count: int) -> np.ndarray:
        start = self.index(f"{prefix}:0")
        return sums[..., start:start + count]


@dataclass(frozen=True)
class CellTable:
    """Observed cells (sorted by key): their stratum, row count, and per-cell sums of every quantity."""

    layout: Layout
    stratum: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    keys: np.ndarray
    """Cell key: stratum, label, dense and ticket prediction, dense and ticket confidence bin (mixed radix)."""

    def decode(self) -> dict[str, np.ndarray]:
        """Per cell: stratum, label, dense and ticket prediction (and confidence bins)."""
        k, bins = self.layout.n_classes, self.layout.bins
        rest, out = self.keys, {}
        for name, size in (("ticket_bin", bins), ("dense_bin", bins), ("ticket", k), ("dense", k), ("label", k)):
            out[name], rest = rest % size, rest // size
        out["stratum"] = rest
        return out

    def stratum_sums(self, cell_counts: np.ndarray, n_strata: int) -> np.ndarray:
        """Quantity sums per stratum for (..., cells) counts; quantities scale with a cell's count. Cells are sorted
        by key, whose leading digit is the stratum, so each stratum's cells are one slice: one small matrix product
        per stratum, at a cost linear in cells x replicates whatever the number of strata."""
        per_row = self.sums / self.counts[:, None]
        out = np.zeros((*cell_counts.shape[:-1], n_strata, per_row.shape[1]))
        bounds = np.searchsorted(self.stratum, np.arange(n_strata + 1))
        for s in np.flatnonzero(bounds[1:] > bounds[:-1]):
            start, stop = bounds[s], bounds[s + 1]
            out[..., s, :] = cell_counts[..., start:stop] @ per_row[start:stop]
        return out


    def resampled_stratum_sums(self, n_strata: int, *, layout: Layout, n_boot: int, seed: int,
                               chunk: int = 128) -> Iterator[np.ndarray]:
        """Yield (strata, quantities of ``layout``, replicates) sums of the stratified bootstrap, ``chunk`` replicates
        at a time: ``stratum_sums`` of ``stats.stratified_multinomial``'s draws (equal by test), without the
        (replicates, cells) table: each block of strata's redraw is multiplied at once into its strata's sums, the
        blocks spread over threads (each has its own random stream: the sums do not depend on the threads)."""
        per_row = quantities(self.sums, self.layout, layout) / self.counts[:, None]
        resampler = stats.StratumResampler(self.counts, self.stratum, n_strata=n_strata, seed=seed)

        def block_sums(b: int, size: int, out: np.ndarray) -> None:
            block = resampler.blocks[b]
            weights = np.zeros((len(block.strata), block.width, per_row.shape[1]))
            stratum_of_cell = np.repeat(np.arange(len(block.strata)), np.diff(block.bounds))
            weights[stratum_of_cell, np.arange(len(block.cells)) - block.bounds[stratum_of_cell]] = per_row[block.cells]
            out[block.strata] = np.matmul(weights.transpose(0, 2, 1), resampler.draw_padded(b, size).transpose(0, 2, 1))

        with ThreadPoolExecutor(max_workers=stats.worker_threads()) as pool:
            for start in range(0, n_boot, chunk):
                size = min(chunk, n_boot - start)
                out = np.zeros((n_strata, per_row.shape[1], size))
                for finished in [pool.submit(block_sums, b, size, out) for b in range(len(resampler.blocks))]:
                    finished.result()
                yield out


def metric_layout(layout: Layout) -> Layout:
    """The quantities ``metrics_from_sums`` reads, what the bootstrap sums: no bin counts, no paired discordances,
    and each bin's confidence minus correct as one quantity ``ece_gap`` (ECE needs only that difference)."""
    names: list[str] = []
    for name in layout.names:
        if name.startswith("paired:") or ":ece_count:" in name or ":ece_correct:" in name:
            continue
        names.append(name.replace(":ece_conf:", ":ece_gap:"))
    return Layout(layout.n_classes, layout.bins, only=tuple(names))


def quantities(sums: np.ndarray, full: Layout, layout: Layout) -> np.ndarray:
    """The columns of ``layout`` from sums in the ``full`` layout (``ece_gap`` = confidence − correct)."""
    columns = []
    for name in layout.names:
        if ":ece_gap:" in name:
            columns.append(full.column(sums, name.replace(":ece_gap:", ":ece_conf:"))
                           - full.column(sums, name.replace(":ece_gap:", ":ece_correct:")))
        else:
            columns.append(full.column(sums, name))
    return np.stack(columns, axis=-1)


def confidence_bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1]; a confidence of exactly 1 falls in the last bin."""
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def build_cells(*, labels: np.ndarray, proba_dense: np.ndarray, proba_ticket: np.ndarray, stratum: np.ndarray,
                n_strata: int, bins: int) -> CellTable:
    """Collapse rows into cells and sum every quantity per cell."""
    layout = Layout(proba_dense.shape[1], bins)
    return cell_table(layout, *exact_cell_sums(layout, labels=labels, proba_dense=proba_dense,
                                               proba_ticket=proba_ticket, stratum=stratum))


def exact_cell_sums(layout: Layout, *, labels: np.ndarray, proba_dense: np.ndarray, proba_ticket: np.ndarray,
                    stratum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted cell keys and exact integer sums per cell (confidences in fixed point)."""
    n_classes, bins = layout.n_classes, layout.bins
    rows = len(labels)
    preds = {"dense": np.argmax(proba_dense, 1), "ticket": np.argmax(proba_ticket, 1)}
    confs = {"dense": proba_dense[np.arange(rows), preds["dense"]],
             "ticket": proba_ticket[np.arange(rows), preds["ticket"]]}
    bin_of = {m: confidence_bins(confs[m], bins) for m in MODELS}
    key = stratum.astype(np.int64)
    for part, size in ((labels, n_classes), (preds["dense"], n_classes), (preds["ticket"], n_classes),
                       (bin_of["dense"], bins), (bin_of["ticket"], bins)):
        key = key * size + part
    unique_keys, cell_of_row = np.unique(key, return_inverse=True)
    n_cells = len(unique_keys)
    sums = np.zeros((n_cells, len(layout.names)), dtype=np.int64)

    def add(name: str, values: np.ndarray) -> None:
        """Exact integer sums per cell (0/1 indicators, or confidences in fixed point)."""
        if values.dtype == np.bool_:
            sums[:, layout.index(name)] = np.bincount(cell_of_row, weights=values, minlength=n_cells).astype(np.int64)
        else:
            fixed = np.rint(values / CONFIDENCE_UNIT).astype(np.int64)
            np.add.at(sums[:, layout.index(name)], cell_of_row, fixed)

    add("n", np.ones(rows, dtype=bool))
    for k in range(n_classes):
        add(f"support:{k}", labels == k)
    indicators: dict[str, dict[str, np.ndarray]] = {}
    for m in MODELS:
        correct = preds[m] == labels
        add(f"{m}:correct", correct)
        indicators[m] = {"correct": correct}
        for k in range(n_classes):
            add(f"{m}:pred:{k}", preds[m] == k)
            add(f"{m}:hit:{k}", (preds[m] == k) & (labels == k))
            indicators[m][f"pred:{k}"] = preds[m] == k
        for b in range(bins):
            in_bin = bin_of[m] == b
            add(f"{m}:ece_count:{b}", in_bin)
            add(f"{m}:ece_conf:{b}", np.where(in_bin, confs[m], 0.0))
            add(f"{m}:ece_correct:{b}", in_bin & correct)
    for spec in paired_specs(n_classes):
        domain = np.ones(rows, bool) if spec.domain == "all" else labels == int(spec.domain.split(":")[1])
        dense_i, ticket_i = indicators["dense"][spec.indicator], indicators["ticket"][spec.indicator]
        add(f"paired:{spec.name}:b", domain & dense_i & ~ticket_i)
        add(f"paired:{spec.name}:c", domain & ~dense_i & ticket_i)
    return unique_keys, sums


def cell_table(layout: Layout, keys: np.ndarray, exact_sums: np.ndarray) -> CellTable:
    """The table of cells from sorted keys and their exact integer sums (confidences in fixed point)."""
    stratum_of_cell = keys
    for _ in range(3):
        stratum_of_cell = stratum_of_cell // layout.n_classes
    stratum_of_cell = stratum_of_cell // (layout.bins * layout.bins)
    sums = exact_sums.astype(np.float64)
    for m in MODELS:
        start = layout.index(f"{m}:ece_conf:0")
        sums[:, start:start + layout.bins] *= CONFIDENCE_UNIT
    return CellTable(layout, stratum_of_cell.astype(np.int64), sums[:, layout.index("n")].copy(), sums, keys)


class CellAccumulator:
    """Cells of any number of row batches (``update``) or shards (``merge``); exact, order-independent."""

    def __init__(self, *, n_classes: int, bins: int) -> None:
        self.layout = Layout(n_classes, bins)
        self.keys = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros((0, len(self.layout.names)), dtype=np.int64)

    def update(self, *, labels: np.ndarray, proba_dense: np.ndarray, proba_ticket: np.ndarray,
               stratum: np.ndarray) -> None:
        if not len(labels):
            return
        self._add(*exact_cell_sums(self.layout, labels=labels, proba_dense=proba_dense, proba_ticket=proba_ticket,
                                   stratum=stratum))

    def merge(self, other: CellAccumulator) -> CellAccumulator:
        self._add(other.keys, other.sums)
        return self

    def _add(self, keys: np.ndarray, sums: np.ndarray) -> None:
        all_keys = np.concatenate([self.keys, keys])
        self.keys, position = np.unique(all_keys, return_inverse=True)
        total = np.zeros((len(self.keys), sums.shape[1]), dtype=np.int64)
        np.add.at(total, position, np.concatenate([self.sums, sums]))
        self.sums = total

    def table(self) -> CellTable:
        return cell_table(self.layout, self.keys, self.sums)


def domain_size(sums: np.ndarray, layout: Layout, spec: PairedSpec) -> np.ndarray:
    return layout.column(sums, "n") if spec.domain == "all" else layout.column(sums, f"support:{spec.domain.split(':')[1]}")


def metrics_from_sums(sums: np.ndarray, layout: Layout, model: str) -> dict[str, np.ndarray]:
    """Every metric of one model from quantity sums (any leading shape). NaN where undefined."""
    k = layout.n_classes
    n = layout.column(sums, "n")
    support = layout.block(sums, "support", k)
    pred = layout.block(sums, f"{model}:pred", k)
    hit = layout.block(sums, f"{model}:hit", k)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"accuracy": layout.column(sums, f"{model}:correct") / n}
        if k == 2:
            out["tpr"] = hit[..., 1] / support[..., 1]
            out["fpr"] = (pred[..., 1] - hit[..., 1]) / support[..., 0]
            out["selection_rate"] = pred[..., 1] / n
            out["precision"] = np.where(pred[..., 1] > 0, hit[..., 1] / pred[..., 1], np.nan)
        else:
            recall = np.where(support > 0, hit / support, np.nan)
            for c in range(k):
                out[f"recall:{c}"] = recall[..., c]
            valid = (support > 0).sum(axis=-1)
            out["macro_recall"] = np.where(valid > 0, np.nansum(recall, axis=-1) / np.maximum(valid, 1), np.nan)
        if f"{model}:ece_gap:0" in layout.names:
            gap = layout.block(sums, f"{model}:ece_gap", layout.bins)
        else:
            gap = layout.block(sums, f"{model}:ece_conf", layout.bins) - layout.block(sums, f"{model}:ece_correct", layout.bins)
        out["ece"] = np.abs(gap).sum(axis=-1) / n
    return out
