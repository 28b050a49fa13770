"""Text runs in token-budgeted batches of rows with one padded length: the budget bounds every batch, a
row's padded length depends on its own length alone, and neither changes a prediction; attention rides on
the predictions' forward pass (each model runs once per row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ticketaudit as ta
from ticketaudit.analyses.predict import ModelRunner, forward_both
from ticketaudit.inputs import TokenInputs, build_text_inputs, padded_lengths

from text_models import WORDS, _tokenizer, prune_magnitude, tiny_bert


def _reviews(rows: int, *, seed: int = 0) -> pd.DataFrame:
    """Reviews of 1 to 40 words (truncated to the tiny model's 32 tokens): four padded lengths."""
    rng = np.random.default_rng(seed)
    text = [" ".join(rng.choice(WORDS, size=k)) for k in rng.integers(1, 41, size=rows)]
    return pd.DataFrame({"review": text, "label": rng.integers(0, 2, size=rows),
                         "group": rng.choice(["a", "b"], size=rows)})


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - transformers type
    return _tokenizer(tmp_path_factory.mktemp("tok"))


def _inputs(tokenizer, rows: int = 90) -> TokenInputs:  # noqa: ANN001
    return build_text_inputs(_reviews(rows), column="review", tokenizer=tokenizer, max_length=32)


def test_padded_length_depends_on_the_row_alone() -> None:
    lengths = np.arange(1, 600)
    padded = padded_lengths(lengths, limit=512)
    assert (padded >= lengths).all() and (padded[lengths <= 512] <= 512).all()
    assert (padded[lengths > 512] == lengths[lengths > 512]).all()  # never truncated here, never beyond the row
    long = lengths >= 32
    assert ((padded[long] - lengths[long]) < 0.25 * padded[long]).all()  # under a quarter is padding
    assert ((padded - lengths)[lengths < 32] <= 7).all()
    assert len(np.unique(padded[lengths <= 512])) < 40  # few lengths: batches stay full


@pytest.mark.parametrize("budget", [1, 16, 64, 100_000])
def test_batches_hold_the_token_budget_and_one_length(tokenizer, budget: int) -> None:  # noqa: ANN001
    inputs = _inputs(tokenizer)
    seen = []
    for positions, batch in inputs.batches(tokens=budget):
        rows, length = batch.shape
        assert rows * length <= budget or rows == 1
        assert (padded_lengths(inputs.lengths[positions], limit=inputs.limit) == length).all()
        for row, position in enumerate(positions):  # the same real tokens, padding masked
            real = int(inputs.lengths[position])
            np.testing.assert_array_equal(batch.input_ids[row, :real], inputs.input_ids[position, :real])
            assert batch.attention_mask[row].sum() == real and (batch.input_ids[row, real:] == inputs.pad_id).all()
        seen.extend(positions.tolist())
    assert sorted(seen) == list(range(len(inputs)))
    assert len(set(seen)) == len(inputs)


def test_a_left_padding_tokenizer_scores_each_row_as_it_scores_alone(tmp_path: Path) -> None:
    """Rows are padded on the right whatever the tokenizer's padding_side: left padding would shift the
    real tokens' absolute positions, and a row would score differently than it does alone."""
    tokenizer = _tokenizer(tmp_path)
    tokenizer.padding_side = "left"
    inputs = build_text_inputs(_reviews(40, seed=7), column="review", tokenizer=tokenizer, max_length=32)
    assert (inputs.attention_mask[:, 0] == 1).all()  # every row starts at position 0
    runner = ModelRunner(tiny_bert(seed=5), device=torch.device("cpu"), precision="float64")
    batched = runner.probabilities(inputs, batch_size=64)
    alone = np.concatenate([runner.probabilities(inputs.padded_to(np.array([i]), int(inputs.lengths[i])),
                                                 batch_size=10**6) for i in range(len(inputs))])
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6)


