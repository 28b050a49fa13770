"""Tiny Hugging Face text classifiers built from a config (no downloads): a 2-layer, 2-head BERT,
a WordPiece tokenizer written in the test, and magnitude-pruned tickets of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

WORDS = ("the a movie film plot acting music story good bad great awful fine dull long short funny sad "
         "loved hated it was is very not quite").split()


def _tokenizer(directory: Path):  # noqa: ANN202 - transformers type
    from transformers import BertTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    # The vocabulary as a mapping: transformers 5 ignores vocab_file here (every word would become [UNK]).
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=32)
    assert tokenizer.vocab_size == len(tokens)
    return tokenizer


def tiny_bert(seed: int = 0) -> torch.nn.Module:
    """An untrained 2-layer BERT classifier with hidden size 16 and 2 heads, eager attention."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=2,
                        attn_implementation="eager")
    return BertForSequenceClassification(config).eval()


def prune_magnitude(model: torch.nn.Module, *, keep: float) -> torch.nn.Module:
    """Copy of ``model`` with the smallest-magnitude (1 - keep) share of each encoder weight matrix zeroed."""
    import copy

    ticket = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in ticket.named_parameters():
            if param.dim() == 2 and ".encoder." in name:
                threshold = param.abs().flatten().kthvalue(max(1, int(param.numel() * (1 - keep)))).values
                param.mul_(param.abs() > threshold)
    return ticket


def save_text_model(model: torch.nn.Module, directory: Path, *, tokenizer: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    if tokenizer:
        _tokenizer(directory).save_pretrained(str(directory))
    return directory


def text_table(rows: int, *, seed: int = 0) -> pd.DataFrame:
    """Short random reviews of 2-12 words (so padding varies), a binary label and a group column."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 13, size=rows)
    text = [" ".join(rng.choice(WORDS, size=k)) for k in lengths]
    return pd.DataFrame({"review": text, "label": rng.integers(0, 2, size=rows),
                         "group": rng.choice(["a", "b", "c"], size=rows, p=[0.5, 0.3, 0.2])})
