"""Sufficient statistics: rows collapse into cells of (stratum, label, dense prediction, ticket
prediction, dense and ticket confidence bins); every classification metric of both models, and
every paired discordance count, is a sum over cells. Sums merge by addition across chunks and
resample with a multinomial draw per stratum (see ``stats.stratified_multinomial``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("dense", "ticket")


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

    @property
    def names(self) -> tuple[str, ...]:
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

    @property
    def _positions(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def column(self, sums: np.ndarray, name: str) -> np.ndarray:
        return sums[..., self.index(name)]

    def block(self, sums: np.ndarray, prefix: str, count: int) -> np.ndarray:
        start = self.index(f"{prefix}:0")
        return sums[..., start:start + count]


@dataclass(frozen=True)
class CellTable:
    """Observed cells: their stratum, row count, and per-cell sums of every quantity."""

    layout: Layout
    stratum: np.ndarray
    counts: np.ndarray
    sums: np.ndarray

    def stratum_sums(self, cell_counts: np.ndarray, n_strata: int) -> np.ndarray:
        """Quantity sums per stratum for (..., cells) counts; quantities scale with a cell's count."""
        per_row = self.sums / self.counts[:, None]
        out = np.zeros((*cell_counts.shape[:-1], n_strata, per_row.shape[1]))
        for s in range(n_strata):
            member = self.stratum == s
            out[..., s, :] = cell_counts[..., member] @ per_row[member]
        return out


def confidence_bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1]; a confidence of exactly 1 falls in the last bin."""
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def build_cells(*, labels: np.ndarray, proba_dense: np.ndarray, proba_ticket: np.ndarray, stratum: np.ndarray,
                n_strata: int, bins: int) -> CellTable:
    """Collapse rows into cells and sum every quantity per cell."""
    n_classes = proba_dense.shape[1]
    layout = Layout(n_classes, bins)
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
    sums = np.zeros((n_cells, len(layout.names)))

    def add(name: str, values: np.ndarray) -> None:
        sums[:, layout.index(name)] = np.bincount(cell_of_row, weights=values.astype(np.float64), minlength=n_cells)

    add("n", np.ones(rows))
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
    stratum_of_cell = unique_keys
    for size in (bins, bins, n_classes, n_classes, n_classes):
        stratum_of_cell = stratum_of_cell // size
    return CellTable(layout, stratum_of_cell.astype(np.int64), sums[:, layout.index("n")].copy(), sums)


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
        conf = layout.block(sums, f"{model}:ece_conf", layout.bins)
        correct = layout.block(sums, f"{model}:ece_correct", layout.bins)
        out["ece"] = np.abs(conf - correct).sum(axis=-1) / n
    return out
