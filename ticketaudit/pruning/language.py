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


def calibration_batches(tokenizer: Any, text: str, *, sequences: int, length: int) -> list[torch.Tensor]:
    """``sequences`` chunks of ``length`` tokens of ``text`` (one batch each), tokenised once."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < length:
        fail(f"the calibration text has {len(ids)} tokens; it needs at least {length} (one sequence).")
    step = max(length, (len(ids) - length) // max(1, sequences - 1)) if sequences > 1 else length
    starts = list(range(0, len(ids) - length + 1, step))[:sequences]
    return [torch.tensor([ids[s:s + length]]) for s in starts]


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
