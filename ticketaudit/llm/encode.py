"""Items as lm-evaluation-harness encodes a log-likelihood request, so per-item scores equal the harness's.

A request is (context, continuation). Trailing spaces of the context move to the continuation; the
continuation's tokens are those of ``context + continuation`` after the context's own tokens; an empty
context becomes the tokenizer's BOS token (else EOS). Overlong items lose their first context tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .scoring import ChoiceInputs

DEFAULT_LIMIT = 2048
"""The harness's length limit for a model whose config states none."""


def model_limit(config: Any) -> int:
    """Tokens the model reads at most (the harness's rule: the config's position count, else 2,048)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_LIMIT


def prefix_token(tokenizer: Any) -> int:
    """What an empty context becomes: the BOS token, else EOS (the harness's ``prefix_token_id``)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return int(token)


def _encode(tokenizer: Any, text: str, *, prefix: str) -> list[int]:
    """The harness's ``tok_encode``: the tokenizer's own special tokens, unless the text already starts with the BOS
    text ``prefix``."""
    if prefix and text.startswith(prefix):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def encode_item(tokenizer: Any, context: str, choices: Sequence[str]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The context tokens (shared by every choice) and each choice's continuation tokens."""
    if context == "":
        prefix = prefix_token(tokenizer)
        encoded = [list(tokenizer.encode(choice, add_special_tokens=False)) for choice in choices]
        if any(not tokens for tokens in encoded):
            raise ValueError("a choice is empty")
        if any(tokens[0] == prefix for tokens in encoded):  # the harness then splits each request on its own
            raise ValueError("a choice starts with the BOS token; give a non-empty prompt")
        return np.array([prefix], dtype=np.int64), tuple(np.array(t, dtype=np.int64) for t in encoded)
    spaces = len(context) - len(context.rstrip())
    moved, context = context[len(context) - spaces:], context[:len(context) - spaces]
    prefix = tokenizer.decode([prefix_token(tokenizer)])
    context_ids = _encode(tokenizer, context, prefix=prefix)
    continuations = []
    for choice in choices:
        whole = _encode(tokenizer, context + moved + choice, prefix=prefix)
        tokens = whole[len(context_ids):]
        if not tokens:
            raise ValueError("a choice is empty")
        continuations.append(np.array(tokens, dtype=np.int64))
    return np.array(context_ids, dtype=np.int64), tuple(continuations)


def build_choice_inputs(contexts: Sequence[str], choices: Sequence[Sequence[str]], answers: Sequence[Sequence[int]],
                        *, tokenizer: Any, n_answers: int, limit: int, normalize: bool = False) -> ChoiceInputs:
    """Every item encoded; an item longer than ``limit`` + 1 tokens keeps its context's last tokens (marked).
    ``normalize``: score each choice per character (``acc_norm``; its length without the leading space)."""
    encoded_contexts, encoded_choices, truncated = [], [], []
    for context, item_choices in zip(contexts, choices):
        context_ids, continuation_ids = encode_item(tokenizer, context, item_choices)
        room = limit + 1 - max(len(c) for c in continuation_ids)
        cut = len(context_ids) > room
        encoded_contexts.append(context_ids[len(context_ids) - max(1, room):] if cut else context_ids)
        encoded_choices.append(continuation_ids)
        truncated.append(cut)
    return ChoiceInputs(contexts=tuple(encoded_contexts), continuations=tuple(encoded_choices),
                        answers=tuple(np.asarray(a, dtype=np.int64) for a in answers), n_answers=n_answers,
                        truncated=np.array(truncated, dtype=bool),
                        divisors=tuple(np.array([max(1, len(c.removeprefix(" "))) for c in item], dtype=np.float64)
                                       for item in choices) if normalize else None)
