"""Reading attention probabilities out of a model during an ordinary forward pass.

Three sources, tried in this order: a Hugging Face model (``output_attentions=True``, eager
attention), modules implementing the ``AttentionAdapter`` protocol, and ``nn.MultiheadAttention``
(hooks that ask for ``need_weights=True, average_attn_weights=False``; the output is unchanged).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..inputs import TokenInputs
from ..tickets.huggingface import is_causal, is_huggingface_module
from .predict import Features, call_model, logits_of

MHA_ARGUMENTS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                 "is_causal")


@runtime_checkable
class AttentionAdapter(Protocol):
    """A custom attention module ticketaudit can read: set ``exposes_attention = True`` on the class and
    store the post-softmax probabilities, shape (rows, heads, queries, keys), in ``attention_probs``
    during ``forward``. Optionally store ``attention_key_mask`` (rows, keys), True for real keys."""

    exposes_attention: bool
    attention_probs: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class LayerAttention:
    """One layer's probabilities (rows, heads, queries, keys) and which keys and queries are real
    (not padding): ``key_valid`` broadcasts to the probabilities, ``query_valid`` is (rows, queries)."""

    probs: torch.Tensor
    key_valid: torch.Tensor
    query_valid: torch.Tensor
    padding_zeroed: bool = False
    """True when masked keys already have probability exactly 0 (a masked softmax: Hugging Face, MHA)."""


def attention_source(module: nn.Module) -> tuple[str, list[str]] | None:
    """("huggingface" | "adapter" | "multihead", layer names), or None when the model has no attention."""
    if is_huggingface_module(module):
        if getattr(module.config, "num_attention_heads", None) is None and getattr(module.config, "n_head", None) is None:
            return None  # a convolutional Hugging Face model (ResNet, MobileNet, ConvNeXt)
        layers = getattr(module.config, "num_hidden_layers", None) or getattr(module.config, "n_layer", None) or 0
        return "huggingface", [f"layer {i}" for i in range(int(layers))]
    adapters = [name for name, m in module.named_modules() if getattr(type(m), "exposes_attention", False) is True]
    if adapters:
        return "adapter", adapters
    multihead = [name for name, m in module.named_modules() if isinstance(m, nn.MultiheadAttention)]
    if multihead:
        return "multihead", multihead
    return None


def _pad_from_mask(mask: torch.Tensor | None, *, rows: int, keys: int, device: torch.device) -> torch.Tensor:
    """(rows, keys) True where the key is padding, from a bool or additive (-inf) key_padding_mask."""
    if mask is None:
        return torch.zeros(rows, keys, dtype=torch.bool, device=device)
    if mask.dtype == torch.bool:
        return mask.reshape(rows, keys)
    return torch.isneginf(mask).reshape(rows, keys)


def _blocked_from_attn_mask(mask: torch.Tensor | None, *, rows: int, heads: int) -> torch.Tensor | None:
    """Broadcastable (1|rows, 1|heads, queries, keys) True where a key is masked for a query."""
    if mask is None:
        return None
    blocked = mask if mask.dtype == torch.bool else torch.isneginf(mask)
    if blocked.dim() == 2:
        return blocked[None, None]
    return blocked.reshape(rows, heads, *blocked.shape[-2:])


class AttentionRecorder:
    """Runs a model and returns each attention layer's probabilities for the batch."""

    def __init__(self, module: nn.Module, *, device: torch.device) -> None:
        found = attention_source(module)
        if found is None:
            raise ValueError("model has no attention")
        self.module = module
        self.device = device
        self.kind, self.layer_names = found
        self.dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float64)
        self._captured: list[LayerAttention] = []

    @contextlib.contextmanager
    def _hooks(self) -> Iterator[None]:
        handles = []
        for name, sub in self.module.named_modules():
            if self.kind == "multihead" and name in self.layer_names:
                handles.append(sub.register_forward_pre_hook(self._ask_for_weights, with_kwargs=True))
                handles.append(sub.register_forward_hook(self._record_multihead, with_kwargs=True))
            elif self.kind == "adapter" and name in self.layer_names:
                handles.append(sub.register_forward_hook(self._record_adapter))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _ask_for_weights(module: nn.Module, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        for name, value in zip(MHA_ARGUMENTS[3:], args[3:]):
            kwargs[name] = value
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = False
        return tuple(args[:3]), kwargs

    def _record_multihead(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        probs = output[1]
        if probs.dim() == 3:  # unbatched input
            probs = probs.unsqueeze(0)
        rows, heads, queries, keys = probs.shape
        pad = _pad_from_mask(kwargs.get("key_padding_mask"), rows=rows, keys=keys, device=probs.device)
        key_valid = ~pad[:, None, None, :]
        blocked = _blocked_from_attn_mask(kwargs.get("attn_mask"), rows=rows, heads=heads)
        if blocked is not None:
            key_valid = key_valid & ~blocked
        query_valid = ~pad if queries == keys else torch.ones(rows, queries, dtype=torch.bool, device=probs.device)
        self._captured.append(LayerAttention(probs, key_valid, query_valid, padding_zeroed=True))

    def _record_adapter(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        probs = module.attention_probs
        if probs is None:
            return
        rows, _, queries, keys = probs.shape
        key_mask = getattr(module, "attention_key_mask", None)
        valid = (key_mask.to(torch.bool) if key_mask is not None
                 else torch.ones(rows, keys, dtype=torch.bool, device=probs.device))
        query_valid = valid if queries == keys else torch.ones(rows, queries, dtype=torch.bool, device=probs.device)
        self._captured.append(LayerAttention(probs, valid[:, None, None, :], query_valid))

    def record(self, batch: Features) -> list[LayerAttention]:
        """Each attention layer's probabilities for ``batch``."""
        return self.run(batch)[1]

    def run(self, batch: Features) -> tuple[torch.Tensor, list[LayerAttention]]:
        """The model's logits on ``batch`` and each attention layer's probabilities, from one forward pass."""
        self._captured = []
        with torch.inference_mode():
            if self.kind == "huggingface":
                output = call_model(self.module, batch, device=self.device, dtype=self.dtype, output_attentions=True)
                return logits_of(output), self._huggingface_layers(batch, output.attentions or ())
            with self._hooks():
                output = call_model(self.module, batch, device=self.device, dtype=self.dtype)
        captured, self._captured = self._captured, []
        return logits_of(output), captured

    def _huggingface_layers(self, batch: Features, attentions: tuple[torch.Tensor, ...]) -> list[LayerAttention]:
        if not isinstance(batch, TokenInputs):  # images: every patch (and the class token) is real
            return [LayerAttention(a, torch.ones(a.shape[0], 1, 1, a.shape[-1], dtype=torch.bool, device=a.device),
                                   torch.ones(a.shape[0], a.shape[-2], dtype=torch.bool, device=a.device),
                                   padding_zeroed=True) for a in attentions]
        real = torch.as_tensor(batch.attention_mask, device=self.device) != 0
        key_valid = real[:, None, None, :]
        if is_causal(self.module):
            length = real.shape[1]
            key_valid = key_valid & torch.ones(length, length, dtype=torch.bool, device=self.device).tril()[None, None]
        return [LayerAttention(a, key_valid, real, padding_zeroed=True) for a in attentions]
