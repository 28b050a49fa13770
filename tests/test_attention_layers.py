"""Attention reduced layer by layer: both models meet at each layer, so at most one layer's maps per model
are alive, and the values equal those of holding every layer at once. A batch goes layer by layer when its
every-layer maps would exceed the memory budget (forced here with a tiny budget)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from text_models import prune_magnitude, tiny_bert

from ticketaudit.analyses import attention
from ticketaudit.analyses.attention import Abandoned, AttentionStream
from ticketaudit.analyses.attention_capture import AttentionRecorder
from ticketaudit.inputs import TokenInputs
from ticketaudit.models import FTTransformer

CPU = torch.device("cpu")


def _tokens(rows: int = 6, length: int = 12, seed: int = 0) -> TokenInputs:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 20, size=(rows, length))
    mask = np.ones((rows, length), dtype=np.int64)
    for row in range(rows):  # rows of different lengths: padding must be ignored in both modes
        real = int(rng.integers(3, length + 1))
        ids[row, real:], mask[row, real:] = 0, 0
    return TokenInputs(ids, mask)


def _bert_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    dense = tiny_bert().double()
    return dense, prune_magnitude(dense, keep=0.5)


def _vit_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
                                    image_size=8, patch_size=4, num_labels=2, attn_implementation="eager")
    dense = transformers.ViTForImageClassification(config).eval().double()
    return dense, prune_magnitude(dense, keep=0.5)


def _mha_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    dense = FTTransformer(in_features=5, column_sizes=[1, 1, 3], out_features=2, layers=3).double().eval()
    ticket = FTTransformer(in_features=5, column_sizes=[1, 1, 3], out_features=2, layers=3).double().eval()
    return dense, ticket


PAIRS: dict[str, tuple[Callable[[], tuple[torch.nn.Module, torch.nn.Module]], Callable[[], Any]]] = {
    "bert": (_bert_pair, _tokens),
    "vit": (_vit_pair, lambda: np.random.default_rng(0).normal(size=(5, 3, 8, 8))),
    "multihead": (_mha_pair, lambda: np.random.default_rng(0).normal(size=(7, 5))),
}


def _budget(monkeypatch: pytest.MonkeyPatch, *, layer_by_layer: bool) -> None:
    monkeypatch.setattr(attention, "MEMORY_BUDGET_BYTES", 1 if layer_by_layer else 2**40)


def _stream(dense: torch.nn.Module, ticket: torch.nn.Module, batch: Any) -> AttentionStream:
    return AttentionStream(AttentionRecorder(dense, device=CPU), AttentionRecorder(ticket, device=CPU), probe=batch,
                           n_strata=1, n_boot=10, seed=0, batch_size=64)


def _stream_of(kind: str) -> tuple[AttentionStream, Any]:
    """A fresh model pair of ``kind``, its stream and a batch."""
    build, make_batch = PAIRS[kind]
    dense, ticket = build()
    batch = make_batch()
    return _stream(dense, ticket, batch), batch


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_layer_by_layer_equals_every_layer_at_once(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream, batch = _stream_of(kind)
    assert stream.can_go_layer_by_layer  # Hugging Face hooks were checked against output_attentions on the probe
    _budget(monkeypatch, layer_by_layer=True)
    assert stream.layer_by_layer(batch)
    by_layer = stream.forward(batch)
    _budget(monkeypatch, layer_by_layer=False)
    assert not stream.layer_by_layer(batch)
    at_once = stream.forward(batch)
    assert by_layer[2].shape == (len(batch), 3 * sum(stream.heads_per_layer))
    np.testing.assert_array_equal(by_layer[2], at_once[2])
    torch.testing.assert_close(by_layer[0], at_once[0], rtol=0, atol=0)
    torch.testing.assert_close(by_layer[1], at_once[1], rtol=0, atol=0)


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_at_most_one_layer_of_maps_per_model_is_alive(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream, batch = _stream_of(kind)
    alive: weakref.WeakSet[torch.Tensor] = weakref.WeakSet()
    seen: list[int] = []
    reduce = attention.compare_layer

    def watched(first: Any, second: Any) -> tuple[torch.Tensor, ...]:
        alive.add(first.probs)
        alive.add(second.probs)
        seen.append(len(alive))
        return reduce(first, second)

    monkeypatch.setattr(attention, "compare_layer", watched)
    _budget(monkeypatch, layer_by_layer=True)
    stream.forward(batch)
    assert len(seen) == len(stream.heads_per_layer)
    assert max(seen) == 2, seen  # this layer's pair only: earlier layers' maps are gone
    seen.clear()
    _budget(monkeypatch, layer_by_layer=False)
    stream.forward(batch)
    assert max(seen) > 2  # the test can fail: holding every layer keeps them all alive


class _Failing(torch.nn.Module):
    """Raises in the forward pass of the layer it wraps."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("this layer is broken")


