"""Per-layer mask density and what the ticket saves in size."""

from __future__ import annotations

from typing import Any

from ..base import Analysis, FinishContext


class Compression(Analysis):
    name = "compression"
    summary = "per-layer mask density, mask entropy and size accounting"
    order = 60
    weight_wise = ("per-layer mask density and size accounting compare the ticket's weights one by one with the "
                   "dense model's")
    template = "_compression.html.j2"
    schema = {"type": "object", "required": ["layers", "density"]}

    def finish(self, state: Any, context: FinishContext) -> Any:
        from ..compression import analyse_compression

        return analyse_compression(context.audit.ticket.mask, context.audit.ticket.module)

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        return [] if result.smaller else [result.statement]


ANALYSIS = Compression()
