"""Attention entropy of dense model and ticket per layer x head x group, streamed.

Per query, H = -sum_j A_ij log A_ij over real (non-padding) keys, divided by log(number of real
keys) so that 1 is uniform attention and 0 attention on a single key whatever the length; a row's
value is the mean over its real queries. Each batch is reduced to per-row values at once and folded
into per-stratum Poisson-bootstrap sums (``streaming.BootstrapSums``): memory does not grow with
the rows. Jensen-Shannon divergence (bits) between the two models' attention is streamed the same way.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import fail
from ..inputs import TokenInputs
from ..llm.scoring import ChoiceInputs, right_padded
from ..tickets.mask import Mask
from . import stats
from .attention_capture import AttentionRecorder, LayerAttention
from .base import AnalysisInputs, AnalysisSettings, Estimate, interval, number
from .predict import Features, in_row_order, row_batches
from .streaming import BootstrapSums

MEMORY_BUDGET_BYTES = 256 * 2**20
"""Attention maps of both models (and their float32 reduction) held for one batch at most; batches shrink to
fit, long texts to fewer rows (results do not change)."""
MAP_TENSOR_BYTES = 32 * 2**20
"""One layer's maps of one model for a batch at most: glibc serves blocks up to 32 MiB from memory it keeps,
larger ones are mapped fresh from the system on every allocation (page faults cost more than the rows save)."""
ATTENTION_STREAM = 0xA77E
LN2 = math.log(2.0)
VALUE_PROJECTIONS = ("value", "v_lin", "v_proj", "value_proj")
OUTPUT_PROJECTIONS = ("attention.output.dense", "out_lin", "o_proj", "attn.c_proj", "attention.dense")


def _real(layer: LayerAttention, dtype: torch.dtype) -> torch.Tensor:
    """A ``dtype`` copy of the probabilities with padding keys at 0 (a masked softmax already gives 0
    there, so only adapters' probabilities are masked)."""
    probs = layer.probs.to(dtype, copy=True)
    if not layer.padding_zeroed and not bool(layer.key_valid.all()):
        probs.mul_(layer.key_valid)
    return probs


def _query_entropy(probs: torch.Tensor) -> torch.Tensor:
    """(rows, heads, queries): Shannon entropy in nats, -sum p log p with 0 log 0 = 0 (a p below the
    dtype's smallest normal number contributes less than 1e-300 and is taken as 0; one scratch tensor,
    2x faster than ``special.entr``)."""
    scratch = probs.clamp(min=torch.finfo(probs.dtype).tiny)
    scratch.log_()
    scratch.mul_(probs)
    return scratch.sum(dim=-1).neg_()


def _normalise(entropy: torch.Tensor, layer: LayerAttention) -> torch.Tensor:
    """Entropy / log(number of real keys); 0 where a query has a single key."""
    keys = layer.key_valid.sum(dim=-1).to(entropy.dtype)
    return entropy * torch.where(keys > 1, 1 / torch.log(keys.clamp(min=2)), torch.zeros_like(keys))


def _mean_over_queries(per_query: torch.Tensor, query_valid: torch.Tensor) -> torch.Tensor:
    weights = query_valid[:, None, :].to(per_query.dtype)
    return (per_query * weights).sum(dim=-1) / weights.sum(dim=-1).clamp(min=1.0)


def _compare(dense: LayerAttention, ticket: LayerAttention, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(rows, heads) each: both models' normalised entropy and their Jensen-Shannon divergence in bits,
    JS(P, Q) = H((P + Q) / 2) - (H(P) + H(Q)) / 2, sharing one entropy pass per distribution."""
    p, q = _real(dense, dtype), _real(ticket, dtype)
    entropy_p, entropy_q = _query_entropy(p), _query_entropy(q)
    entropy_m = _query_entropy(p.add_(q).mul_(0.5))
    js = ((entropy_m - (entropy_p + entropy_q) / 2) / LN2).clamp(min=0.0, max=1.0)
    queries = dense.query_valid
    return (_mean_over_queries(_normalise(entropy_p, dense), queries),
            _mean_over_queries(_normalise(entropy_q, ticket), queries), _mean_over_queries(js, queries))


def normalised_entropy(layer: LayerAttention) -> torch.Tensor:
    """(rows, heads): mean over real queries of H / log(real keys); 0 where a query has one key."""
    probs = _real(layer, layer.probs.dtype)
    return _mean_over_queries(_normalise(_query_entropy(probs), layer), layer.query_valid)


def js_divergence(first: LayerAttention, second: LayerAttention) -> torch.Tensor:
    """(rows, heads): mean over real queries of the Jensen-Shannon divergence (bits, in [0, 1])."""
    return _compare(first, second, first.probs.dtype)[2]


def compare_layer(dense: LayerAttention, ticket: LayerAttention) -> tuple[torch.Tensor, ...]:
    """(rows, heads) each: dense entropy, ticket entropy (normalised) and JS divergence, in float32
    (the values are reported as float32 anyway): every operation is per row, so a row's values do not
    depend on its batch."""
    return _compare(dense, ticket, torch.float32)


@dataclass(frozen=True, kw_only=True)
class HeadComparison:
    """One layer x head: entropy of both models, the paired change, and JS divergence between them."""

    layer: int
    head: int
    pruned: bool
    dense: float
    ticket: float
    delta: Estimate
    js: float
    significant: str  # "fell", "rose" or "" (Holm across heads)

    def to_dict(self) -> dict[str, Any]:
        if self.pruned:
            return {"layer": self.layer, "head": self.head, "pruned": True, "dense": number(self.dense),
                    "ticket": None, "delta": None, "ci": [None, None], "p_value": None, "js": None, "significant": ""}
        return {"layer": self.layer, "head": self.head, "pruned": False, "dense": number(self.dense),
                "ticket": number(self.ticket), "delta": number(self.delta.value), "ci": interval(*self.delta.ci),
                "p_value": number(self.delta.p_value), "js": number(self.js), "significant": self.significant}


@dataclass(frozen=True, kw_only=True)
class GroupAttention:
    """A group's head-averaged entropy in both models, its change, and the change relative to the rest."""

    group: str
    attribute: str
    n: int
    insufficient: bool
    dense: Estimate
    ticket: Estimate
    delta: Estimate
    interaction: Estimate
    heads: tuple[tuple[float, float, float, float, float], ...]
    """Per unpruned head, in ``AttentionResult.heads`` order: dense, ticket, delta, ci low, ci high."""

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "attribute": self.attribute, "n": self.n, "insufficient": self.insufficient,
                "dense": self.dense.to_dict(), "ticket": self.ticket.to_dict(), "delta": self.delta.to_dict(),
                "interaction": self.interaction.to_dict(),
                "heads": [{"dense": number(d), "ticket": number(t), "delta": number(x), "ci": interval(lo, hi)}
                          for d, t, x, lo, hi in self.heads]}


@dataclass(frozen=True, eq=False, kw_only=True)
class AttentionResult:
    """Everything the attention section shows; ``interaction_replicates`` feeds the optional policy check."""

    source: str
    layer_names: tuple[str, ...]
    heads_per_layer: tuple[int, ...]
    rows: int
    heads: tuple[HeadComparison, ...]
    overall: GroupAttention
    layer_js: tuple[Estimate, ...]
    fell: int
    rose: int
    groups: tuple[GroupAttention, ...]
    confidence: float
    interaction_replicates: dict[str, np.ndarray] = field(repr=False)

    @property
    def tested_heads(self) -> int:
        return sum(not h.pruned for h in self.heads)

    @property
    def pruned_heads(self) -> int:
        return sum(h.pruned for h in self.heads)

    def to_dict(self) -> dict[str, Any]:
        tested = self.tested_heads
        return {
            "source": self.source, "rows": self.rows, "confidence": self.confidence,
            "entropy": "normalised Shannon entropy per query (1 = uniform over real keys, 0 = one key), "
                       "mean over real queries, then over rows",
            "layers": [{"index": i, "name": name, "heads": h, "js": js.to_dict()}
                       for i, (name, h, js) in enumerate(zip(self.layer_names, self.heads_per_layer, self.layer_js))],
            "heads": [h.to_dict() for h in self.heads],
            "summary": {"tested_heads": tested, "pruned_heads": self.pruned_heads, "fell": self.fell, "rose": self.rose,
                        "share_fell": number(self.fell / tested) if tested else None,
                        "share_rose": number(self.rose / tested) if tested else None},
            "overall": self.overall.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
        }


def pruned_heads(module: nn.Module, mask: Mask, *, source: str, layer_names: list[str],
                 heads_per_layer: list[int]) -> list[list[bool]]:
    """Heads whose value projection rows or output projection columns the ticket's mask removed
    entirely: their output is zero whatever they attend to, so their entropy is not reported."""
    result = [[False] * h for h in heads_per_layer]
    if source == "multihead":
        for layer, name in enumerate(layer_names):
            mha = module.get_submodule(name)
            assert isinstance(mha, nn.MultiheadAttention)
            d = mha.head_dim
            value = mask.get(f"{name}.in_proj_weight")
            value = value[2 * mha.embed_dim:] if value is not None else mask.get(f"{name}.v_proj_weight")
            out = mask.get(f"{name}.out_proj.weight")
            for head in range(heads_per_layer[layer]):
                rows = slice(head * d, (head + 1) * d)
                result[layer][head] = bool((value is not None and not value[rows].any())
                                           or (out is not None and not out[:, rows].any()))
        return result
    if source == "huggingface":
        values = [n for n in mask if n.removesuffix(".weight").endswith(VALUE_PROJECTIONS)]
        outs = [n for n in mask if n.removesuffix(".weight").endswith(OUTPUT_PROJECTIONS)]
        if len(values) != len(heads_per_layer) or len(outs) != len(heads_per_layer):
            return result
        for layer, (value_name, out_name) in enumerate(zip(values, outs)):
            heads = heads_per_layer[layer]
            d = mask[value_name].shape[0] // heads
            for head in range(heads):
                rows = slice(head * d, (head + 1) * d)
                result[layer][head] = bool(not mask[value_name][rows].any() or not mask[out_name][:, rows].any())
    return result


class Abandoned(RuntimeError):
    """A model's pass stopped because the other one failed or ran out of attention layers."""


class LayerPairs:
    """Where both models' forward passes meet, layer by layer. The models take turns (a baton: one computes
    while the other waits, so they never compete for the cores): the dense model computes a layer and hands
    its maps over, the ticket computes the same layer and reduces the pair (``compare_layer``), and only then
    does the dense model go on. So one layer's maps per model are alive at a time. A failure on either side,
    or layer counts that differ, stops both."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._baton = 0
        self._waiting: list[LayerAttention | None] = [None, None]
        self._finished = [False, False]
        self._failed = False
        self.reduced: list[tuple[torch.Tensor, ...]] = []

    def run(self, side: int, recorder: AttentionRecorder, batch: Features) -> torch.Tensor:
        """Run one model (``side`` 0 dense, 1 ticket) on ``batch`` in its turns, handing each layer over."""
        try:
            with self._turn:
                self._wait_for_baton(side)
            logits = recorder.run(batch, on_layer=lambda layer: self._offer(side, layer))[0]
        except BaseException:
            self._finish(side, failed=True)
            raise
        self._finish(side, failed=False)
        with self._turn:
            if self._failed:
                raise Abandoned("the dense model and the ticket returned different numbers of attention layers")
        return logits

    def _wait_for_baton(self, side: int) -> None:
        self._turn.wait_for(lambda: self._baton == side or self._failed)
        if self._failed:
            raise Abandoned("the other model's forward pass stopped")

    def _pass_baton(self, side: int) -> None:
        if not self._finished[1 - side]:
            self._baton = 1 - side
            self._turn.notify_all()

    def _finish(self, side: int, *, failed: bool) -> None:
        with self._turn:
            self._finished[side] = True
            if failed or self._waiting[1 - side] is not None:  # the other side waits for a layer this one lacks
                self._failed = True
            self._baton = 1 - side
            self._turn.notify_all()

    def _offer(self, side: int, layer: LayerAttention) -> None:
        other = 1 - side
        with self._turn:
            waiting = self._waiting[other]
            if waiting is not None:
                self._waiting[other] = None
                try:
                    self.reduced.append(compare_layer(*((layer, waiting) if side == 0 else (waiting, layer))))
                except BaseException:
                    self._failed = True
                    self._turn.notify_all()
                    raise
                del waiting
            elif self._finished[other]:
                self._failed = True
                self._turn.notify_all()
                raise Abandoned("the dense model and the ticket returned different numbers of attention layers")
            else:
                self._waiting[side] = layer
            del layer
            self._pass_baton(side)
            self._wait_for_baton(side)


def _with_threads(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a new thread with the caller's intra-op thread count (a per-thread setting)."""
    torch.set_num_threads(threads)
    return function(*args)


PROBE_TOKENS = 16
"""Tokens of the one text row that reveals the models' attention layout (sizes scale with length squared)."""


def prompt_tokens(features: Features) -> Features:
    """A language model's items as the text rows whose attention is measured: each item's prompt (its context
    tokens, right-padded), causal keys only. Other features as they are."""
    if not isinstance(features, ChoiceInputs):
        return features
    ids, mask = right_padded(list(features.contexts))
    return TokenInputs(input_ids=ids.numpy(), attention_mask=mask.numpy(), limit=2**31)  # padded lengths: each row's


def _probe_row(features: Features) -> Features:
    """One row, a text cut to ``PROBE_TOKENS`` tokens: a long text's every-layer maps would be the run's peak."""
    row = prompt_tokens(features[:1])
    if isinstance(row, TokenInputs):
        return dataclasses.replace(row, input_ids=row.input_ids[:, :PROBE_TOKENS],
                                   attention_mask=row.attention_mask[:, :PROBE_TOKENS])
    return row


class AttentionStream:
    """Both models' attention, reduced per batch to per-row dense entropy, ticket entropy and JS
    divergence per head, folded into per-stratum Poisson-bootstrap sums (mergeable across shards).
    As a ``ForwardObserver`` it rides on the forward pass that computes the predictions."""

    def __init__(self, dense: AttentionRecorder, ticket: AttentionRecorder, *, probe: Features, n_strata: int,
                 n_boot: int, seed: int, batch_size: int) -> None:
        self.dense, self.ticket = dense, ticket
        self.batch_size = batch_size
        probe = _probe_row(probe)
        layers = dense.record(probe)
        ticket.record(probe)
        self.heads_per_layer = [int(layer.probs.shape[1]) for layer in layers]
        if not self.heads_per_layer:
            fail("the model returned no attention probabilities (its layers do not report them); leave attention "
                 "out of --analyses.")
        self.can_go_layer_by_layer = dense.streams and ticket.streams and dense.module is not ticket.module
        """Whether both models can run side by side, meeting at each layer (``LayerPairs``) so that one layer's
        maps per model are alive at a time. Used for batches whose every-layer maps exceed the budget even
        at one row (deep models, long texts); smaller ones run one model after the other, which is faster on
        CPU (no hand-over between threads at every layer)."""
        # Per row: both models' maps (every layer, or one), plus one layer's float32 reduction (p, q, scratch).
        maps = [2 * layer.probs[0].numel() * layer.probs.element_size() for layer in layers]
        reduction = max(3 * layer.probs[0].numel() * 4 for layer in layers)
        self._keys = int(layers[0].probs.shape[-1])
        self._every_layer_bytes = sum(maps) + reduction
        self._one_layer_bytes = max(maps) + reduction
        self._map_bytes = max(maps) // 2
        del layers
        self._text = isinstance(probe, TokenInputs)
        self.sums = BootstrapSums(n_strata=n_strata, width=3 * sum(self.heads_per_layer), n_boot=n_boot, seed=seed,
                                  stream=ATTENTION_STREAM)

    def _scale(self, length: int) -> float:
        """How a row's maps grow with its padded length (quadratically) against the probe's."""
        return (length / self._keys) ** 2 if self._text else 1.0

    def layer_by_layer(self, batch: Features) -> bool:
        """Whether ``batch`` runs layer by layer: holding its every-layer maps would exceed the budget."""
        length = batch.shape[1] if isinstance(batch, TokenInputs) else self._keys
        return self.can_go_layer_by_layer and len(batch) * self._every_layer_bytes * self._scale(length) > \
            MEMORY_BUDGET_BYTES

    def max_rows(self, length: int) -> int:
        """Rows per batch within ``MEMORY_BUDGET_BYTES`` holding every layer's maps, or, where not even one row
        fits, one layer's (then one map within ``MAP_TENSOR_BYTES``): maps grow with a text's length squared."""
        scale = self._scale(length)
        rows = int(MEMORY_BUDGET_BYTES // max(self._every_layer_bytes * scale, 1))
        if rows >= 1 or not self.can_go_layer_by_layer:
            return max(1, rows)
        return max(1, min(int(MEMORY_BUDGET_BYTES // max(self._one_layer_bytes * scale, 1)),
                          int(MAP_TENSOR_BYTES // max(self._map_bytes * scale, 1))))

    def forward(self, batch: Features) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Both models' logits and each row's values (dense entropies, ticket entropies, JS per head)."""
        if self.layer_by_layer(batch):
            pairs = LayerPairs()
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketaudit-dense") as pool:
                dense_run = pool.submit(_with_threads, torch.get_num_threads(), pairs.run, 0, self.dense, batch)
                try:
                    logits_ticket = pairs.run(1, self.ticket, batch)
                except Abandoned as abandoned:
                    try:
                        dense_run.result()
                    except Abandoned:  # both stopped: the ticket's reason says why
                        raise abandoned from None
                    raise  # (a dense error other than Abandoned propagates from result() above)
                logits_dense = dense_run.result()
            compared = pairs.reduced
        else:
            logits_dense, dense_layers = self.dense.run(batch)
            logits_ticket, ticket_layers = self.ticket.run(batch)
            compared = [compare_layer(a, b) for a, b in zip(dense_layers, ticket_layers)]
            del dense_layers, ticket_layers
        values = [torch.cat([layer[k] for layer in compared], dim=1) for k in range(3)]
        # Rounded to float32 like the predictions: the last bits of float64 attention vary with the batch size.
        return logits_dense, logits_ticket, torch.cat(values, dim=1).to("cpu", torch.float32).to(torch.float64).numpy()

    def read(self, batch: Features) -> np.ndarray:
        """Each row's values without the predictions (a language model's answers are scored apart): its prompt
        (``prompt_tokens``), in batches of one padded length each, so a row's values never depend on its batch."""
        tokens = prompt_tokens(batch)
        assert isinstance(tokens, TokenInputs)
        pieces = [(positions, self.forward(part)[2])
                  for positions, part in tokens.batches(tokens=2**62, max_rows=self.max_rows)]
        return in_row_order(pieces, rows=len(tokens))

    def add(self, values: np.ndarray, strata: np.ndarray, rows: np.ndarray) -> None:
        """Fold rows' values (from ``forward``; ids ``rows``, ascending) into the sums."""
        self.sums.update(values, strata, rows)

    def update(self, features: Features, strata: np.ndarray, rows: np.ndarray,
               progress: Callable[[int], None] | None = None) -> None:
        """Add rows (ids ``rows``, ascending), in batches that fit the memory budget."""
        pieces = []
        for positions, batch in row_batches(features, batch_size=self.batch_size, max_rows=self.max_rows):
            pieces.append((positions, self.forward(batch)[2]))
            if progress is not None:
                progress(len(batch))
        self.add(in_row_order(pieces, rows=len(features)), strata, rows)


def stream_attention(dense: AttentionRecorder, ticket: AttentionRecorder, features: Features, *,
                     strata: np.ndarray, n_strata: int, n_boot: int, seed: int, batch_size: int,
                     progress: Callable[[int], None] | None = None) -> tuple[BootstrapSums, list[int]]:
    """One pass of both models over every row; per row and head: dense entropy, ticket entropy, JS divergence."""
    stream = AttentionStream(dense, ticket, probe=features, n_strata=n_strata, n_boot=n_boot, seed=seed,
                             batch_size=batch_size)
    stream.update(features, strata, np.arange(len(features)), progress)
    return stream.sums.finish(), stream.heads_per_layer


def _estimate(value: float, replicates: np.ndarray, confidence: float, *, test: bool) -> Estimate:
    low, high = stats.percentile_interval(replicates, confidence=confidence)
    p = stats.se_p_value(value, replicates) if test else None
    return Estimate(float(value), (float(low), float(high)), p)


@dataclass(frozen=True, eq=False)
class _Heads:
    """Where each head's dense, ticket and JS sums sit in the bootstrap sums, and which heads the ticket kept."""

    total: int
    keep: np.ndarray

    def split(self, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return mean[..., :self.total], mean[..., self.total:2 * self.total], mean[..., 2 * self.total:]

    def averaged(self, mean: np.ndarray) -> np.ndarray:
        """Head-averaged (dense, ticket) over the heads the ticket kept (NaN when it kept none)."""
        dense, ticket, _ = self.split(mean)
        kept = max(1, int(self.keep.sum()))
        pair = np.stack([dense[..., self.keep].sum(axis=-1), ticket[..., self.keep].sum(axis=-1)], axis=-1) / kept
        return pair if self.keep.any() else np.full_like(pair, np.nan)


def summarise_attention(sums: BootstrapSums, inputs: AnalysisSettings, *, source: str, layer_names: list[str],
                        heads_per_layer: list[int], pruned: list[list[bool]]) -> AttentionResult:
    """Point estimates, bootstrap intervals, head significance (Holm) and group interactions."""
    layout = _Heads(total=sum(heads_per_layer), keep=~np.array([p for layer in pruned for p in layer], dtype=bool))
    all_strata = np.arange(inputs.groups.n_strata)
    overall, _ = _group_attention(sums, inputs, layout, "overall", "", all_strata)
    groups, replicates = [], {}
    for group in inputs.groups.groups:
        summary, inter_boot = _group_attention(sums, inputs, layout, group.name, group.attribute,
                                               np.asarray(group.strata))
        groups.append(summary)
        replicates[group.name] = inter_boot
    n, mean, boot = sums.means(all_strata)
    heads, layer_js = _head_comparisons(mean, boot, layout, heads_per_layer, confidence=inputs.confidence)
    return AttentionResult(source=source, layer_names=tuple(layer_names), heads_per_layer=tuple(heads_per_layer),
                           rows=int(n), heads=tuple(heads), overall=overall, layer_js=tuple(layer_js),
                           fell=sum(h.significant == "fell" for h in heads),
                           rose=sum(h.significant == "rose" for h in heads), groups=tuple(groups),
                           confidence=inputs.confidence, interaction_replicates=replicates)


def _group_attention(sums: BootstrapSums, inputs: AnalysisSettings, layout: _Heads, name: str, attribute: str,
                     strata: np.ndarray) -> tuple[GroupAttention, np.ndarray]:
    """One group's head-averaged entropies, their change, and the change minus the rest's (the interaction)."""
    confidence = inputs.confidence
    n, mean, boot = sums.means(strata)
    pair, pair_boot = layout.averaged(mean), layout.averaged(boot)
    delta, delta_boot = pair[1] - pair[0], pair_boot[:, 1] - pair_boot[:, 0]
    if len(strata) < inputs.groups.n_strata:
        _, rest_mean, rest_boot = sums.complement_means(strata)
        rest_pair, rest_pair_boot = layout.averaged(rest_mean), layout.averaged(rest_boot)
        inter = delta - (rest_pair[1] - rest_pair[0])
        inter_boot = delta_boot - (rest_pair_boot[:, 1] - rest_pair_boot[:, 0])
    else:
        inter, inter_boot = float("nan"), np.full(len(boot), np.nan)
    dense_h, ticket_h, _ = layout.split(mean)
    dense_b, ticket_b, _ = layout.split(boot)
    low, high = stats.percentile_interval((ticket_b - dense_b)[:, layout.keep], confidence=confidence)
    heads = tuple((float(d), float(t), float(t - d), float(lo), float(hi))
                  for d, t, lo, hi in zip(dense_h[layout.keep], ticket_h[layout.keep], low, high))
    result = GroupAttention(
        group=name, attribute=attribute, n=int(n), insufficient=n < inputs.min_group_size,
        dense=_estimate(pair[0], pair_boot[:, 0], confidence, test=False),
        ticket=_estimate(pair[1], pair_boot[:, 1], confidence, test=False),
        delta=_estimate(delta, delta_boot, confidence, test=True),
        interaction=_estimate(inter, inter_boot, confidence, test=True), heads=heads)
    return result, inter_boot


def _head_comparisons(mean: np.ndarray, boot: np.ndarray, layout: _Heads, heads_per_layer: list[int], *,
                      confidence: float) -> tuple[list[HeadComparison], list[Estimate]]:
    """Every head's change with its interval and Holm-adjusted p (pruned heads reported as pruned), and each layer's
    mean Jensen-Shannon divergence between the models' attention."""
    dense_h, ticket_h, js_h = layout.split(mean)
    dense_b, ticket_b, js_b = layout.split(boot)
    keep, deltas, delta_boot = layout.keep, ticket_h - dense_h, ticket_b - dense_b
    p_values = np.array([stats.se_p_value(deltas[i], delta_boot[:, i]) for i in range(layout.total)])
    adjusted = np.full(layout.total, np.nan)
    adjusted[keep] = stats.holm(p_values[keep])
    lows, highs = stats.percentile_interval(delta_boot, confidence=confidence)
    heads, layer_js, index = [], [], 0
    for layer, count in enumerate(heads_per_layer):
        cols = np.arange(index, index + count)
        kept_cols = cols[keep[cols]]
        js_rep = js_b[:, kept_cols].mean(axis=1) if kept_cols.size else np.full(len(js_b), np.nan)
        js_value = float(js_h[kept_cols].mean()) if kept_cols.size else float("nan")
        layer_js.append(_estimate(js_value, js_rep, confidence, test=False))
        for head, col in enumerate(cols):
            moved = keep[col] and adjusted[col] < 1 - confidence
            heads.append(HeadComparison(
                layer=layer, head=head, pruned=not keep[col], dense=float(dense_h[col]), ticket=float(ticket_h[col]),
                delta=Estimate(float(deltas[col]), (float(lows[col]), float(highs[col])), float(adjusted[col])),
                js=float(js_h[col]), significant=("fell" if deltas[col] < 0 else "rose") if moved else ""))
        index += count
    return heads, layer_js


def analyse_attention(
    inputs: AnalysisInputs,
    *,
    dense: nn.Module,
    ticket: nn.Module,
    ticket_mask: Mask,
    features: Features,
    device: torch.device,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> AttentionResult:
    """Stream both models' attention over ``features`` and compare them per layer x head x group."""
    dense_recorder = AttentionRecorder(dense, device=device)
    ticket_recorder = AttentionRecorder(ticket, device=device)
    sums, heads_per_layer = stream_attention(
        dense_recorder,
        ticket_recorder,
        features,
        strata=inputs.groups.stratum_of_row,
        n_strata=inputs.groups.n_strata,
        n_boot=inputs.n_boot,
        seed=inputs.seed,
        batch_size=batch_size,
        progress=progress,
    )
    return attention_from_sums(
        inputs.settings,
        sums,
        ticket=ticket,
        ticket_mask=ticket_mask,
        source=dense_recorder.kind,
        recorded_names=dense_recorder.layer_names,
        heads_per_layer=heads_per_layer,
    )


def attention_from_sums(
    settings: AnalysisSettings,
    sums: BootstrapSums,
    *,
    ticket: nn.Module,
    ticket_mask: Mask,
    source: str,
    recorded_names: list[str],
    heads_per_layer: list[int],
) -> AttentionResult:
    """``analyse_attention`` from merged sums: what chunked and sharded audits use."""
    names = (
        recorded_names
        if len(recorded_names) == len(heads_per_layer)
        else [f"layer {i}" for i in range(len(heads_per_layer))]
    )
    pruned = pruned_heads(ticket, ticket_mask, source=source, layer_names=names, heads_per_layer=heads_per_layer)
    return summarise_attention(
        sums, settings, source=source, layer_names=names, heads_per_layer=heads_per_layer, pruned=pruned
    )
