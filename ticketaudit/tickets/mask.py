"""``Mask``: a validated ``{parameter name: bool tensor}`` over a model's prunable weights."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from .._validation import fail

MSG_MASK_UNKNOWN = "mask names '{name}', which is not a prunable weight of the model. Prunable weights: {known}."
MSG_MASK_MISSING = (
    "mask has no entry for '{name}'. A mask must cover every prunable weight (tensors with >= 2 "
    "dimensions); add an all-ones tensor for layers that were not pruned."
)
MSG_MASK_SHAPE = "mask for '{name}' has shape {got} but the model's is {expected}."
MSG_MASK_BINARY = "mask for '{name}' is not binary (found value {value}). A mask holds only 0 and 1."


def prunable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights a ticket may prune: parameters with >= 2 dimensions (biases and norms excluded)."""
    return {name: p for name, p in model.named_parameters() if p.dim() >= 2}


def binary_entropy_bits(p: float) -> float:
    """H(p) in bits; 0 at p = 0 or 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


class _NonzeroWeights(Mapping[str, torch.Tensor]):
    """Each weight's ``!= 0`` on the CPU, computed when asked."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        self._weights = weights

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._weights[name].detach().to("cpu") != 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)


class Mask(Mapping[str, torch.Tensor]):
    """Immutable mapping of prunable weight names to boolean keep-masks, validated against a model."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, model: nn.Module, fresh: bool = False) -> None:
        """``fresh``: the tensors were made for this mask (not the caller's), so they are kept without a copy."""
        prunable = prunable_parameters(model)
        known = ", ".join(list(prunable)[:10]) + (", ..." if len(prunable) > 10 else "")
        checked: dict[str, torch.Tensor] = {}
        for name, tensor in tensors.items():
            if name not in prunable:
                fail(MSG_MASK_UNKNOWN.format(name=name, known=known))
            if not isinstance(tensor, torch.Tensor):
                fail(f"mask for '{name}' is not a tensor but {type(tensor).__name__}.")
            expected = tuple(prunable[name].shape)
            if tuple(tensor.shape) != expected:
                fail(MSG_MASK_SHAPE.format(name=name, got=tuple(tensor.shape), expected=expected))
            if tensor.dtype != torch.bool:
                values = tensor.detach().to("cpu", torch.float64)
                bad = values[(values != 0) & (values != 1)]
                if bad.numel():
                    fail(MSG_MASK_BINARY.format(name=name, value=float(bad.flatten()[0])))
                tensor = values != 0
            checked[name] = tensor.detach().to("cpu") if fresh else tensor.detach().to("cpu").clone()
        for name in prunable:
            if name not in checked:
                fail(MSG_MASK_MISSING.format(name=name))
        self._tensors = {name: checked[name] for name in prunable}

    @classmethod
    def from_zeros(cls, model: nn.Module) -> Mask:
        """The mask of a ticket whose pruned weights are exact zeros, read from its weights each time it is asked
        (not held: a 135M-weight language model's mask is 135 MB). The ticket is only read, so it stays the same."""
        mask = cls.__new__(cls)
        mask._tensors = _NonzeroWeights(prunable_parameters(model))
        return mask

    @classmethod
    def ones(cls, model: nn.Module) -> Mask:
        """The mask of an unpruned model: one shared ``True`` seen at every shape (no memory per weight; a 135M-weight
        language model would otherwise hold 135 MB of ones)."""
        mask = cls.__new__(cls)
        mask._tensors = {n: torch.ones((), dtype=torch.bool).expand(p.shape) for n, p in
                         prunable_parameters(model).items()}
        return mask

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def density(self) -> dict[str, float]:
        """Kept share per tensor."""
        return {name: int(t.count_nonzero()) / max(t.numel(), 1) for name, t in self._tensors.items()}

    @property
    def total(self) -> int:
        return sum(t.numel() for t in self._tensors.values())

    @property
    def kept(self) -> int:
        return sum(int(t.count_nonzero()) for t in self._tensors.values())

    def apply(self, model: nn.Module, *, share_kept: bool = False) -> nn.Module:
        """A copy of ``model`` with pruned weights set to zero; ``model`` is not touched. ``share_kept``: tensors the
        mask keeps whole (and biases, norms, buffers) are the dense model's own, not copies — for a ticket that is
        only read (an audit), never trained (a language model's embeddings: a tenth of its memory)."""
        whole = {name for name, tensor in self._tensors.items() if bool(tensor.all())} if share_kept else set()
        memo: dict[int, object] = {}
        if share_kept:
            prunable = prunable_parameters(model)
            memo = {id(p): p for name, p in model.named_parameters() if name not in prunable or name in whole}
            memo.update({id(b): b for b in model.buffers()})
        pruned = copy.deepcopy(model, memo)
        with torch.no_grad():
            for name, param in prunable_parameters(pruned).items():
                if name not in whole:
                    param.mul_(self._tensors[name].to(param.device, param.dtype))
        return pruned
