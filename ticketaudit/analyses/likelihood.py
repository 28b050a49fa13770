"""``--task likelihood``: loss per token (and perplexity) of both language models per group, the paired change, and
each group's change beyond the rest of the data's (the excess), from one stratified bootstrap over texts.

A group's loss per token is its texts' summed negative log-likelihood over their summed tokens (a ratio of sums:
long texts weigh by their tokens, as a corpus perplexity does). The texts are resampled within their strata (the
intersections of the sensitive values), both models' values of a text together (paired), so every group and its
complement are read from the same replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Groups
from . import stats
from .base import Estimate
from .performance import MetricComparison

NATS = "nats per token"
CI_METHOD = "bootstrap percentile (texts resampled within strata)"


@dataclass(frozen=True, kw_only=True)
class GroupLoss:
    """One group's (or all texts', ``overall``) loss per token and perplexity under both models."""

    group: str
    attribute: str
    n: int
    tokens: int
    insufficient: bool
    loss: MetricComparison
    perplexity: MetricComparison
    excess: Estimate | None
    """The group's loss change minus its complement's (None for ``overall``)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group, "attribute": self.attribute, "n": self.n, "positives": 0,
                               "tokens": self.tokens, "insufficient": self.insufficient,
                               "metrics": {"loss_per_token": self.loss.to_dict(),
                                           "perplexity": self.perplexity.to_dict()}}
        if self.excess is not None:
            out["excess_loss_increase"] = self.excess.to_dict()
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class LikelihoodResult:
    """Per-group loss per token of both models on the audited texts."""

    overall: GroupLoss
    subgroups: tuple[GroupLoss, ...]
    texts: int
    windowed: int
    """Texts longer than the model's length, scored in rolling windows."""
    limit: int
    prefix: str
    excess_replicates: dict[str, np.ndarray] = field(repr=False)
    """Per group: the bootstrap replicates of its excess loss increase (for the policy checks)."""

    def to_dict(self) -> dict[str, Any]:
        return {"unit": NATS, "texts": self.texts, "tokens": self.overall.tokens, "windowed": self.windowed,
                "limit": self.limit, "prefix_token": self.prefix, "overall": self.overall.to_dict(),
                "groups": [g.to_dict() for g in self.subgroups]}


def analyse_likelihood(loglik_dense: np.ndarray, loglik_ticket: np.ndarray, tokens: np.ndarray, groups: Groups, *,
                       n_boot: int, seed: int, confidence: float, min_group_size: int, windowed: int = 0,
                       limit: int = 0, prefix: str = "") -> LikelihoodResult:
    """Every group's loss per token under both models, with paired bootstrap intervals (see the module)."""
    members = _membership(groups)  # (texts, groups + overall)
    weights = np.ones(len(tokens))
    point = _ratios(weights[None, :], loglik_dense, loglik_ticket, tokens, members)
    replicates = [_ratios(drawn, loglik_dense, loglik_ticket, tokens, members)
                  for drawn in _resampled(groups.stratum_of_row, n_boot=n_boot, seed=seed)]
    reps = {key: np.concatenate([r[key] for r in replicates]) for key in point}
    sizes = members.sum(axis=0).astype(int)
    token_sums = (tokens[:, None] * members).sum(axis=0).astype(int)
    overall_index = members.shape[1] - 1
    out, excess_replicates = [], {}
    for index, group in enumerate([*groups.groups, None]):
        excess = None
        if group is not None:
            rest = _complement_change(reps, index, overall_index, token_sums)
            low, high = stats.percentile_interval(rest, confidence=confidence)
            value = float(_complement_change(point, index, overall_index, token_sums)[0])
            excess = Estimate(value, (float(low), float(high)), stats.se_p_value(value, rest))
            excess_replicates[group.name] = rest
        size = dict(domain=int(token_sums[index]), insufficient=bool(sizes[index] < min_group_size))
        dense, ticket = float(point["dense"][0, index]), float(point["ticket"][0, index])
        loss = _comparison(dense, ticket, reps["dense"][:, index], reps["ticket"][:, index],
                           confidence=confidence, **size)
        perplexity = _comparison(float(np.exp(dense)), float(np.exp(ticket)), np.exp(reps["dense"][:, index]),
                                 np.exp(reps["ticket"][:, index]), confidence=confidence, **size)
        out.append(GroupLoss(group="overall" if group is None else group.name,
                             attribute="" if group is None else group.attribute, n=int(sizes[index]),
                             tokens=size["domain"], insufficient=size["insufficient"], loss=loss,
                             perplexity=perplexity, excess=excess))
    return LikelihoodResult(overall=out[-1], subgroups=tuple(out[:-1]), texts=len(tokens), windowed=windowed,
                            limit=limit, prefix=prefix, excess_replicates=excess_replicates)


