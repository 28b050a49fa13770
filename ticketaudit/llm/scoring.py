"""Multiple-choice items scored by a causal LM: the summed log-likelihood of each answer continuation.

The shared prompt of an item runs once; its key/value cache is copied to every choice, so an item with
12 choices costs one prompt pass plus 12 short continuations instead of 12 full passes (lm-evaluation-harness
runs each request whole). Items are encoded as the harness encodes a request, so each item's scores equal
the harness's on the same model up to floating-point rounding.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class ChoiceInputs:
    """Encoded items: each item's context tokens, the tokens of each of its choices, and which answer each
    choice stands for (several phrasings may give one answer, as BBQ's "unknown" ones do)."""

    contexts: tuple[np.ndarray, ...]
    continuations: tuple[tuple[np.ndarray, ...], ...]
    answers: tuple[np.ndarray, ...]
    """Per item, the answer index (0 .. n_answers - 1) of each choice."""
    n_answers: int
    truncated: np.ndarray
    """Per item: whether its context lost its first tokens to the model's length limit."""
    divisors: tuple[np.ndarray, ...] | None = None
    """``acc_norm``: per item, each choice's length in characters (its log-likelihood is divided by it, as
    lm-evaluation-harness's ``acc_norm``); None: summed log-likelihoods (``acc``)."""

    def __len__(self) -> int:
        return len(self.contexts)

    def __getitem__(self, rows: slice | np.ndarray) -> ChoiceInputs:
        picked = np.arange(len(self))[rows]
        return ChoiceInputs(contexts=tuple(self.contexts[i] for i in picked),
                            continuations=tuple(self.continuations[i] for i in picked),
                            answers=tuple(self.answers[i] for i in picked), n_answers=self.n_answers,
                            truncated=self.truncated[picked],
                            divisors=None if self.divisors is None else tuple(self.divisors[i] for i in picked))

    def tokens(self, item: int) -> int:
        """Tokens the item holds in the choices' pass: every choice's copy of the context and its own tokens."""
        choices = self.continuations[item]
        return len(choices) * (len(self.contexts[item]) + max(len(c) for c in choices))

    def batches(self, *, tokens: int, max_rows: Callable[[int], int] | None = None
                ) -> Iterator[tuple[np.ndarray, ChoiceInputs]]:
        """Items of similar prompt length together (less padding), at most ``tokens`` tokens per batch and
        ``max_rows(prompt length)`` items (at least one item); positions are the items' own rows. The order depends only on the items, never on the batch size."""
        order = np.argsort([len(c) for c in self.contexts], kind="stable")
        held_by = [self.tokens(int(item)) for item in order]
        start = 0
        while start < len(order):
            stop, held = start, 0
            while stop < len(order) and (stop == start or held + held_by[stop] <= tokens and (
                    max_rows is None or stop - start < max_rows(len(self.contexts[order[stop]])))):
                held += held_by[stop]
                stop += 1
            positions = order[start:stop]
            yield positions, self[positions]
            start = stop


def right_padded(sequences: list[np.ndarray], *, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (rows, longest) token ids and their attention mask."""
    longest = max(1, max(len(s) for s in sequences))
    ids = np.full((len(sequences), longest), pad, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = sequence
        mask[row, :len(sequence)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.to(torch.float32) if logits.dtype in (torch.float16, torch.bfloat16) else logits,
                             dim=-1)


def choice_loglikelihoods(module: torch.nn.Module, batch: ChoiceInputs, *, device: torch.device) -> list[torch.Tensor]:
    """Per item, the summed log-likelihood of each of its choices given its context (one prompt pass per batch
    of items, then one pass over every choice continuing from the copied prompt cache). A model with sliding-window
    attention shorter than an item scores that batch one full pass per choice (its cache keeps only the window)."""
    window = _sliding_window(module)
    if window is not None and any(len(c) + max(len(x) for x in item) > window
                                  for c, item in zip(batch.contexts, batch.continuations)):
        return naive_loglikelihoods(module, batch, device=device)
    context_ids, context_mask = right_padded(list(batch.contexts))
    lengths = context_mask.sum(dim=1)
    ends = lengths - 1
    keep = _keep_positions(module, ends)
    out = module(input_ids=context_ids.to(device), attention_mask=context_mask.to(device), use_cache=True,
                 **({"logits_to_keep": keep.to(device)} if keep is not None else {}))
    if keep is not None:  # logits at the prompts' last positions only (the vocabulary projection is costly)
        ends = torch.searchsorted(keep, ends)
    last = _log_softmax(out.logits[torch.arange(len(batch)), ends.to(device)])  # predicts each first token
    owner = np.repeat(np.arange(len(batch)), [len(c) for c in batch.continuations])
    choices = [c for item in batch.continuations for c in item]
    first = last[torch.as_tensor(owner, device=device), torch.as_tensor([int(c[0]) for c in choices], device=device)]
    rest = torch.zeros_like(first)
    if any(len(c) > 1 for c in choices):
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        logit_bytes = int(out.logits.shape[-1]) * out.logits.element_size()
        del out
        per_position = _cache_bytes(cache) / max(1, context_ids.numel())
        parts = _continuation_parts(choices, owner=owner, context=context_ids.shape[1],
                                    position_bytes=per_position, logit_bytes=logit_bytes)
        rest = torch.cat([_continued(module, copy.deepcopy(cache) if len(parts) > 1 else cache,
                                     [choices[i] for i in part], owner=owner[part], lengths=lengths,
                                     context_mask=context_mask, device=device) for part in parts])
    totals = (first + rest).to("cpu")
    return list(torch.split(totals, [len(c) for c in batch.continuations]))


CONTINUATION_BYTES = 48 * 2**20
"""What one continuation pass holds at most (its copy of the prompts' cache, grown by the choices, and its logits):
a batch's choices continue in parts of whole items, so memory stays bounded whatever the vocabulary and depth."""


def _cache_bytes(cache: Any) -> int:
    """Bytes of the key/value tensors a transformers cache holds (0 when its layout is unknown: logits alone bound
    the parts)."""
    return sum(value.numel() * value.element_size() for layer in getattr(cache, "layers", ())
               for value in vars(layer).values() if isinstance(value, torch.Tensor))


def _continuation_parts(choices: list[np.ndarray], *, owner: np.ndarray, context: int, position_bytes: float,
                        logit_bytes: int) -> list[np.ndarray]:
    """The choices of whole items, in order, in parts that fit ``CONTINUATION_BYTES`` (at least one item per
    part); fixed by the batch, so the same batch is always split the same way."""
    feed = max(len(c) for c in choices) - 1
    per_choice = max(1.0, 2 * (context + feed) * position_bytes + feed * logit_bytes)  # the cache twice: grown by a copy
    items = np.split(np.arange(len(choices)), np.flatnonzero(np.diff(owner)) + 1)
    parts: list[list[np.ndarray]] = [[]]
    for item in items:
        if parts[-1] and (sum(map(len, parts[-1])) + len(item)) * per_choice > CONTINUATION_BYTES:
            parts.append([])
        parts[-1].append(item)
    return [np.concatenate(part) for part in parts]


def _continued(module: torch.nn.Module, cache: Any, choices: list[np.ndarray], *, owner: np.ndarray,
               lengths: torch.Tensor, context_mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Log-likelihood of each choice's tokens after its first, read from one pass that continues every item's
    prompt cache (copied once per choice)."""
    cache.batch_select_indices(torch.as_tensor(owner, device=device))
    feed, feed_mask = right_padded([c[:-1] for c in choices])
    starts = lengths[torch.as_tensor(owner)]
    positions = starts[:, None] + torch.arange(feed.shape[1])[None, :]
    mask = torch.cat([context_mask[torch.as_tensor(owner)], feed_mask], dim=1)
    logits = module(input_ids=feed.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    use_cache=True, **{_cache_argument(module): cache}).logits
    del cache
    targets, target_mask = right_padded([c[1:] for c in choices])
    at_once = max(1, SOFTMAX_VALUES // max(1, logits.shape[1] * logits.shape[2]))  # a few rows' softmax at a time
    picked = torch.cat([_log_softmax(rows).gather(2, wanted[:, :, None])[:, :, 0]
                        for rows, wanted in zip(logits.split(at_once), targets.to(device).split(at_once))])
    scored = target_mask.sum(dim=1).tolist()
    values = picked.to("cpu", torch.float64).numpy()  # summed exactly: a choice's sum never depends on its padding
    return torch.tensor([math.fsum(row[:n]) for row, n in zip(values, scored)], dtype=picked.dtype, device=device)


SOFTMAX_VALUES = 2**22
"""Logits whose log-softmax is taken at once (whole choices; the pass's logits are not copied whole)."""


def _sliding_window(module: torch.nn.Module) -> int | None:
    """The attention window of a model that attends to its last N tokens only (Mistral, Gemma 2, ...), if any."""
    config = getattr(module, "config", None)
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or window <= 0 or getattr(config, "use_sliding_window", True) is False:
        return None
    return window


def _keep_positions(module: torch.nn.Module, ends: torch.Tensor) -> torch.Tensor | None:
    """The sorted positions whose logits the prompt pass needs, when the model can keep only those."""
    import inspect

    if "logits_to_keep" not in inspect.signature(module.forward).parameters:
        return None
    return torch.unique(ends)


def _cache_argument(module: torch.nn.Module) -> str:
    """How this model's forward takes a key/value cache: ``cache`` (transformers >= 5.2x), else ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def answer_scores(loglikelihoods: list[torch.Tensor], batch: ChoiceInputs) -> torch.Tensor:
    """(items, n_answers): each answer's best-scored phrasing (the harness's argmax over choices picks it); an
    answer with no phrasing in an item scores -inf."""
    scores = torch.full((len(batch), batch.n_answers), -torch.inf, dtype=loglikelihoods[0].dtype if loglikelihoods
                        else torch.float64)
    for item, (values, answers) in enumerate(zip(loglikelihoods, batch.answers)):
        index = torch.as_tensor(answers, dtype=torch.long)
        scores[item] = scores[item].scatter_reduce(0, index, values, reduce="amax")
    return scores


def score_answers(module: torch.nn.Module, batch: ChoiceInputs, *, device: torch.device) -> torch.Tensor:
    """The (items, n_answers) scores the audit reads as logits: their softmax is each answer's share."""
    scores = choice_loglikelihoods(module, batch, device=device)
    if batch.divisors is not None:
        scores = [values / torch.as_tensor(divisor, dtype=values.dtype) for values, divisor in zip(scores, batch.divisors)]
    return answer_scores(scores, batch)


def naive_loglikelihoods(module: torch.nn.Module, batch: ChoiceInputs, *, device: torch.device) -> list[torch.Tensor]:
    """The reference: one full pass per choice over context + choice (what the harness runs); for tests and the
    benchmark's baseline."""
    out = []
    for context, choices in zip(batch.contexts, batch.continuations):
        values = []
        for choice in choices:
            whole = torch.as_tensor(np.concatenate([context, choice[:-1]]), device=device)[None, :]
            logprobs = _log_softmax(module(input_ids=whole).logits[0, len(context) - 1:])
            values.append(logprobs.gather(1, torch.as_tensor(choice, device=device)[:, None]).sum())
        out.append(torch.stack(values).to("cpu"))
    return out
