"""How often the ticket's prediction differs from the dense model's, overall and per group."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..base import Analysis, AuditContext, Batch, FinishContext, Worker


class _Flips:
    """The flipped rows shown in the report (``FlipExamples``), fed from batches; with ``images``, also the
    image of each kept row (for its thumbnail)."""

    def __init__(self, *, images: bool) -> None:
        from ..disagreement import FlipExamples

        self.examples = FlipExamples()
        self.images: dict[int, Any] | None = {} if images else None

    def update(self, batch: Batch) -> None:
        self.examples.update(rows=batch.rows, labels=batch.labels, proba_dense=batch.proba_dense,
                             proba_ticket=batch.proba_ticket, stratum=batch.strata)
        if self.images is not None:
            kept = set(self.examples.rows)
            self.images.update({int(r): ref for r, ref in zip(batch.rows, batch.inputs.references) if int(r) in kept})
            self._prune()

    def merge(self, other: _Flips) -> _Flips:
        self.examples.merge(other.examples)
        if self.images is not None and other.images is not None:
            self.images.update(other.images)
            self._prune()
        return self

    def _prune(self) -> None:
        assert self.images is not None
        kept = set(self.examples.rows)
        self.images = {r: ref for r, ref in self.images.items() if r in kept}


class Disagreement(Analysis):
    name = "disagreement"
    summary = "how often the ticket's prediction flips, per group, and which rows flipped"
    order = 20
    template = "_disagreement.html.j2"
    schema = {"type": "object", "required": ["overall", "groups"]}

    def plan(self, context: AuditContext) -> bool:
        """Whether to keep the flipped rows' images for thumbnails (image models, unless --no-thumbnails)."""
        return context.modality.pictures and context.thumbnails

    def accumulator(self, worker: Worker, planned: bool) -> _Flips:
        return _Flips(images=planned)

    def finish(self, state: _Flips, context: FinishContext) -> Any:
        from ..disagreement import disagreement_from_cells

        result = disagreement_from_cells(context.settings, context.cells, state.examples)
        if state.images is None:
            return result
        from ...images import thumbnail

        column = context.audit.modality.column
        examples = tuple({**e, "thumbnail": thumbnail(state.images[e["row"]], row=e["row"], column=column)}
                         for e in result.examples)
        return dataclasses.replace(result, examples=examples)


ANALYSIS = Disagreement()
