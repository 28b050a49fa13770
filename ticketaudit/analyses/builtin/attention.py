"""Attention entropy per layer x head, dense vs ticket, overall and per group (models with attention)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..base import Analysis, Batch, FinishContext, Worker


class _AttentionSums:
    """Per-stratum Poisson-bootstrap sums of each row's entropies and JS divergence per head; the stream
    (both models' recorders) stays on the worker."""

    def __init__(self, worker: Worker) -> None:
        self._worker: Worker | None = worker
        self._stream: Any = None
        self.sums: Any = None
        self.heads_per_layer: list[int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"sums": self.sums, "heads_per_layer": self.heads_per_layer, "_worker": None, "_stream": None}

    def observer(self, inputs: Any) -> Any:
        """The attention stream, riding on the predictions' forward pass (built on the first batch)."""
        if self._stream is None:
            from ..attention import AttentionStream

            worker = self._worker
            assert worker is not None
            self._stream = AttentionStream(*_recorders(worker), probe=inputs, n_strata=worker.n_strata,
                                           n_boot=worker.n_boot, seed=worker.seed, batch_size=worker.batch_size)
            self.sums, self.heads_per_layer = self._stream.sums, self._stream.heads_per_layer
        return self._stream

    def update(self, batch: Batch) -> None:
        """Fold in the rows' values, read on the forward pass that computed ``batch``'s predictions."""
        self.observer(batch.inputs).add(batch.observed["attention"], batch.strata, batch.rows)

    def close(self) -> None:
        if self.sums is not None:
            self.sums.finish()

    def merge(self, other: _AttentionSums) -> _AttentionSums:
        if other.sums is not None:
            if self.sums is None:  # this shard had no rows, so no attention layout yet
                self.sums, self.heads_per_layer = other.sums, other.heads_per_layer
            else:
                self.sums.merge(other.sums)
        return self


def _recorders(worker: Worker) -> tuple[Any, Any]:
    """Both models' attention recorders, built once per worker."""
    if "attention" not in worker.cache:
        from ..attention_capture import AttentionRecorder

        worker.cache["attention"] = (AttentionRecorder(worker.dense.module, device=worker.device),
                                     AttentionRecorder(worker.ticket.module, device=worker.device))
    return worker.cache["attention"]


class Attention(Analysis):
    name = "attention"
    gates = {"max_group_entropy_shift": "group_entropy_shift"}
    summary = "attention entropy per layer x head and group (models with attention layers)"
    order = 30
    weight_wise = "per-head attention comparisons pair each ticket head with the dense model's"
    template = "_attention.html.j2"
    schema = {"type": "object", "required": ["source", "rows", "layers", "heads", "summary", "overall", "groups"]}

    def runs_by_default(self, modality: Any) -> bool:
        """Not by default for language models: a second pass over every prompt with eager attention costs about half
        the scoring again (``--analyses benchmark,metrics,attention`` asks for it)."""
        return modality.name != "choice"

    def unavailable(self, *, dense: Any, ticket: Any, modality: Any) -> str | None:
        from ..attention_capture import attention_source

        if modality.name == "choice" and not modality.has_prompts:
            return ("reads each item's prompt, and pairs of whole sentences (--task pair, CrowS-Pairs) have none "
                    "(the sentences follow the BOS token alone)")
        if attention_source(dense.module) is not None:
            return None
        return (f"needs a model with attention layers (a Hugging Face model, nn.MultiheadAttention, or a "
                f"module implementing ticketaudit's AttentionAdapter); '{dense.source}' has none")

    def accumulator(self, worker: Worker, planned: Any) -> _AttentionSums:
        return _AttentionSums(worker)

    def finish(self, state: _AttentionSums, context: FinishContext) -> Any:
        from ..attention import attention_from_sums
        from ..attention_capture import attention_source

        found = attention_source(context.audit.dense.module)
        assert found is not None and state.sums is not None and state.heads_per_layer is not None
        ticket = context.audit.ticket
        return attention_from_sums(context.settings, state.sums, ticket=ticket.module, ticket_mask=ticket.mask,
                                   source=found[0], recorded_names=found[1], heads_per_layer=state.heads_per_layer)

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        if not result.pruned_heads:
            return []
        return [f"The ticket pruned {result.pruned_heads} attention head(s) entirely; they are reported as pruned, "
                "not as entropy 0."]

    def why_not_evaluated(self, result: Any, key: str) -> str:
        return (f"no group is large enough, with attention entropies on both models, to estimate the shift that "
                f"{key} gates")

    def candidates(self, result: Any, policy: Any) -> list[Any]:
        """Per group (``max_group_entropy_shift``): its change in attention entropy minus the rest's, either way."""
        if policy.max_group_entropy_shift is None:
            return []
        from ..candidates import replicate_candidate

        out = []
        for group in result.groups:
            if group.insufficient or not math.isfinite(group.interaction.value):
                continue
            candidate = replicate_candidate(
                f"group_entropy_shift:{group.group}", "Attention-entropy change of the group minus the rest's",
                group.group, "attention_entropy", group.interaction.value, policy.max_group_entropy_shift,
                result.interaction_replicates[group.group])
            out.append(dataclasses.replace(candidate, two_sided=True))
        return out


ANALYSIS = Attention()
