"""Captum attributions of both models on a stratified sample: what each relies on, overall and per group."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._validation import fail
from ..base import Analysis, AuditContext, Batch, FinishContext, Worker


@dataclass(frozen=True)
class _Planned:
    take: np.ndarray
    """Rows to sample per stratum."""
    target: str
    width: int


class _Sample:
    """The stratified row sample and the input moments (for proxy columns), over batches and shards."""

    def __init__(self, planned: _Planned, *, seed: int, n_strata: int) -> None:
        from ..attributions import ProxyMoments, RowSample

        self.target = planned.target
        self.sample = RowSample(take=planned.take, seed=seed, width=planned.width)
        self.moments = ProxyMoments(n_strata=n_strata, width=planned.width)

    def update(self, batch: Batch) -> None:
        targets = batch.labels if self.target == "label" else np.argmax(batch.proba_dense, 1)
        self.sample.update(rows=batch.rows, strata=batch.strata, features=batch.inputs, targets=targets)
        self.moments.update(batch.inputs, batch.strata)

    def merge(self, other: _Sample) -> _Sample:
        self.sample.merge(other.sample)
        self.moments.merge(other.moments)
        return self


class Attributions(Analysis):
    name = "attributions"
    summary = "Captum attributions of both models: agreement and reliance on sensitive and proxy columns"
    order = 40
    template = "_attributions.html.j2"
    schema = {"type": "object", "required": ["method", "target", "sample_rows", "features", "overall", "groups"]}

    def unavailable(self, *, dense: Any, ticket: Any, modality: Any) -> str | None:
        if modality.attributable:
            return None
        return (f"is not available for {modality.name} models in this version (metrics, disagreement, attention and "
                "compression run on them)")

    def plan(self, context: AuditContext) -> _Planned:
        from ..attributions import check_proxies, sample_sizes

        settings = context.attribution
        if settings.rows is not None and settings.rows > context.total_rows:
            fail(f"--attribution-rows {settings.rows} is more than the {context.total_rows} rows of the data. "
                 "Ask for fewer rows (or leave it out: 2,000 or all rows, whichever is smaller).")
        check_proxies(settings, context.modality.column_of_input)
        return _Planned(sample_sizes(context.population, settings.sample_rows), settings.target,
                        context.modality.width)

    def accumulator(self, worker: Worker, planned: _Planned) -> _Sample:
        return _Sample(planned, seed=worker.seed, n_strata=worker.n_strata)

    def finish(self, state: _Sample, context: FinishContext) -> Any:
        from ..attributions import attributions_from_sample

        audit = context.audit
        return attributions_from_sample(
            context.settings, state.sample, state.moments, dense=audit.dense.module, ticket=audit.ticket.module,
            column_of_input=audit.modality.column_of_input, sensitive=list(audit.sensitive), settings=audit.attribution,
            batch_size=audit.batch_size, device=audit.device)

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        if any(c in context.audit.modality.column_of_input for c in context.audit.sensitive):
            return []
        return ["No sensitive column is a model input, so reliance on sensitive columns is not defined; the "
                "attribution section reports proxies instead."]

    def candidates(self, result: Any, policy: Any) -> list[Any]:
        """``max_sensitive_reliance_increase``: the rise in the share of attribution on the sensitive columns."""
        share = result.overall.sensitive_share
        if policy.max_sensitive_reliance_increase is None or not math.isfinite(share.delta):
            return []
        from ...checks import replicate_candidate

        return [replicate_candidate("sensitive_reliance_increase",
                                    "Rise in the share of attribution on the sensitive columns", None,
                                    "attribution_share", share.delta, policy.max_sensitive_reliance_increase,
                                    result.sensitive_replicates)]


ANALYSIS = Attributions()
