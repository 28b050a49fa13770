"""Pieces of language-model pruning (``pruning.sequential`` runs the methods): calibration batches, the per-row and
N:M keep rule, the full mask over every prunable tensor, and the mask file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._validation import fail
from ..tickets.mask import Mask, prunable_parameters


def encode_texts(tokenizer: Any, texts: list[str], weights: list[float] | None = None
                 ) -> tuple[list[int], np.ndarray | None]:
    """The texts joined by blank lines, as token ids; with ``weights`` (one per text), each text is tokenised on its
    own so every token carries its text's weight (the blank lines weigh 1)."""
    if weights is None:
        return tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"], None
    separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    token_weights: list[float] = []
    for index, (text, weight) in enumerate(zip(texts, weights)):
        if index:
            ids += separator
            token_weights += [1.0] * len(separator)
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        token_weights += [float(weight)] * len(piece)
    return ids, np.asarray(token_weights)


def _cut(ids: list[int], weights: np.ndarray | None, starts: Any, length: int
         ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    batches = [torch.tensor([ids[int(s):int(s) + length]]) for s in starts]
    if weights is None:
        return batches, None
    return batches, [torch.as_tensor(weights[int(s):int(s) + length], dtype=torch.float64) for s in starts]


def calibration_batches(tokenizer: Any, text: str, *, sequences: int, length: int) -> list[torch.Tensor]:
    """``sequences`` chunks of ``length`` tokens of ``text`` (one batch each), tokenised once."""
    return weighted_batches(tokenizer, [text], sequences=sequences, length=length)[0]


def weighted_batches(tokenizer: Any, texts: list[str], *, sequences: int, length: int,
                     weights: list[float] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """``sequences`` chunks of ``length`` tokens of the joined ``texts`` (one batch each), evenly spaced, with each
    token's weight when ``weights`` gives one per text (None otherwise)."""
    ids, token_weights = encode_texts(tokenizer, texts, weights)
    if len(ids) < length:
        fail(f"the calibration text has {len(ids)} tokens; it needs at least {length} (one sequence).")
    return _cut(ids, token_weights, _even_starts(len(ids), sequences, length), length)


def _even_starts(tokens: int, sequences: int, length: int, *, first: int = 0) -> list[int]:
    """Up to ``sequences`` window starts spread evenly over tokens ``first``..``tokens``."""
    if sequences <= 0 or tokens - first < length:
        return []
    step = max(length, (tokens - first - length) // max(1, sequences - 1)) if sequences > 1 else length
    return list(range(first, tokens - length + 1, step))[:sequences]


def protected_batches(tokenizer: Any, texts: list[str], protected: list[bool], *, sequences: int, length: int,
                      weight: float) -> tuple[list[torch.Tensor], list[torch.Tensor], int, int]:
    """Calibration that always holds the protected items: their texts first, cut into consecutive windows (as many
    as they fill, at most half the ``sequences``: the other items keep the rest), then the other items' texts in
    evenly spaced windows; protected tokens weigh ``weight``. Also returns how many protected tokens the windows
    hold, and how many there are."""
    first, _ = encode_texts(tokenizer, [t for t, p in zip(texts, protected) if p])
    rest, _ = encode_texts(tokenizer, [t for t, p in zip(texts, protected) if not p])
    separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"] if rest else []
    ids = first + separator + rest
    if len(ids) < length:
        fail(f"the calibration items have {len(ids)} tokens; they need at least {length} (one sequence).")
    weights = np.concatenate([np.full(len(first), float(weight)), np.ones(len(separator) + len(rest))])
    share = max(1, sequences // 2) if rest else sequences
    covering = min(share, -(-len(first) // length), len(ids) // length)
    starts = [i * length for i in range(covering)]
    starts += _even_starts(len(ids), sequences - covering, length, first=covering * length)
    batches, token_weights = _cut(ids, weights, starts, length)
    return batches, token_weights or [], min(len(first), covering * length), len(first)


def grouped_calibration(tokenizer: Any, texts: list[str], groups: list[str], *, sequences: int, length: int,
                        seed: int) -> tuple[list[torch.Tensor], list[int], tuple[str, ...]]:
    """Group-balanced calibration: the same number of ``length``-token sequences (so the same tokens) from each
    group's texts, joined in order and cut at non-overlapping starts drawn with ``seed``: ``sequences`` / groups
    each, or fewer when the shortest group has fewer (still equal); with each sequence's group index and the group
    names (sorted). A group shorter than one sequence is refused, named."""
    names = tuple(sorted(set(groups)))
    if len(names) < 2:
        fail(f"--balance-groups needs at least two groups in the calibration items; found {len(names)}.")
    encoded = []
    for name in names:
        ids = tokenizer("\n\n".join(t for t, g in zip(texts, groups) if g == name), add_special_tokens=False)["input_ids"]
        if len(ids) < length:
            fail(f"calibration group '{name}' has {len(ids)} tokens, fewer than one sequence of {length}; give more "
                 "text for it, or leave it out of the calibration items.")
        encoded.append(ids)
    share = max(1, min(sequences // len(names), *(len(ids) // length for ids in encoded)))
    rng = np.random.default_rng(seed)
    batches, owners = [], []
    for index, ids in enumerate(encoded):
        for start in np.sort(rng.choice(len(ids) // length, size=share, replace=False)) * length:
            batches.append(torch.tensor([ids[int(start):int(start) + length]]))
            owners.append(index)
    return batches, owners, names


def grouped_protected_batches(tokenizer: Any, texts: list[str], groups: list[str], protected: list[bool], *,
                              sequences: int, length: int, weight: float
                              ) -> tuple[list[torch.Tensor], list[int], tuple[str, ...], list[torch.Tensor], int, int]:
    """Group-balanced calibration that holds the protected items: the same number of ``length``-token sequences
    from each group (``sequences`` / groups, or fewer when the shortest group has fewer), each group's cut as
    ``protected_batches`` cuts all items (its protected texts first, at most half its windows, weighing ``weight``;
    then its other texts, evenly spaced). Returns the batches, each one's group index, the group names (sorted),
    each batch's token weights, and the protected tokens held and in all."""
    names = tuple(sorted(set(groups)))
    if len(names) < 2:
        fail(f"--balance-groups needs at least two groups in the calibration items; found {len(names)}.")
    members = [[i for i, g in enumerate(groups) if g == name] for name in names]
    sizes = []
    for name, rows in zip(names, members):
        tokens = len(encode_texts(tokenizer, [texts[i] for i in rows])[0])
        if tokens < length:
            fail(f"calibration group '{name}' has {tokens} tokens, fewer than one sequence of {length}; give more "
                 "text for it, or leave it out of the calibration items.")
        sizes.append(tokens)
    share = max(1, min(sequences // len(names), *(size // length for size in sizes)))
    batches, owners, weights, covered, total = [], [], [], 0, 0
    for index, rows in enumerate(members):
        group_texts, marked = [texts[i] for i in rows], [protected[i] for i in rows]
        if any(marked):
            cut, cut_weights, held, of = protected_batches(tokenizer, group_texts, marked, sequences=share,
                                                           length=length, weight=weight)
        else:
            cut, _ = weighted_batches(tokenizer, group_texts, sequences=share, length=length)
            cut_weights, held, of = [torch.ones(length, dtype=torch.float64) for _ in cut], 0, 0
        batches += cut
        weights += cut_weights
        owners += [index] * len(cut)
        covered, total = covered + held, total + of
    least = min(owners.count(index) for index in range(len(names)))  # equal sequences (so tokens) per group
    kept = [i for i, owner in enumerate(owners) if owners[:i + 1].count(owner) <= least]
    return ([batches[i] for i in kept], [owners[i] for i in kept], names, [weights[i] for i in kept], covered, total)


def row_mask(score: torch.Tensor, *, sparsity: float, pattern: tuple[int, int] | None) -> torch.Tensor:
    """Keep the highest-scoring weights of each output row (``score``: (out, in)): a share ``1 - sparsity`` of the
    row, or N of every M consecutive inputs for an N:M ``pattern``. Ties go to the earlier input."""
    rows, columns = score.shape
    if pattern is not None:
        keep, group = pattern
        if columns % group:
            fail(f"a layer has {columns} inputs, not a multiple of {group}: the {keep}:{group} pattern does not fit it.")
        grouped = score.reshape(rows, columns // group, group)
        order = torch.argsort(grouped, dim=-1, descending=True, stable=True)
        mask = torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, order[..., :keep], True)
        return mask.reshape(rows, columns)
    pruned = int(columns * sparsity)
    order = torch.argsort(score, dim=1, stable=True)  # lowest first
    mask = torch.ones_like(score, dtype=torch.bool)
    mask.scatter_(1, order[:, :pruned], False)
    return mask


def full_mask(module: nn.Module, kept: dict[str, torch.Tensor]) -> Mask:
    """The ticket's mask over every prunable tensor: the pruned layers' keep masks, every other weight kept."""
    tensors = {name: kept.get(name, torch.ones_like(p, dtype=torch.bool)) for name, p in
               prunable_parameters(module).items()}
    return Mask(tensors, model=module)


def save_mask(mask: Mask, path: Path) -> None:
    """The mask as a ``.safetensors`` file of 0/1 ``uint8`` tensors (what ``--mask`` reads)."""
    from safetensors.torch import save_file

    save_file({name: mask[name].to(torch.uint8).contiguous() for name in mask}, str(path))