def test_a_tokenizer_without_a_padding_token_is_a_clear_error(tmp_path: Path) -> None:
    from ticketaudit.exceptions import InvalidInputError

    tokenizer = _tokenizer(tmp_path)
    tokenizer.pad_token = None
    with pytest.raises(InvalidInputError, match="has no padding token"):
        build_text_inputs(_reviews(5), column="review", tokenizer=tokenizer, max_length=32)


def test_padding_and_the_budget_never_change_a_prediction(tokenizer) -> None:  # noqa: ANN001
    inputs = _inputs(tokenizer)
    runner = ModelRunner(tiny_bert(seed=3), device=torch.device("cpu"), precision="float64")
    by_budget = [runner.probabilities(inputs, batch_size=budget) for budget in (1, 24, 100_000)]
    for other in by_budget[1:]:
        np.testing.assert_array_equal(other, by_budget[0])  # float64 mode: byte-identical
    alone = np.concatenate([runner.probabilities(inputs.padded_to(np.array([i]), int(inputs.lengths[i])),
                                                 batch_size=10**6) for i in range(len(inputs))])
    np.testing.assert_allclose(by_budget[0], alone, rtol=0, atol=1e-6)  # padding is masked


def test_attention_rides_on_the_prediction_pass(tokenizer) -> None:  # noqa: ANN001
    """forward_both with the attention stream gives the plain pass's probabilities and the stream's values."""
    from ticketaudit.analyses.attention import AttentionStream
    from ticketaudit.analyses.attention_capture import AttentionRecorder

    inputs = _inputs(tokenizer, rows=40)
    dense_model = tiny_bert(seed=1)
    dense = ModelRunner(dense_model, device=torch.device("cpu"))
    ticket = ModelRunner(prune_magnitude(dense_model, keep=0.4), device=torch.device("cpu"))
    cpu = torch.device("cpu")

    def stream(batch_size: int) -> AttentionStream:
        return AttentionStream(AttentionRecorder(dense.module, device=cpu), AttentionRecorder(ticket.module, device=cpu),
                               probe=inputs, n_strata=1, n_boot=100, seed=0, batch_size=batch_size)

    shared = forward_both(dense, ticket, inputs, batch_size=64, observer=stream(64))
    np.testing.assert_array_equal(shared.proba_dense, dense.probabilities(inputs, batch_size=1000))
    np.testing.assert_array_equal(shared.proba_ticket, ticket.probabilities(inputs, batch_size=1000))
    alone = stream(10**6)
    alone.update(inputs, np.zeros(len(inputs), dtype=np.int64), np.arange(len(inputs)))
    separate = stream(1)
    separate.add(shared.observed, np.zeros(len(inputs), dtype=np.int64), np.arange(len(inputs)))
    np.testing.assert_allclose(separate.sums.finish().sums, alone.sums.finish().sums, rtol=0, atol=1e-9)


def test_each_model_runs_once_per_row_with_attention(tmp_path: Path) -> None:
    """An audit with metrics and attention sends every row through each model once (plus a few one-row probes: the
    output width, the attention check, the cost count behind --precision auto)."""
    calls = {"rows": 0}

    def count(module: torch.nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        calls["rows"] += int(kwargs["input_ids"].shape[0])

    dense = tiny_bert(seed=2)
    ticket = prune_magnitude(dense, keep=0.5)
    counted = dense.__class__(dense.config).eval()
    counted.load_state_dict(dense.state_dict())
    counted.register_forward_hook(count, with_kwargs=True)  # copied with the model by the audit
    frame = _reviews(120, seed=4)
    result = ta.audit(dense=counted, ticket=ticket, tokenizer=_tokenizer(tmp_path), data=frame, target="label",
                      sensitive="group", text="review", analyses="metrics,attention", n_boot=100, seed=0)
    assert result.attention is not None and result.attention.rows == 120
    assert len(frame) <= calls["rows"] <= len(frame) + 4
