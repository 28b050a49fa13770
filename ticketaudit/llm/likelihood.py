"""``--task likelihood``: each text's summed log-likelihood under a causal LM, scored as lm-evaluation-harness's
``loglikelihood_rolling`` scores it: every token after the prefix token (BOS, else EOS), a text longer than the
model in rolling windows that each predict their tokens once, with the tokens before them as context.

Each window is one continuation of its context, so the choices' scorer (``scoring.choice_loglikelihoods``: token
budget, memory-bounded parts) runs it; a text's value is the sum of its windows'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import rows_words
from .encode import prefix_token
from .scoring import ChoiceInputs, choice_loglikelihoods


@dataclass(frozen=True, eq=False)
class TextWindows:
    """The texts' windows, ready for the choices' scorer, and which text each scores."""

    windows: ChoiceInputs
    """One item per window: its context and, as the single continuation, the tokens it predicts."""
    owner: np.ndarray
    """(windows,) the text each window belongs to; a text's windows in order."""
    tokens: np.ndarray
    """(texts,) tokens scored per text: all of its tokens."""
    windowed: np.ndarray
    """(texts,) whether the text is longer than the model and was scored in more than one window."""
    prefix: int

    def __len__(self) -> int:
        return len(self.tokens)


def rolling_windows(tokens: np.ndarray, *, prefix: int, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """lm-evaluation-harness's rolling windows (``get_rolling_token_windows`` with one context token, made disjoint):
    (context, predicted tokens) pairs whose predicted tokens cover ``tokens`` once, in order, each pair's input (its
    context and all but its last predicted token) at most ``limit`` tokens, the later windows' context as long as
    that allows."""
    first = min(limit, len(tokens))
    windows = [(np.array([prefix], dtype=np.int64), tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        size = min(len(tokens) - predicted, limit)
        end = predicted + size
        windows.append((tokens[end - limit - 1:end - size], tokens[end - size:end]))
        predicted = end
    return windows


def encode_texts(texts: Sequence[str], *, tokenizer: Any, limit: int) -> TextWindows:
    """Each text's rolling windows after the prefix token (one window when it fits ``limit`` tokens). An empty text
    raises ``ValueError`` naming its rows (0-based)."""
    prefix = prefix_token(tokenizer)
    contexts, continuations, owner, counts, empty = [], [], [], [], []
    for row, text in enumerate(texts):
        tokens = np.array(tokenizer.encode(str(text), add_special_tokens=False), dtype=np.int64)
        if len(tokens) == 0:
            empty.append(row)
        for context, predicted in rolling_windows(tokens, prefix=prefix, limit=limit):
            contexts.append(context)
            continuations.append((predicted,))
            owner.append(row)
        counts.append(len(tokens))
    if empty:
        raise ValueError(f"no tokens in {rows_words(len(empty), empty)}")
    windows = ChoiceInputs(contexts=tuple(contexts), continuations=tuple(continuations),
                           answers=tuple(np.zeros(1, dtype=np.int64) for _ in contexts), n_answers=1,
                           truncated=np.zeros(len(contexts), dtype=bool))
    owner_array = np.array(owner, dtype=np.int64)
    return TextWindows(windows=windows, owner=owner_array, tokens=np.array(counts, dtype=np.int64),
                       windowed=np.bincount(owner_array, minlength=len(texts)) > 1, prefix=prefix)


def text_loglikelihoods(module: torch.nn.Module, inputs: TextWindows, *, device: torch.device, tokens: int,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Each text's summed log-likelihood (float64 array, in the texts' order), ``tokens`` held per batch at most;
    ``progress`` counts windows. A text's value never depends on the batch it ran in, in float64 (``batch_size``
    changes no answer): its windows are added in order."""
    per_window = np.zeros(len(inputs.windows), dtype=np.float64)
    with torch.inference_mode():
        for positions, batch in inputs.windows.batches(tokens=tokens):
            values = choice_loglikelihoods(module, batch, device=device)
            per_window[positions] = [float(v[0]) for v in values]
            if progress is not None:
                progress(len(positions))
    out = np.zeros(len(inputs), dtype=np.float64)
    np.add.at(out, inputs.owner, per_window)  # in window order: deterministic
    return out


def token_counts(inputs: TextWindows) -> np.ndarray:
    """Tokens scored per text (all of them)."""
    return inputs.tokens
