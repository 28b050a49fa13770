"""Reading attention probabilities out of a model during an ordinary forward pass.

Three sources, tried in this order: a Hugging Face model (eager attention; a hook on each attention module
its class declares in ``_can_record_outputs``, else ``output_attentions=True``), modules implementing the
``AttentionAdapter`` protocol, and ``nn.MultiheadAttention`` (hooks that ask for ``need_weights=True,
average_attn_weights=False``; the output is unchanged). Every source can hand each layer's maps to a
callback as the layer finishes (``run(on_layer=...)``), so a caller need never hold more than one layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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


def _recorded_attention_modules(module: nn.Module) -> list[tuple[nn.Module, int]]:
    """(module, index of the probabilities in its output) for each attention module a Hugging Face model's
    class says records ``attentions`` (transformers' own capture hooks use the same declaration)."""
    specs = (getattr(module, "_can_record_outputs", None) or {}).get("attentions")
    if specs is None:
        return []
    found = []
    for name, sub in module.named_modules():
        for spec in specs if isinstance(specs, list) else [specs]:
            if isinstance(spec, (type, str)):
                target, class_name, layer_name, index = ((spec, None, None, 1) if isinstance(spec, type)
                                                         else (None, spec, None, 1))
            else:
                target, class_name, layer_name = spec.target_class, spec.class_name, spec.layer_name
                index = spec.index
            matches = ((target is not None and isinstance(sub, target))
                       or (class_name is not None and name.endswith(class_name)))
            if matches and (layer_name is None or f".{layer_name.strip('.')}." in f".{name}."):
                found.append((sub, index))
                break
    return found


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


@contextlib.contextmanager
def eager_attention(module: nn.Module) -> Iterator[None]:
    """A Hugging Face model with eager attention while it is recorded (SDPA and flash kernels return no
    probabilities; language models load with SDPA, faster for scoring), its own implementation after."""
    current = getattr(getattr(module, "config", None), "_attn_implementation", None)
    if current in (None, "eager") or not hasattr(module, "set_attn_implementation"):
        yield
        return
    module.set_attn_implementation("eager")
    try:
        yield
    finally:
        module.set_attn_implementation(current)


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
        self._on_layer: Callable[[LayerAttention], None] | None = None
        self._masks: tuple[torch.Tensor, torch.Tensor] | None = None
        self._hooked_huggingface = _recorded_attention_modules(module) if self.kind == "huggingface" else []
        self.streams = self.kind != "huggingface"
        """Whether ``run(on_layer=...)`` hands over layers one at a time. For a Hugging Face model this is
        decided by ``record`` on a probe row: only when its hooks see exactly what ``output_attentions``
        returns (else ``run`` still works, collecting every layer at once)."""

    @contextlib.contextmanager
    def _hooks(self) -> Iterator[None]:
        handles = []
        for name, sub in self.module.named_modules():
            if self.kind == "multihead" and name in self.layer_names:
                handles.append(sub.register_forward_pre_hook(self._ask_for_weights, with_kwargs=True))
                handles.append(sub.register_forward_hook(self._record_multihead, with_kwargs=True))
            elif self.kind == "adapter" and name in self.layer_names:
                handles.append(sub.register_forward_hook(self._record_adapter))
        for sub, index in self._hooked_huggingface if self.kind == "huggingface" else ():
            handles.append(sub.register_forward_hook(self._huggingface_recorder(index)))
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
        self._keep(LayerAttention(probs, key_valid, query_valid, padding_zeroed=True))

    def _record_adapter(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        probs = module.attention_probs
        if probs is None:
            return
        rows, _, queries, keys = probs.shape
        key_mask = getattr(module, "attention_key_mask", None)
        valid = (key_mask.to(torch.bool) if key_mask is not None
                 else torch.ones(rows, keys, dtype=torch.bool, device=probs.device))
        query_valid = valid if queries == keys else torch.ones(rows, queries, dtype=torch.bool, device=probs.device)
        self._keep(LayerAttention(probs, valid[:, None, None, :], query_valid))

    def _keep(self, layer: LayerAttention) -> None:
        if self._on_layer is not None:
            self._on_layer(layer)
        else:
            self._captured.append(layer)

    def _huggingface_recorder(self, index: int) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            probs = output[index] if isinstance(output, tuple) and len(output) > index else None
            if probs is not None:  # hooks are installed only while ``_hooked_run`` runs
                self._keep(LayerAttention(probs, *(self._masks or _all_real(probs)), padding_zeroed=True))
        return record

    def record(self, batch: Features) -> list[LayerAttention]:
        """Each attention layer's probabilities for ``batch``. For a Hugging Face model this also decides
        ``streams``: its hooks must give the very maps ``output_attentions=True`` returns."""
        if self.kind != "huggingface" or not self._hooked_huggingface:
            return self.run(batch)[1]
        streamed = self._hooked_run(batch)[1]
        returned = self._returned_run(batch)[1]
        self.streams = len(streamed) == len(returned) > 0 and all(
            a.probs.shape == b.probs.shape and torch.equal(a.probs, b.probs) for a, b in zip(streamed, returned))
        return returned

    def run(self, batch: Features, *, on_layer: Callable[[LayerAttention], None] | None = None
            ) -> tuple[torch.Tensor, list[LayerAttention]]:
        """The model's logits on ``batch`` and each attention layer's probabilities, from one forward pass.
        With ``on_layer`` (when ``streams``), each layer goes to it as soon as computed and none is kept."""
        if self.kind == "huggingface" and not self.streams:
            return self._returned_run(batch)
        self._on_layer = on_layer
        try:
            return self._hooked_run(batch)
        finally:
            self._on_layer = None

    def _hooked_run(self, batch: Features) -> tuple[torch.Tensor, list[LayerAttention]]:
        self._captured = []
        if self.kind == "huggingface":
            self._masks = self._huggingface_masks(batch)
        try:
            with torch.inference_mode(), self._hooks(), eager_attention(self.module):
                output = call_model(self.module, batch, device=self.device, dtype=self.dtype)
        finally:
            self._masks = None
        captured, self._captured = self._captured, []
        return logits_of(output), captured

    def _returned_run(self, batch: Features) -> tuple[torch.Tensor, list[LayerAttention]]:
        with torch.inference_mode(), eager_attention(self.module):
            output = call_model(self.module, batch, device=self.device, dtype=self.dtype, output_attentions=True)
        return logits_of(output), self._huggingface_layers(batch, output.attentions or ())

    def _huggingface_masks(self, batch: Features) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(key_valid, query_valid) for every layer of a batch, or None for pixels (all real; shapes
        come from the maps)."""
        if not isinstance(batch, TokenInputs):
            return None
        real = torch.as_tensor(batch.attention_mask, device=self.device) != 0
        key_valid = real[:, None, None, :]
        if not is_causal(self.module):
            return key_valid, real
        # Causal: query i sees keys 0..i. The first query sees one key (entropy 0 by construction, whatever the
        # model): it is left out of the mean, which then reads only the queries that had a choice.
        length = real.shape[1]
        key_valid = key_valid & torch.ones(length, length, dtype=torch.bool, device=self.device).tril()[None, None]
        return key_valid, real & (torch.arange(length, device=self.device) > 0)[None, :]

    def _huggingface_layers(self, batch: Features, attentions: tuple[torch.Tensor, ...]) -> list[LayerAttention]:
        masks = self._huggingface_masks(batch)
        return [LayerAttention(a, *(masks or _all_real(a)), padding_zeroed=True) for a in attentions]


def _all_real(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(key_valid, query_valid) of maps whose every key and query is real (image patches and class token)."""
    rows, _, queries, keys = probs.shape
    return (torch.ones(rows, 1, 1, keys, dtype=torch.bool, device=probs.device),
            torch.ones(rows, queries, dtype=torch.bool, device=probs.device))
