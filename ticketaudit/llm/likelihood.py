"""``--task likelihood``: each text's summed log-likelihood under a causal LM, scored as lm-evaluation-harness's
``loglikelihood_rolling`` scores a text that fits the model: every token after the prefix token (BOS, else EOS).

A text is one continuation of the prefix token, so the choices' scorer (``scoring.choice_loglikelihoods``: token
budget, memory-bounded parts) runs it. A text longer than the model's length keeps its first tokens and is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .._validation import rows_words
from .encode import prefix_token
from .scoring import ChoiceInputs, choice_loglikelihoods


def encode_texts(texts: Sequence[str], *, tokenizer: Any, limit: int) -> ChoiceInputs:
    """Each text as the single continuation of the prefix token; one longer than ``limit`` - 1 tokens keeps its
    first tokens (``truncated``). An empty text raises ``ValueError`` naming its rows (0-based)."""
    prefix = np.array([prefix_token(tokenizer)], dtype=np.int64)
    continuations, truncated, empty = [], [], []
    for row, text in enumerate(texts):
        tokens = np.array(tokenizer.encode(str(text), add_special_tokens=False), dtype=np.int64)
        if len(tokens) == 0:
            empty.append(row)
        truncated.append(len(tokens) > limit - 1)
        continuations.append((tokens[:limit - 1],))
    if empty:
        raise ValueError(f"no tokens in {rows_words(len(empty), empty)}")
    return ChoiceInputs(contexts=tuple(prefix for _ in texts), continuations=tuple(continuations),
                        answers=tuple(np.zeros(1, dtype=np.int64) for _ in texts), n_answers=1,
                        truncated=np.array(truncated, dtype=bool))


def text_loglikelihoods(module: torch.nn.Module, inputs: ChoiceInputs, *, device: torch.device, tokens: int,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Each text's summed log-likelihood (float64 array, in the texts' order), ``tokens`` held per batch at most.
    A text's value never depends on the batch it ran in, in float64 (``batch_size`` changes no answer)."""
    out = np.zeros(len(inputs), dtype=np.float64)
    with torch.inference_mode():
        for positions, batch in inputs.batches(tokens=tokens):
            values = choice_loglikelihoods(module, batch, device=device)
            out[positions] = [float(v[0]) for v in values]
            if progress is not None:
                progress(len(positions))
    return out


def token_counts(inputs: ChoiceInputs) -> np.ndarray:
    """Tokens scored per text (its continuation's length)."""
    return np.array([len(item[0]) for item in inputs.continuations], dtype=np.int64)