def _run_with_deadline(function: Callable[[], Any], *, seconds: float = 60) -> BaseException | None:
    """``function``'s exception (None if it returned); fails the test if it does not end in time (a hang)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            function()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the layer-by-layer pass hung"
    return outcome[0]


@pytest.mark.parametrize("failing", ["dense", "ticket"])
def test_a_failing_model_stops_both_passes_with_its_own_error(failing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _budget(monkeypatch, layer_by_layer=True)
    dense, ticket = _mha_pair()
    batch = np.random.default_rng(0).normal(size=(4, 5))
    stream = _stream(dense, ticket, batch)
    broken = dense if failing == "dense" else ticket
    broken.encoder.layers[2] = _Failing(broken.encoder.layers[2])
    error = _run_with_deadline(lambda: stream.forward(batch))
    assert isinstance(error, ValueError) and "this layer is broken" in str(error)


def test_different_layer_counts_stop_without_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    _budget(monkeypatch, layer_by_layer=True)
    dense, ticket = _mha_pair()
    batch = np.random.default_rng(0).normal(size=(4, 5))
    stream = _stream(dense, ticket, batch)
    del ticket.encoder.layers[2]
    ticket.encoder.num_layers = 2
    error = _run_with_deadline(lambda: stream.forward(batch))
    assert isinstance(error, Abandoned) and "different numbers of attention layers" in str(error)


def test_a_model_whose_hooks_disagree_with_output_attentions_collects_every_layer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    dense, ticket = _bert_pair()
    batch = _tokens()
    monkeypatch.setattr(type(dense), "_can_record_outputs", {"attentions": torch.nn.LayerNorm}, raising=False)
    _budget(monkeypatch, layer_by_layer=True)
    stream = _stream(dense, ticket, batch)
    assert not stream.can_go_layer_by_layer  # the hooks saw LayerNorm outputs, not attention maps: not trusted
    assert not stream.layer_by_layer(batch) and stream.max_rows(12) == 1  # every layer at once, a row at a time
    values = stream.forward(batch)[2]
    monkeypatch.undo()
    reference = _stream(dense, ticket, batch)
    assert reference.can_go_layer_by_layer
    np.testing.assert_array_equal(values, reference.forward(batch)[2])


def test_rows_too_big_for_the_budget_at_every_layer_run_layer_by_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    dense, ticket = _bert_pair()
    batch = _tokens(rows=8, length=12)
    stream = _stream(dense, ticket, batch)
    every, one = stream._every_layer_bytes, stream._one_layer_bytes
    assert every > one  # 2 layers
    monkeypatch.setattr(attention, "MEMORY_BUDGET_BYTES", every * 3)  # 3 rows holding every layer
    assert stream.max_rows(12) == 3 and not stream.layer_by_layer(batch[:3])
    monkeypatch.setattr(attention, "MEMORY_BUDGET_BYTES", (every + one) // 2)  # not one row: layer by layer
    assert stream.max_rows(12) == 1 and stream.layer_by_layer(batch[:1])
    monkeypatch.setattr(attention, "MEMORY_BUDGET_BYTES", one * 4)
    assert stream.max_rows(12) == 2 and stream.max_rows(24) == 1  # a row's maps grow with its length squared


def test_the_dense_models_thread_keeps_the_callers_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Intra-op threads are a per-thread setting: a worker (one core each) must not run its dense model on all."""
    _budget(monkeypatch, layer_by_layer=True)
    dense, ticket = _mha_pair()
    batch = np.random.default_rng(0).normal(size=(4, 5))
    stream = _stream(dense, ticket, batch)
    seen: list[tuple[str, int]] = []
    dense.register_forward_hook(lambda *_: seen.append((threading.current_thread().name, torch.get_num_threads())))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        stream.forward(batch)
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 1 and seen[0][0].startswith("ticketaudit-dense") and seen[0][1] == 1
