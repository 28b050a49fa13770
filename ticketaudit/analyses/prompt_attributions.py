"""Attributions on a language model's items: which prompt words drove the explained answer, on both models.

Each sampled item's prompt is followed by its answer's tokens (the phrasing the dense model scores highest for
the explained answer); Captum's layer Integrated Gradients (or gradient x activation) on the token-embedding layer
explains the answer's summed log-probability, which is what Captum's ``LLMGradientAttribution`` explains token by
token (equal up to rounding: tests). Prompt tokens are summed to words and compared as text attributions are
(``text_attributions``); the identity share is the attribution on the words naming people: the item's own (BBQ:
the words that tell its two named answers apart), the sensitive values' words for user items, and
``--identity-terms``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import fail
from .text_attributions import _attribute

STEP_TOKENS = 512
"""Tokens per forward-and-backward pass of Integrated Gradients' steps: a decoder keeps every layer's activations
for the backward pass (about 1.4 MB a token on a 135M model), so a language model gets an eighth of a text
classifier's budget. Fixed, never a speed setting."""


def _answer_forward(model: torch.nn.Module) -> Any:
    """A causal LM's summed log-probability of each row's answer tokens: the sequence's objective of Captum's
    ``LLMGradientAttribution`` (which attributes it token by token; gradients add, so the sum is the same).
    Rows are padded on the left with explicit positions, so every answer ends at the last column and only the
    last columns' logits are computed."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    keeps, placed = "logits_to_keep" in accepted, "position_ids" in accepted  # ALiBi models (BLOOM) take no positions

    def forward(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                target_mask: torch.Tensor) -> torch.Tensor:
        width = targets.shape[1]
        logits = model(input_ids=ids, attention_mask=mask, **({"position_ids": positions} if placed else {}),
                       **({"logits_to_keep": width} if keeps else {})).logits[:, -width:]
        logits = logits.to(torch.float32) if logits.dtype in (torch.float16, torch.bfloat16) else logits
        picked = torch.log_softmax(logits, dim=-1).gather(2, targets[:, :, None])[:, :, 0]
        return (picked * target_mask.to(picked.dtype)).sum(dim=1)

    return forward


@dataclass(frozen=True, eq=False)
class PromptTokens:
    """Items laid out for attribution: each prompt followed by its explained answer's tokens but the last, padded
    on the left (``_answer_forward``); the baseline replaces every prompt token but special ones by the padding
    token and keeps the answer."""

    ids: np.ndarray
    mask: np.ndarray
    positions: np.ndarray
    baseline: np.ndarray
    targets: np.ndarray
    """(rows, longest answer): each answer's tokens, right-aligned (left-padded with 0)."""
    target_mask: np.ndarray
    prompt_columns: tuple[np.ndarray, ...]
    """Per row: the columns its prompt tokens occupy."""

    def alone(self, row: int) -> PromptTokens:
        """Row ``row`` laid out on its own: no padding."""
        start = int(self.prompt_columns[row][0]) if len(self.prompt_columns[row]) else int(np.argmax(self.mask[row]))
        keep = slice(start, None)
        answer = self.target_mask[row] > 0
        return PromptTokens(ids=self.ids[row:row + 1, keep], mask=self.mask[row:row + 1, keep],
                            positions=self.positions[row:row + 1, keep], baseline=self.baseline[row:row + 1, keep],
                            targets=self.targets[row:row + 1, answer], target_mask=self.target_mask[row:row + 1, answer],
                            prompt_columns=(self.prompt_columns[row] - start,))


