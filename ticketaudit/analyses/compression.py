"""What the ticket saves: per-layer density, mask entropy and size in bits (dense vs ticket)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..tickets.mask import Mask, binary_entropy_bits, prunable_parameters
from .base import number


@dataclass(frozen=True, kw_only=True)
class LayerCompression:
    name: str
    shape: tuple[int, ...]
    parameters: int
    kept: int
    density: float
    mask_entropy_bits: float
    dense_bits: float
    ticket_bits: float
    pattern: str | None = None
    """The N:M pattern the mask follows along its last dimension (``2:4``, ``4:8``), if any."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "parameters": self.parameters, "kept": self.kept,
                "density": number(self.density), "mask_entropy_bits": number(self.mask_entropy_bits),
                "dense_bits": number(self.dense_bits), "ticket_bits": number(self.ticket_bits),
                "pattern": self.pattern}


@dataclass(frozen=True)
class CompressionResult:
    """Sizes follow DESIGN.md: dense N * b_w bits; ticket (kept * b_w) + N * H(density) bits."""

    layers: tuple[LayerCompression, ...]
    bits_per_weight: int
    density: float
    dense_bits: float
    ticket_bits: float

    @property
    def smaller(self) -> bool:
        return self.ticket_bits < self.dense_bits

    @property
    def statement(self) -> str:
        """The finding in words, kept in the JSON for scripts that read it (the report writes its own)."""
        ratio = self.ticket_bits / self.dense_bits if self.dense_bits else float("nan")
        if self.smaller:
            return (f"The ticket keeps {self.density:.1%} of its prunable weights and, with an entropy-coded "
                    f"mask, needs {ratio:.1%} of the dense model's storage.")
        return (f"The ticket is NOT smaller than the dense model: it keeps {self.density:.1%} of its prunable "
                f"weights, and storing those plus the mask takes {ratio:.1%} of the dense size.")

    @property
    def pattern(self) -> str | None:
        """The N:M pattern every pruned layer follows, if they all follow the same one (a layer with under 1% zeros,
        such as an embedding with a zero padding row, counts as kept)."""
        found = {layer.pattern for layer in self.layers if layer.density < 0.99}
        return found.pop() if len(found) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers], "bits_per_weight": self.bits_per_weight,
                "pattern": self.pattern,
                "density": number(self.density), "dense_bits": number(self.dense_bits),
                "ticket_bits": number(self.ticket_bits), "smaller": self.smaller, "statement": self.statement}


def analyse_compression(mask: Mask, model: torch.nn.Module) -> CompressionResult:
    """Per-layer and total accounting of the ticket's mask."""
    weights = prunable_parameters(model)
    bits = max((torch.finfo(w.dtype).bits if w.is_floating_point() else 32) for w in weights.values()) if weights else 32
    layers = []
    for name, tensor in mask.items():
        total = tensor.numel()
        kept = int(tensor.count_nonzero())  # no int64 copy of a large mask
        density = kept / total
        entropy = binary_entropy_bits(density)
        layers.append(
            LayerCompression(
                name=name,
                shape=tuple(tensor.shape),
                parameters=total,
                kept=kept,
                density=density,
                mask_entropy_bits=entropy,
                dense_bits=float(total * bits),
                ticket_bits=float(kept * bits + total * entropy),
                pattern=nm_pattern(tensor) if kept < total else None,
            )
        )
    dense_bits = sum(layer.dense_bits for layer in layers)
    ticket_bits = sum(layer.ticket_bits for layer in layers)
    total = sum(layer.parameters for layer in layers)
    return CompressionResult(
        tuple(layers), bits, sum(layer.kept for layer in layers) / total if total else 1.0, dense_bits, ticket_bits
    )


def nm_pattern(mask: torch.Tensor) -> str | None:
    """``N:M`` when every group of M consecutive weights along the last dimension keeps at most N = M/2 (M = 4, 8:
    the patterns sparse tensor cores run), else None."""
    for group in (4, 8):
        if mask.dim() < 2 or mask.shape[-1] % group:
            continue
        groups = mask.reshape(-1, group)
        if all(int(part.sum(dim=1).max()) <= group // 2 for part in groups.split(NM_GROUPS_AT_ONCE)):
            return f"{group // 2}:{group}"
    return None


NM_GROUPS_AT_ONCE = 2**18
"""Groups counted at once when looking for an N:M pattern (a bool sum is int64: a whole embedding at once held
eight bytes per weight, 0.29 GiB on a 49k-token vocabulary)."""