def _membership(groups: Groups) -> np.ndarray:
    """(texts, groups + 1) 0/1 matrix: each group's texts, then every text (``overall``)."""
    strata = groups.stratum_of_row
    columns = [np.isin(strata, np.asarray(g.strata)) for g in groups.groups] + [np.ones(len(strata), dtype=bool)]
    return np.stack(columns, axis=1).astype(np.float64)


def _ratios(weights: np.ndarray, loglik_dense: np.ndarray, loglik_ticket: np.ndarray, tokens: np.ndarray,
            members: np.ndarray) -> dict[str, np.ndarray]:
    """(replicates, groups) loss per token of both models and their change, from each text's weight (its draws)."""
    counted = weights @ (tokens[:, None] * members)
    with np.errstate(invalid="ignore", divide="ignore"):
        dense = -(weights @ (loglik_dense[:, None] * members)) / counted
        ticket = -(weights @ (loglik_ticket[:, None] * members)) / counted
    return {"dense": dense, "ticket": ticket, "delta": ticket - dense, "tokens": counted,
            "dense_sum": dense * counted, "ticket_sum": ticket * counted}


def _complement_change(values: dict[str, np.ndarray], index: int, overall: int, token_sums: np.ndarray) -> np.ndarray:
    """Per replicate: the group's loss change minus that of every other text (NaN when no text is left)."""
    rest_tokens = values["tokens"][:, overall] - values["tokens"][:, index]
    with np.errstate(invalid="ignore", divide="ignore"):
        rest_delta = ((values["ticket_sum"][:, overall] - values["ticket_sum"][:, index])
                      - (values["dense_sum"][:, overall] - values["dense_sum"][:, index])) / rest_tokens
    return values["delta"][:, index] - np.where(rest_tokens > 0, rest_delta, np.nan)


def _resampled(strata: np.ndarray, *, n_boot: int, seed: int) -> Any:
    """Chunks of (replicates, texts) draw counts: each stratum's texts resampled with replacement."""
    ones = np.ones(len(strata), dtype=np.int64)
    yield from stats.stratified_multinomial(ones, strata, n_strata=int(strata.max()) + 1, n_boot=n_boot, seed=seed)


def _comparison(dense: float, ticket: float, dense_reps: np.ndarray, ticket_reps: np.ndarray, *, confidence: float,
                domain: int, insufficient: bool) -> MetricComparison:
    """Both models' value with their intervals and the paired change (ticket - dense) with its interval and p-value."""
    delta_reps = ticket_reps - dense_reps

    def bounds(replicates: np.ndarray) -> tuple[float, float]:
        low, high = stats.percentile_interval(replicates, confidence=confidence)
        return float(low), float(high)

    return MetricComparison(dense=dense, ticket=ticket, delta=ticket - dense, ci=bounds(delta_reps), ci_method=CI_METHOD,
                            p_value=float(stats.se_p_value(ticket - dense, delta_reps)), dense_ci=bounds(dense_reps),
                            ticket_ci=bounds(ticket_reps), domain=domain, insufficient=insufficient)
