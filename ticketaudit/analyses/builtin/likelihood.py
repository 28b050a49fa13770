"""``--task likelihood``: a language model's loss per token and perplexity per group, both models and the paired
change, and each group's rise beyond the rest of the texts (gated by ``max_group_excess_loss_increase``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base import Analysis, FinishContext


@dataclass(frozen=True, eq=False, kw_only=True)
class TextScores:
    """Both models' summed log-likelihood and the tokens scored, per text, with the texts' groups."""

    dense: Any
    ticket: Any
    tokens: Any
    groups: Any
    windowed: int
    limit: int
    prefix: str


class Likelihood(Analysis):
    name = "likelihood"
    summary = "loss per token and perplexity of both language models per group on texts (--task likelihood)"
    order = 8
    template = "_likelihood.html.j2"
    schema = {"type": "object", "required": ["unit", "texts", "tokens", "overall", "groups"]}

    def runs_by_default(self, modality: Any) -> bool:
        return getattr(modality, "name", None) == "likelihood"

    def unavailable(self, *, dense: Any, ticket: Any, modality: Any) -> str | None:
        return None if modality.name == "likelihood" else "needs --task likelihood (texts scored by a language model)"

    def finish(self, state: TextScores, context: FinishContext) -> Any:
        from ..likelihood import analyse_likelihood

        settings = context.settings
        return analyse_likelihood(state.dense, state.ticket, state.tokens, state.groups, n_boot=settings.n_boot,
                                  seed=settings.seed, confidence=settings.confidence,
                                  min_group_size=settings.min_group_size, windowed=state.windowed,
                                  limit=state.limit, prefix=state.prefix)

    def candidates(self, result: Any, policy: Any) -> list[Any]:
        """Each group large enough to gate: its rise in loss per token beyond the rest of the texts'."""
        from ..candidates import replicate_candidate

        return [replicate_candidate(f"excess_loss_increase:{g.group}",
                                    "Rise in loss per token beyond the rest of the texts' (ticket - dense, nats)",
                                    g.group, "loss_per_token", g.excess.value, policy.max_group_excess_loss_increase,
                                    result.excess_replicates[g.group])
                for g in result.subgroups if not g.insufficient and g.excess is not None]

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        out = []
        small = [g.group for g in result.subgroups if g.insufficient]
        if small:
            out.append(f"{len(small):,} group(s) have fewer than {context.settings.min_group_size} texts and are "
                       f"reported but not gated: {', '.join(small[:10])}{', ...' if len(small) > 10 else ''}.")
        if result.windowed:
            out.append(f"{result.windowed:,} text(s) are longer than the model's {result.limit} tokens and were "
                       "scored in rolling windows (every token once, after as many of the tokens before it as fit), "
                       "as lm-evaluation-harness's loglikelihood_rolling does.")
        return out

    def schema_properties(self) -> dict[str, Any]:
        return {"likelihood": self.schema}

    def document(self, result: Any, audit: Any) -> dict[str, Any]:
        """``likelihood``, and ``subgroups``: each group's loss and perplexity as the report's groups list them."""
        statuses = {c.group: c.status for c in audit.checks if c.id.startswith("excess_loss_increase:")}
        subgroups = [{**g.to_dict(), "status": "insufficient" if g.insufficient else statuses.get(g.group, "pass")}
                     for g in result.subgroups]
        return {"likelihood": result.to_dict(), "subgroups": subgroups}


ANALYSIS = Likelihood()
