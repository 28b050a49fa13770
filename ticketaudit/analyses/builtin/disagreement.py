"""How often the ticket's prediction differs from the dense model's, overall and per group."""

from __future__ import annotations

from typing import Any

from ..base import Analysis, Batch, FinishContext, Worker


class _Flips:
    """The flipped rows shown in the report (``FlipExamples``), fed from batches."""

    def __init__(self) -> None:
        from ..disagreement import FlipExamples

        self.examples = FlipExamples()

    def update(self, batch: Batch) -> None:
        self.examples.update(rows=batch.rows, labels=batch.labels, proba_dense=batch.proba_dense,
                             proba_ticket=batch.proba_ticket, stratum=batch.strata)

    def merge(self, other: _Flips) -> _Flips:
        self.examples.merge(other.examples)
        return self


class Disagreement(Analysis):
    name = "disagreement"
    summary = "how often the ticket's prediction flips, per group, and which rows flipped"
    order = 20
    template = "_disagreement.html.j2"
    schema = {"type": "object", "required": ["overall", "groups"]}

    def accumulator(self, worker: Worker, planned: Any) -> _Flips:
        return _Flips()

    def finish(self, state: _Flips, context: FinishContext) -> Any:
        from ..disagreement import disagreement_from_cells

        return disagreement_from_cells(context.settings, context.cells, state.examples)


ANALYSIS = Disagreement()