def lay_out_prompts(contexts: Sequence[np.ndarray], answers: Sequence[np.ndarray], special: Sequence[np.ndarray], *,
                    pad: int, baseline: int) -> PromptTokens:
    """``PromptTokens`` of items: context token ids, each item's answer token ids, which context tokens are special."""
    sequences = [np.concatenate([c, a[:-1]]) for c, a in zip(contexts, answers)]
    width, longest = max(len(s) for s in sequences), max(len(a) for a in answers)
    ids = np.full((len(sequences), width), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    base = np.full_like(ids, pad)
    targets = np.zeros((len(sequences), longest), dtype=np.int64)
    target_mask = np.zeros_like(targets)
    columns = []
    for row, (sequence, context, answer, skip) in enumerate(zip(sequences, contexts, answers, special)):
        start = width - len(sequence)
        ids[row, start:], mask[row, start:] = sequence, 1
        base[row, start:] = sequence
        base[row, start:start + len(context)] = np.where(skip, context, baseline)
        targets[row, longest - len(answer):], target_mask[row, longest - len(answer):] = answer, 1
        columns.append(np.arange(start, start + len(context)))
    positions = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return PromptTokens(ids=ids, mask=mask, positions=positions, baseline=base, targets=targets,
                        target_mask=target_mask, prompt_columns=tuple(columns))


def prompt_token_attributions(module: torch.nn.Module, layout: PromptTokens, *, method: str, steps: int,
                              device: torch.device) -> tuple[list[np.ndarray], float | None]:
    """Per row, the attribution of each of its prompt tokens to the log-probability of its answer (rows in
    batches of ``STEP_TOKENS`` tokens: fixed by the items, never by a speed setting)."""
    import inspect

    padded = "position_ids" in inspect.signature(module.forward).parameters  # else no left padding (ALiBi)
    rows = max(1, STEP_TOKENS // layout.ids.shape[1]) if padded and len(layout.ids) > 1 else 1
    if rows == 1 and len(layout.ids) > 1:
        parts = [prompt_token_attributions(module, layout.alone(row), method=method, steps=steps, device=device)
                 for row in range(len(layout.ids))]
        deltas = [d for _, d in parts if d is not None]
        return [values[0] for values, _ in parts], (max(deltas) if deltas else None)
    values, delta = _attribute(module, layout.ids, layout.mask, layout.baseline, None, method=method, steps=steps,
                               batch_size=rows, device=device, objective=_answer_forward,
                               row_args=(layout.positions, layout.targets, layout.target_mask),
                               step_tokens=STEP_TOKENS)
    out = [values[row, columns] for row, columns in enumerate(layout.prompt_columns)]
    for row in range(len(out)) if len(layout.ids) > 1 else ():
        if not np.isfinite(out[row]).all():  # a model whose padded rows overflow: that row again, unpadded
            again, row_delta = prompt_token_attributions(module, layout.alone(row), method=method, steps=steps,
                                                         device=device)
            out[row] = again[0]
            delta = None if delta is None or row_delta is None else max(delta, row_delta)
    return out, delta


def _context_words(tokenizer: Any, prompt: str, context_ids: np.ndarray
                   ) -> tuple[str, list[int | None], list[tuple[int, int]], np.ndarray]:
    """The prompt as the harness encodes its context (trailing spaces off), with each kept token's word, character
    offsets and whether it is special; the tokens must be the scored ones, else no word can be trusted."""
    from ..llm.encode import prefix_token

    context = prompt.rstrip()
    if not context:
        return "", [None] * len(context_ids), [(0, 0)] * len(context_ids), np.ones(len(context_ids), dtype=bool)
    prefix = tokenizer.decode([prefix_token(tokenizer)])
    encoded = tokenizer(context, add_special_tokens=not (prefix and context.startswith(prefix)),
                        return_offsets_mapping=True, return_special_tokens_mask=True)
    kept = len(context_ids)
    if list(encoded["input_ids"][-kept:]) != [int(t) for t in context_ids]:
        fail("attributions on this language model need its tokenizer to encode a prompt with character offsets the "
             "same way it encodes it for scoring, and it does not; leave attributions out of --analyses.")
    return (context, list(encoded.word_ids())[-kept:], [tuple(o) for o in encoded["offset_mapping"]][-kept:],
            np.asarray(encoded["special_tokens_mask"][-kept:], dtype=bool))


def explained_phrasings(module: torch.nn.Module, inputs: Any, targets: np.ndarray, *, device: torch.device
                        ) -> list[np.ndarray]:
    """Per item, the tokens of the choice that stands for its explained answer and that the dense model scores
    highest (the harness's argmax picks it; BBQ's "unknown" answer has many phrasings)."""
    from ..llm.scoring import choice_loglikelihoods
    from .text_attributions import _explainable

    model = _explainable(module, device)
    chosen: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(inputs)
    with torch.inference_mode():
        for positions, batch in inputs.batches(tokens=PHRASING_TOKENS):
            scores = choice_loglikelihoods(model, batch, device=device)
            for item, values in zip(positions, scores):
                values = values.to(torch.float64).numpy()
                if inputs.divisors is not None:
                    values = values / inputs.divisors[item]
                allowed = np.flatnonzero(inputs.answers[item] == targets[item])
                chosen[item] = inputs.continuations[item][int(allowed[np.argmax(values[allowed])])]
    return chosen


PHRASING_TOKENS = 4096
"""Tokens per pass when scoring the sample's choices to find each item's explained phrasing."""


def attribute_prompt_words(dense: torch.nn.Module, ticket: torch.nn.Module, items: Sequence[Any], targets: np.ndarray,
                           *, modality: Any, method: str, steps: int, device: torch.device) -> Any:
    """Both models' attributions of each item's prompt words to its explained answer (``PromptItem`` items)."""
    from ..llm.encode import build_choice_inputs
    from .text_attributions import _word_spans, baseline_token, words_from_tokens

    tokenizer = modality.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        fail("attributions on a language model need a fast tokenizer (tokenizer.json) to map tokens back to words; "
             "leave attributions out of --analyses.")
    inputs = build_choice_inputs([i.prompt for i in items], [i.choices for i in items], [i.answers for i in items],
                                 tokenizer=tokenizer, n_answers=modality.task.answer_count, limit=modality.limit,
                                 normalize=modality.task.score == "acc_norm")
    answers = explained_phrasings(dense, inputs, targets, device=device)
    words = [_context_words(tokenizer, item.prompt, context) for item, context in zip(items, inputs.contexts)]
    layout = lay_out_prompts(inputs.contexts, answers, [w[3] for w in words], pad=baseline_token(tokenizer),
                             baseline=baseline_token(tokenizer))
    token_attr, convergence = {}, {}
    for name, module in (("dense", dense), ("ticket", ticket)):
        values, delta = prompt_token_attributions(module, layout, method=method, steps=steps, device=device)
        token_attr[name] = np.zeros((len(items), max(len(v) for v in values)))
        for row, row_values in enumerate(values):
            token_attr[name][row, :len(row_values)] = row_values
        if delta is not None:
            convergence[name] = delta
    spans = [_word_spans(text, word_ids, offsets, special) for text, word_ids, offsets, special in words]
    return words_from_tokens([w[0] for w in words], spans, token_attr, convergence)


def prompt_attributions_from_sample(inputs: Any, sample: Any, *, population: np.ndarray, dense: torch.nn.Module,
                                    ticket: torch.nn.Module, modality: Any, settings: Any, device: torch.device) -> Any:
    """Attribute both models on the sampled items and compare their prompt words (see the module doc)."""
    from .text_attributions import group_terms, identity_columns, summarise_words

    items = [row[0] for row in sample.features]
    words = attribute_prompt_words(dense, ticket, items, sample.targets, modality=modality, method=settings.method,
                                   steps=settings.steps, device=device)
    terms = (tuple(sorted(t.lower() for t in settings.identity_terms)) if modality.task.benchmark is not None
             else group_terms(inputs.groups, settings))
    identity = np.zeros(words.present.shape, dtype=bool)
    identity[:, identity_columns(words.vocabulary, terms)] = True
    for row, item in enumerate(items):
        identity[row, identity_columns(words.vocabulary, item.identity)] = True
    identity &= words.present
    result = summarise_words(inputs, sample, words, identity=identity, terms=terms, population=population,
                             settings=settings, baseline="every prompt word replaced by the padding token")
    return dataclasses.replace(result, extra={**result.extra, "explained": "the log-probability of the item's "
                                              "answer (its best-scored phrasing) given the prompt"})


def within_budget(sample: Any, population: np.ndarray, *, dense: torch.nn.Module, modality: Any, settings: Any,
                  precision: str, seed: int) -> tuple[Any, Any]:
    """The stratified sample cut to the items that fit ``settings.budget_seconds`` (the text rule: counted
    multiply-adds per token of the first item times the sample's mean item length, no timer)."""
    from ..llm.encode import build_choice_inputs
    from .attributions import cut_sample
    from .cost import BudgetedSample, RowCost, budgeted
    from .text_attributions import MIN_BUDGET_ROWS

    items = [row[0] for row in sample.features]
    if not items:
        return sample, BudgetedSample(rows=0, steps=settings.steps, seconds=0.0, floor_missed=False)
    inputs = build_choice_inputs([i.prompt for i in items], [i.choices for i in items], [i.answers for i in items],
                                 tokenizer=modality.tokenizer, n_answers=modality.task.answer_count,
                                 limit=modality.limit)
    lengths = np.array([len(c) + max(len(x) for x in choices) - 1
                        for c, choices in zip(inputs.contexts, inputs.continuations)], dtype=np.float64)
    per_token = sequence_cost(dense, inputs.contexts[0]) / len(inputs.contexts[0])
    plan = budgeted(RowCost({"matmul": per_token * float(lengths.mean())}), method=settings.method,
                    steps=settings.steps, inputs=int(lengths.mean()), precision=precision,
                    budget_seconds=settings.budget_seconds, population=len(items), floor=MIN_BUDGET_ROWS)
    return cut_sample(sample, population, plan.rows, seed=seed), plan


def sequence_cost(module: torch.nn.Module, ids: np.ndarray) -> float:
    """Multiply-adds of one forward pass of a causal LM over ``ids`` (torch's FLOP counter, on the CPU)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from .predict import own_precision

    model = module if own_precision(module) == "float32" else copy.deepcopy(module).to(torch.float32)
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            model(input_ids=torch.as_tensor(ids, device=next(model.parameters()).device)[None, :])
        return counter.get_total_flops() / 2
    except Exception:  # noqa: BLE001 - an op the counter cannot trace: the model's size per token instead
        return float(sum(p.numel() for p in module.parameters())) * len(ids)
