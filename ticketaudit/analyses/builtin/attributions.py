"""Captum attributions of both models on a stratified sample: what each relies on, overall and per group."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._validation import fail
from ..base import Analysis, AuditContext, Batch, FinishContext, Worker

if TYPE_CHECKING:
    import numpy as np

TEXT_METHODS = ("integrated-gradients", "layer-integrated-gradients", "input-x-gradient", "saliency")
"""Methods that explain text through the token-embedding layer (Captum's layer variants)."""
TEXT_BATCH = 16
"""Rows per attribution batch on text, fixed (not --batch-size): float32 attributions vary in their last bits
with the batch, and speed settings never change an answer."""



@dataclass(frozen=True)
class _Planned:
    take: np.ndarray
    """Rows to sample per stratum."""
    target: str
    width: int
    proxies: bool
    """Whether to keep input moments (proxy columns are found among numeric model inputs)."""


class _Sample:
    """The stratified row sample and the input moments (for proxy columns), over batches and shards."""

    def __init__(self, planned: _Planned, *, seed: int, n_strata: int, modality: Any) -> None:
        from ..attributions import ProxyMoments, RowSample

        self.target, self.modality = planned.target, modality
        self.sample = RowSample(take=planned.take, seed=seed, width=planned.width)
        self.moments = ProxyMoments(n_strata=n_strata, width=planned.width) if planned.proxies else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "modality": None}

    def update(self, batch: Batch) -> None:
        import numpy as np

        assert self.modality is not None
        targets = batch.labels if self.target == "label" else np.argmax(batch.proba_dense, 1)
        values = self.modality.attribution_values(batch.frame, batch.inputs)
        self.sample.update(rows=batch.rows, strata=batch.strata, features=values, targets=targets)
        if self.moments is not None:
            self.moments.update(batch.inputs, batch.strata)

    def merge(self, other: _Sample) -> _Sample:
        self.sample.merge(other.sample)
        if self.moments is not None and other.moments is not None:
            self.moments.merge(other.moments)
        return self


