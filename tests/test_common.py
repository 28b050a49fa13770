"""One battery every analysis passes (scikit-learn's check_estimator, for analyses)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import Fixture
from helpers import synthetic_inputs

import torch

from ticketaudit.analyses.attention import analyse_attention
from ticketaudit.analyses.compression import analyse_compression
from ticketaudit.analyses.disagreement import analyse_disagreement
from ticketaudit.analyses.likelihood import analyse_likelihood
from ticketaudit.analyses.performance import analyse_performance
from ticketaudit.models import FTTransformer
from ticketaudit.pruning.imp import global_magnitude_mask
from ticketaudit.tickets.mask import Mask


def _attention(inputs, *, identical: bool = False):
    torch.manual_seed(0)
    dense = FTTransformer(in_features=4, column_sizes=[1, 1, 2], out_features=2).double().eval()
    mask = Mask.ones(dense) if identical else global_magnitude_mask(dense, keep=0.5)
    features = np.random.default_rng(1).normal(size=(len(inputs.labels), 4))
    return analyse_attention(inputs, dense=dense, ticket=mask.apply(dense), ticket_mask=mask, features=features,
                             device=torch.device("cpu"), batch_size=256)


def _inputs(seed: int = 0, identical: bool = False):
    rng = np.random.default_rng(seed)
    n = 900
    labels = rng.integers(0, 2, size=n)
    dense = np.where(rng.random(n) < 0.8, labels, 1 - labels)
    ticket = dense.copy() if identical else np.where(rng.random(n) < 0.1, 1 - dense, dense)
    sensitive = {"sex": rng.choice(["F", "M"], size=n), "race": rng.choice(["A", "B"], size=n)}
    return synthetic_inputs(labels, dense, ticket, sensitive, n_boot=150, seed=seed)


def _likelihood(inputs, *, identical: bool = False):
    """Per-text log-likelihoods drawn for the same rows and groups (a language model's texts have no labels)."""
    rng = np.random.default_rng(2)
    tokens = rng.integers(5, 40, size=len(inputs.labels))
    dense = -(3 + rng.normal(0, 0.5, size=len(tokens))) * tokens
    ticket = dense.copy() if identical else dense - (0.2 + rng.normal(0, 0.1, size=len(tokens))) * tokens
    return analyse_likelihood(dense, ticket, tokens, inputs.groups, n_boot=inputs.n_boot, seed=inputs.seed,
                              confidence=inputs.confidence, min_group_size=inputs.min_group_size)


ANALYSES = {
    "likelihood": lambda inputs, fx: _likelihood(inputs),
    "performance": lambda inputs, fx: analyse_performance(inputs),
    "disagreement": lambda inputs, fx: analyse_disagreement(inputs),
    "compression": lambda inputs, fx: analyse_compression(fx.mask, fx.ticket),
    "attention": lambda inputs, fx: _attention(inputs),
}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_result_is_frozen_and_json_safe(name: str, fx: Fixture) -> None:
    result = ANALYSES[name](_inputs(), fx)
    assert dataclasses.is_dataclass(result) and result.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(result, dataclasses.fields(result)[0].name, None)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text) == result.to_dict()


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_result_is_deterministic(name: str, fx: Fixture) -> None:
    assert ANALYSES[name](_inputs(), fx).to_dict() == ANALYSES[name](_inputs(), fx).to_dict()


@pytest.mark.parametrize("name", ["performance", "disagreement", "attention", "likelihood"])
def test_identical_models_show_no_change(name: str, fx: Fixture) -> None:
    if name == "likelihood":
        result = _likelihood(_inputs(identical=True), identical=True).to_dict()
        for group in [result["overall"], *result["groups"]]:
            assert all(m["delta"] == 0 and m["ci"] == [0, 0] for m in group["metrics"].values())
        assert all(g["excess_loss_increase"]["value"] == 0 for g in result["groups"])
        return
    if name == "attention":
        result = _attention(_inputs(identical=True), identical=True).to_dict()
        assert all(h["delta"] == 0 and h["js"] == 0 for h in result["heads"])
        assert result["summary"]["fell"] == result["summary"]["rose"] == 0
        return
    result = ANALYSES[name](_inputs(identical=True), fx).to_dict()
    if name == "performance":
        assert all(m["delta"] in (0, None) for m in result["overall"]["metrics"].values())
    else:
        assert result["overall"]["flips"] == 0 and result["examples"] == []


def test_compression_of_an_unpruned_model_is_not_smaller(fx: Fixture) -> None:
    result = analyse_compression(Mask.ones(fx.dense), fx.dense)
    assert result.density == 1.0 and not result.smaller and "NOT smaller" in result.statement
    pruned = analyse_compression(fx.mask, fx.ticket)
    assert pruned.smaller and abs(pruned.density - fx.mask.kept / fx.mask.total) < 1e-12
