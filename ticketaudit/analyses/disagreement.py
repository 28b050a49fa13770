"""Where the two models disagree: flip rates per group, over-representation P(g | flip) / P(g)
(compression-identified exemplars, Hooker et al.) and a few example rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats
from .base import AnalysisInputs, interval, number

MAX_EXAMPLES = 10


@dataclass(frozen=True)
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


def analyse_disagreement(inputs: AnalysisInputs) -> DisagreementResult:
    """Flip rates overall and per group, with Wilson intervals and over-representation."""
    preds = inputs.predictions
    dense, ticket, labels = preds.pred_dense, preds.pred_ticket, inputs.labels
    flips = dense != ticket
    overall_rate = float(flips.mean())

    def rate(name: str, attribute: str, rows: np.ndarray) -> FlipRate:
        n, k = int(rows.sum()), int(flips[rows].sum())
        low, high = stats.wilson_interval(k, n, confidence=inputs.confidence)
        r = k / n
        over = r / overall_rate if overall_rate > 0 else float("nan")
        return FlipRate(name, attribute, n, k, r, (float(low), float(high)), over, n < inputs.min_group_size)

    groups = inputs.groups
    overall = rate("overall", "overall", np.ones(len(labels), bool))
    per_group = tuple(rate(g.name, g.attribute, groups.rows(g)) for g in groups.groups)
    n_flips = int(flips.sum())
    dense_acc = float((dense[flips] == labels[flips]).mean()) if n_flips else float("nan")
    ticket_acc = float((ticket[flips] == labels[flips]).mean()) if n_flips else float("nan")
    return DisagreementResult(overall, per_group, dense_acc, ticket_acc, _examples(inputs, flips))


def _examples(inputs: AnalysisInputs, flips: np.ndarray) -> tuple[dict[str, Any], ...]:
    """Flipped rows where the ticket became wrong first, largest change in the label's probability first."""
    preds, labels = inputs.predictions, inputs.labels
    rows = np.flatnonzero(flips)
    if not rows.size:
        return ()
    idx = np.arange(len(labels))
    change = preds.proba_dense[idx, labels] - preds.proba_ticket[idx, labels]
    ticket_wrong = preds.pred_ticket != labels
    order = np.lexsort((rows, -change[rows], ~ticket_wrong[rows]))
    names = inputs.class_names
    strata = inputs.groups.strata_names
    out = []
    for row in rows[order][:MAX_EXAMPLES]:
        out.append({"row": int(row), "group": strata[inputs.groups.stratum_of_row[row]],
                    "label": names[labels[row]], "dense": names[preds.pred_dense[row]],
                    "ticket": names[preds.pred_ticket[row]],
                    "dense_p_label": number(round(float(preds.proba_dense[row, labels[row]]), 6)),
                    "ticket_p_label": number(round(float(preds.proba_ticket[row, labels[row]]), 6))})
    return tuple(out)
