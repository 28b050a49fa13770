"""Where the two models disagree: flip rates per group, over-representation P(g | flip) / P(g)
(compression-identified exemplars, Hooker et al.) and a few example rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats
from .base import AnalysisInputs, AnalysisSettings, interval, number
from .cells import CellTable, build_cells

MAX_EXAMPLES = 10


@dataclass(frozen=True, kw_only=True)
class FlipRate:
    group: str
    attribute: str
    n: int
    flips: int
    rate: float
    ci: tuple[float, float]
    over_representation: float
    insufficient: bool

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "attribute": self.attribute, "n": self.n, "flips": self.flips,
                "rate": number(self.rate), "ci": interval(*self.ci),
                "over_representation": number(self.over_representation), "insufficient": self.insufficient}


@dataclass(frozen=True)
class DisagreementResult:
    """Rows whose prediction changed from dense to ticket."""

    overall: FlipRate
    groups: tuple[FlipRate, ...]
    dense_accuracy_on_flips: float
    ticket_accuracy_on_flips: float
    examples: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(), "groups": [g.to_dict() for g in self.groups],
                "dense_accuracy_on_flips": number(self.dense_accuracy_on_flips),
                "ticket_accuracy_on_flips": number(self.ticket_accuracy_on_flips),
                "examples": list(self.examples)}


class FlipExamples:
    """The ``MAX_EXAMPLES`` flipped rows shown in the report, kept over batches and shards: flipped rows
    where the ticket became wrong first, then the largest drop in the label's probability, then row id.
    A total order on (row id, values), so any split of the rows keeps the same examples."""

    FIELDS = ("ticket_right", "neg_change", "row", "stratum", "label", "dense", "ticket", "dense_p", "ticket_p")

    def __init__(self) -> None:
        self.table = np.zeros((0, len(self.FIELDS)))

    def update(self, *, rows: np.ndarray, labels: np.ndarray, proba_dense: np.ndarray, proba_ticket: np.ndarray,
               stratum: np.ndarray) -> None:
        dense, ticket = np.argmax(proba_dense, 1), np.argmax(proba_ticket, 1)
        flipped = np.flatnonzero(dense != ticket)
        if not flipped.size:
            return
        idx, y = flipped, labels[flipped]
        dense_p, ticket_p = proba_dense[idx, y], proba_ticket[idx, y]
        batch = np.stack([(ticket[idx] == y).astype(float), -(dense_p - ticket_p), rows[idx].astype(float),
                          stratum[idx], y, dense[idx], ticket[idx], dense_p, ticket_p], axis=1)
        self._keep(np.concatenate([self.table, batch]))

    def merge(self, other: FlipExamples) -> FlipExamples:
        self._keep(np.concatenate([self.table, other.table]))
        return self

    @property
    def rows(self) -> list[int]:
        """Row ids of the kept examples."""
        return [int(r) for r in self.table[:, 2]]

    def _keep(self, table: np.ndarray) -> None:
        order = np.lexsort((table[:, 2], table[:, 1], table[:, 0]))
        self.table = table[order[:MAX_EXAMPLES]]

    def to_dicts(self, class_names: tuple[str, ...], strata_names: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
        out = []
        for _, _, row, stratum, label, dense, ticket, dense_p, ticket_p in self.table:
            out.append({"row": int(row), "group": strata_names[int(stratum)], "label": class_names[int(label)],
                        "dense": class_names[int(dense)], "ticket": class_names[int(ticket)],
                        "dense_p_label": number(round(float(dense_p), 6)),
                        "ticket_p_label": number(round(float(ticket_p), 6))})
        return tuple(out)


def analyse_disagreement(inputs: AnalysisInputs) -> DisagreementResult:
    """Flip rates overall and per group, with Wilson intervals and over-representation."""
    preds = inputs.predictions
    cells = build_cells(labels=inputs.labels, proba_dense=preds.proba_dense, proba_ticket=preds.proba_ticket,
                        stratum=inputs.groups.stratum_of_row, n_strata=inputs.groups.n_strata, bins=inputs.ece_bins)
    examples = FlipExamples()
    examples.update(rows=np.arange(len(inputs.labels)), labels=inputs.labels, proba_dense=preds.proba_dense,
                    proba_ticket=preds.proba_ticket, stratum=inputs.groups.stratum_of_row)
    return disagreement_from_cells(inputs.settings, cells, examples)


def disagreement_from_cells(settings: AnalysisSettings, cells: CellTable, examples: FlipExamples) -> DisagreementResult:
    """``analyse_disagreement`` from merged cells and examples: what chunked and sharded audits use."""
    parts = cells.decode()
    flipped = parts["dense"] != parts["ticket"]
    groups = settings.groups
    per_stratum = np.bincount(parts["stratum"], weights=cells.counts, minlength=groups.n_strata)
    flips_per_stratum = np.bincount(parts["stratum"], weights=cells.counts * flipped, minlength=groups.n_strata)
    overall_rate = flips_per_stratum.sum() / per_stratum.sum()

    def rate(name: str, attribute: str, strata: list[int]) -> FlipRate:
        n, k = int(per_stratum[strata].sum()), int(flips_per_stratum[strata].sum())
        low, high = stats.wilson_interval(k, n, confidence=settings.confidence)
        r = k / n
        over = r / overall_rate if overall_rate > 0 else float("nan")
        return FlipRate(
            group=name,
            attribute=attribute,
            n=n,
            flips=k,
            rate=r,
            ci=(float(low), float(high)),
            over_representation=over,
            insufficient=n < settings.min_group_size,
        )

    overall = rate("overall", "overall", list(range(groups.n_strata)))
    per_group = tuple(rate(g.name, g.attribute, list(g.strata)) for g in groups.groups)
    n_flips = int(flips_per_stratum.sum())
    correct = {m: float((cells.counts * flipped * (parts[m] == parts["label"])).sum()) for m in ("dense", "ticket")}
    dense_acc = correct["dense"] / n_flips if n_flips else float("nan")
    ticket_acc = correct["ticket"] / n_flips if n_flips else float("nan")
    return DisagreementResult(
        overall, per_group, dense_acc, ticket_acc, examples.to_dicts(settings.class_names, groups.strata_names)
    )