class Attributions(Analysis):
    name = "attributions"
    gates = {"max_sensitive_reliance_increase": "sensitive_reliance_increase"}
    summary = ("Captum attributions of both models: agreement, and reliance on sensitive columns and proxies "
               "(tabular), identity terms (text), the words naming people in prompts (language models), or pixel "
               "maps per group (images)")
    order = 40
    template = "_attributions.html.j2"
    schema = {"type": "object", "required": ["method", "target", "sample_rows", "features", "overall", "groups"]}

    def unavailable(self, *, dense: Any, ticket: Any, modality: Any) -> str | None:
        if modality.attributable:
            return None
        if modality.name == "choice":
            return "is not available for sentence pairs (--task pair, CrowS-Pairs): they have no prompt to attribute"
        return f"is not available for {modality.name} models"

    def runs_by_default(self, modality: Any) -> bool:
        """Not on language models unless named: even gradient x activation (their default method) explains only
        about 35 BBQ items a minute on a 135M model on 2 CPU cores, which a plain report should not pay for."""
        return self.default and getattr(modality, "name", "") != "choice"

    def plan(self, context: AuditContext) -> _Planned:
        from ..attributions import check_proxies, sample_sizes

        settings = context.attribution
        if settings.rows is not None and settings.rows > context.total_rows:
            fail(f"--attribution-rows {settings.rows} is more than the {context.total_rows} rows of the data. "
                 "Ask for fewer rows (or leave it out: 2,000 or all rows, whichever is smaller).")
        modality = context.modality
        if modality.attribution_unit == "pixel":
            from ..image_attributions import IMAGE_METHODS

            if settings.method not in IMAGE_METHODS:
                fail(f"--attribution-method {settings.method} cannot explain image models; choose one of "
                     f"{', '.join(IMAGE_METHODS)}.")
            if settings.proxies:
                fail("--proxies names model input columns; an image model reads one image column. Leave --proxies out.")
        elif modality.attribution_unit == "column":
            check_proxies(settings, modality.column_of_input)
        elif settings.method not in TEXT_METHODS:
            fail(f"--attribution-method {settings.method} cannot explain text models; choose one of "
                 f"{', '.join(TEXT_METHODS)} (they attribute the token-embedding layer).")
        elif settings.proxies:
            fail("--proxies names model input columns; a text model reads one text column. Use --identity-terms FILE "
                 "for the words that name a group.")
        return _Planned(sample_sizes(context.population, settings.sample_rows), settings.target, modality.attribution_width,
                        proxies=modality.attribution_unit == "column")

    def accumulator(self, worker: Worker, planned: _Planned) -> _Sample:
        return _Sample(planned, seed=worker.seed, n_strata=worker.n_strata, modality=worker.modality)

    def finish(self, state: _Sample, context: FinishContext) -> Any:
        audit = context.audit
        if audit.modality.attribution_unit == "word":
            return self._words(state, context)
        if audit.modality.attribution_unit == "pixel":
            return self._pixels(state, context)
        from ..attributions import attributions_from_sample, within_budget

        sample, settings, plan = self._budgeted(within_budget, state, context)
        result = attributions_from_sample(
            context.settings, sample, state.moments, dense=audit.dense.module, ticket=audit.ticket.module,
            column_of_input=audit.modality.column_of_input, sensitive=list(audit.sensitive), settings=settings,
            batch_size=audit.batch_size, device=audit.device, precision=audit.precision)
        return _with_budget(result, plan, settings=audit.attribution)

    @staticmethod
    def _budgeted(within_budget: Any, state: _Sample, context: FinishContext) -> tuple[Any, Any, Any]:
        """The sample cut to ``--attribution-budget`` (unless ``--attribution-rows`` fixed it) and the settings with
        the steps the budget leaves; the plan is None when the rows were given."""
        import dataclasses

        audit = context.audit
        if audit.attribution.rows is not None:
            return state.sample, audit.attribution, None
        sample, plan = within_budget(state.sample, audit.population, dense=audit.dense.module, modality=audit.modality,
                                     settings=audit.attribution, precision=audit.precision, seed=audit.seed)
        context.say(f"Attributing {plan.rows:,} rows on both models ({audit.attribution.method}, {plan.steps} steps): "
                    f"about {plan.seconds / 60:.1f} min on 2 cores")
        return sample, dataclasses.replace(audit.attribution, steps=plan.steps), plan

    def _words(self, state: _Sample, context: FinishContext) -> Any:
        """Text: LayerIG (or another gradient method) on both models' token embeddings, summed to words."""
        from ..text_attributions import text_attributions_from_sample, within_budget

        audit = context.audit
        if audit.modality.name == "choice":
            return self._prompt_words(state, context)
        sample, settings, plan = self._budgeted(within_budget, state, context)
        result = text_attributions_from_sample(
            context.settings, sample, population=audit.population, dense=audit.dense.module,
            ticket=audit.ticket.module, tokenizer=audit.modality.tokenizer, max_length=audit.modality.max_length,
            settings=settings, batch_size=TEXT_BATCH, device=audit.device,
            truncation=getattr(audit.modality, "truncation", "head"))
        return _with_budget(result, plan, settings=audit.attribution)

    def _prompt_words(self, state: _Sample, context: FinishContext) -> Any:
        """Language models: the prompt words that drove each sampled item's answer, on both models."""
        from ..prompt_attributions import prompt_attributions_from_sample, within_budget

        audit = context.audit
        sample, settings, plan = self._budgeted(within_budget, state, context)
        result = prompt_attributions_from_sample(
            context.settings, sample, population=audit.population, dense=audit.dense.module,
            ticket=audit.ticket.module, modality=audit.modality, settings=settings, device=audit.device)
        return _with_budget(result, plan, settings=audit.attribution)

    def _pixels(self, state: _Sample, context: FinishContext) -> Any:
        """Images: pixel attributions of both models (Captum), compared as maps per image and per group."""
        from ..image_attributions import image_attributions_from_sample, within_budget

        audit = context.audit
        sample, settings, plan = self._budgeted(within_budget, state, context)
        result = image_attributions_from_sample(
            context.settings, sample, population=audit.population, dense=audit.dense.module,
            ticket=audit.ticket.module, modality=audit.modality, settings=settings, device=audit.device,
            precision=audit.precision, thumbnails=audit.thumbnails)
        return _with_budget(result, plan, settings=audit.attribution)

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        return [*_budget_notes(result), *self._share_notes(result, context)]

    def _share_notes(self, result: Any, context: FinishContext) -> list[str]:
        if result.extra.get("unit") == "pixel":
            return []
        if result.extra.get("unit") == "word":
            found = result.extra["identity_terms_found"]
            return [] if found else [
                "No identity term occurs in the attributed rows, so the share of attribution on identity terms is not "
                "defined; give the words that name your groups with --identity-terms FILE."]
        if any(c in context.audit.modality.column_of_input for c in context.audit.sensitive):
            return []
        return ["No sensitive column is a model input, so reliance on sensitive columns is not defined; the "
                "attribution section reports proxies instead."]

    def why_not_evaluated(self, result: Any, key: str) -> str:
        if result.extra.get("unit") == "pixel":
            return f"pixel attributions have no sensitive input whose share of attribution {key} could gate"
        if result.extra.get("unit") == "word":
            return (f"no identity term occurs in the attributed rows, so the share of attribution on them that {key} "
                    "gates is not defined; give the words that name your groups with --identity-terms FILE")
        return (f"no sensitive column is a model input, so the share of attribution on sensitive columns that {key} "
                "gates is not defined (the attribution section reports proxies instead)")

    def candidates(self, result: Any, policy: Any) -> list[Any]:
        """``max_sensitive_reliance_increase``: the rise in the share of attribution on the sensitive columns."""
        share = result.overall.sensitive_share
        if policy.max_sensitive_reliance_increase is None or not math.isfinite(share.delta):
            return []
        from ..candidates import replicate_candidate

        return [replicate_candidate("sensitive_reliance_increase",
                                    "Rise in the share of attribution on the sensitive columns", None,
                                    "attribution_share", share.delta, policy.max_sensitive_reliance_increase,
                                    result.sensitive_replicates)]


def _with_budget(result: Any, plan: Any, *, settings: Any) -> Any:
    """The result with what the time budget decided (``budget`` in the JSON): rows, steps, estimated seconds."""
    import dataclasses

    if plan is None:
        return result
    budget = {"seconds": settings.budget_seconds, "estimated_seconds": round(plan.seconds, 1), "rows": plan.rows,
              "steps": plan.steps, "requested_steps": settings.steps, "below_floor": plan.floor_missed}
    return dataclasses.replace(result, extra={**result.extra, "budget": budget})


def _budget_notes(result: Any) -> list[str]:
    budget = result.extra.get("budget")
    if not budget:
        return []
    notes = []
    if budget["steps"] < budget["requested_steps"]:
        notes.append(f"To fit --attribution-budget {budget['seconds']:g} s, {result.method} ran {budget['steps']} steps "
                     f"instead of {budget['requested_steps']} (its convergence delta is reported).")
    if budget["below_floor"]:
        notes.append(f"Only {budget['rows']} rows fit --attribution-budget {budget['seconds']:g} s on these models, so "
                     "the per-group attribution comparison rests on very few rows; raise --attribution-budget, give "
                     "--attribution-rows, or choose a cheaper --attribution-method (saliency).")
    return notes


ANALYSIS = Attributions()
