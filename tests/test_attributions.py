"""Captum attributions: completeness, zero for ignored inputs, aggregation, batching, sampling, reliance."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import synthetic_inputs

import ticketaudit as ta
from ticketaudit.analyses.attributions import (
    METHODS, AttributionSettings, analyse_attributions, attribute, stratified_sample, to_raw_columns)
from ticketaudit.models import MLP
from ticketaudit.preprocess import Preprocessor

CPU = torch.device("cpu")


def _model(seed: int = 0, inputs: int = 5) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MLP(in_features=inputs, hidden=[6], out_features=2)


def _features(n: int = 200, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_integrated_gradients_completeness_for_both_models() -> None:
    x = _features()
    targets = np.random.default_rng(1).integers(0, 2, size=len(x))
    for model in (_model(0), _model(1)):
        attributions, delta = attribute(model, x, targets, method="integrated-gradients", steps=200,
                                        baselines=np.zeros((1, 5)), batch_size=64, device=CPU)
        with torch.no_grad():
            logits = model.double()(torch.as_tensor(x)).numpy()
            base = model(torch.zeros(1, 5, dtype=torch.float64)).numpy()
        expected = logits[np.arange(len(x)), targets] - base[0, targets]
        error = np.abs(attributions.sum(1) - expected)
        assert error.max() < 5e-3  # ReLU kinks limit the quadrature; 200 steps keep it small
        assert delta is not None and delta == pytest.approx(error.max(), rel=1e-3, abs=1e-6)


INPUT_METHODS = sorted(m for m in METHODS if m != "layer-integrated-gradients")


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_an_ignored_input_gets_zero_attribution(method: str) -> None:
    model = _model()
    with torch.no_grad():
        model.layers[0].weight[:, 2] = 0.0
    x = _features()
    out, _ = attribute(model, x, np.ones(len(x), dtype=int), method=method, steps=20,
                       baselines=x[:5] if method == "gradient-shap" else np.zeros((1, 5)), batch_size=50, device=CPU)
    assert out.shape == x.shape and np.all(out[:, 2] == 0) and np.abs(out).sum() > 0


def test_batched_equals_unbatched() -> None:
    x, targets = _features(), np.zeros(200, dtype=int)
    one, _ = attribute(_model(), x, targets, method="integrated-gradients", steps=30, baselines=np.zeros((1, 5)),
                       batch_size=1, device=CPU)
    many, _ = attribute(_model(), x, targets, method="integrated-gradients", steps=30, baselines=np.zeros((1, 5)),
                        batch_size=200, device=CPU)
    assert np.array_equal(one, many)


def test_one_hot_inputs_sum_back_to_their_column() -> None:
    pre = Preprocessor.from_dict({"version": 1, "inputs": [
        {"column": "age", "kind": "numeric", "mean": 0, "std": 1},
        {"column": "job", "kind": "onehot", "categories": ["a", "b", "c"]}]})
    attributions = np.random.default_rng(0).normal(size=(10, 4))
    raw = to_raw_columns(attributions, pre.column_of_input, ["age", "job"])
    assert np.allclose(raw[:, 0], attributions[:, 0]) and np.allclose(raw[:, 1], attributions[:, 1:].sum(1))


def test_stratified_sample_covers_every_group_and_is_reproducible() -> None:
    strata = np.repeat(np.arange(6), [5000, 3000, 1000, 40, 12, 3])
    first = stratified_sample(strata, 6, rows=500, seed=3)
    assert len(first) == 500 and set(strata[first]) == set(range(6))
    assert np.bincount(strata[first])[5] == 3 and np.bincount(strata[first])[4] == 12
    assert np.array_equal(first, stratified_sample(strata, 6, rows=500, seed=3))
    assert not np.array_equal(first, stratified_sample(strata, 6, rows=500, seed=4))


def _tabular(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "sex": rng.integers(0, 2, size=n)})
    frame["y"] = ((frame.x1 + frame.sex) > 0.5).astype(int)
    return frame


def test_identical_models_agree_perfectly() -> None:
    frame = _tabular()
    model = MLP(in_features=3, hidden=[4], out_features=2)
    result = ta.audit(dense=model, ticket=model, data=frame, target="y", sensitive="sex", features=["x1", "x2", "sex"],
                      n_boot=100, attribution_rows=200).attributions
    assert result is not None
    assert result.overall.cosine == pytest.approx(1.0) and result.overall.spearman == pytest.approx(1.0)
    assert result.overall.sensitive_share.delta == 0 and result.overall.top_k_jaccard == 1.0
    assert all(c.delta == 0 for _, c in result.features)


def _pair_cutting_inputs(inputs: slice | int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A dense MLP over (x1, x2, sex) and a ticket that zeroes every weight from ``inputs``."""
    torch.manual_seed(0)
    dense = MLP(in_features=3, hidden=[4], out_features=2)
    ticket = copy.deepcopy(dense)
    with torch.no_grad():
        ticket.layers[0].weight[:, inputs] = 0.0
    return dense, ticket


def test_ticket_that_cuts_a_sensitive_input_stops_relying_on_it() -> None:
    frame = _tabular()
    dense, ticket = _pair_cutting_inputs(2)
    result = ta.audit(dense=dense, ticket=ticket, data=frame, target="y", sensitive="sex", features=["x1", "x2", "sex"],
                      n_boot=100).attributions
    share = result.overall.sensitive_share
    assert share.dense > 0.05 and share.ticket == 0.0 and share.ci[1] < 0
    assert dict(result.features)["sex"].ticket == 0.0


def test_proxies_are_found_automatically_and_reported() -> None:
    frame = _tabular()
    frame["x2"] = frame["sex"] + np.random.default_rng(2).normal(scale=0.3, size=len(frame))
    model = MLP(in_features=2, hidden=[4], out_features=2)
    result = ta.audit(dense=model, ticket=model, data=frame, target="y", sensitive="sex", features=["x1", "x2"],
                      n_boot=100).attributions
    assert result.auto_proxies == ("x2",)
    assert result.overall.proxy_share.dense > 0


def test_target_predicted_and_every_method_through_the_api() -> None:
    frame = _tabular()
    dense = MLP(in_features=3, hidden=[4], out_features=2)
    for method in INPUT_METHODS:
        result = ta.audit(dense=dense, ticket=dense, data=frame, target="y", sensitive="sex",
                          features=["x1", "x2", "sex"], n_boot=100, attribution_method=method,
                          attribution_target="predicted", attribution_rows=100).attributions
        assert result.method == method and result.target == "predicted" and result.sample_rows == 100


def test_reliance_gate_is_off_by_default_and_can_fail() -> None:
    frame = _tabular()
    dense, ticket = _pair_cutting_inputs(slice(0, 2))  # the ticket keeps only the sensitive input
    args = dict(dense=dense, ticket=ticket, data=frame, target="y", sensitive="sex", features=["x1", "x2", "sex"],
                n_boot=200)
    assert "sensitive_reliance_increase" not in {c.id for c in ta.audit(**args).checks}
    gated = ta.audit(**args, policy=ta.Policy(max_sensitive_reliance_increase=0.05, max_overall_accuracy_drop=0.99,
                                              max_group_excess_drop=0.99, max_gap_widening=0.99,
                                              max_tpr_gap_widening=0.99, max_fpr_gap_widening=0.99))
    check = next(c for c in gated.checks if c.id == "sensitive_reliance_increase")
    assert not check.passed and check.value > 0.05


def test_attribution_settings_validate() -> None:
    with pytest.raises(ta.InvalidInputError, match="unknown"):
        AttributionSettings(method="nope")
    with pytest.raises(ta.InvalidInputError, match="attribution-rows"):
        AttributionSettings(rows=3)
    inputs = synthetic_inputs(np.zeros(20, int) | (np.arange(20) % 2), np.zeros(20, int), np.zeros(20, int),
                              {"g": np.array(["a", "b"] * 10)})
    with pytest.raises(ta.InvalidInputError, match="proxy column 'zz'"):
        analyse_attributions(inputs, dense=_model(inputs=2), ticket=_model(inputs=2), features=_features(20, 2),
                             column_of_input=["p", "q"], sensitive=["g"],
                             settings=AttributionSettings(proxies=("zz",)), batch_size=8, device=CPU)


def test_ft_transformer_bundle_audit_with_attributions(tmp_path) -> None:
    from ticketaudit.pruning.imp import global_magnitude_mask
    from ticketaudit.tickets.bundle import save_bundle

    frame = _tabular(400)
    arguments = {"in_features": 3, "column_sizes": [1, 1, 1], "out_features": 2, "d_token": 8, "heads": 2, "layers": 1}
    torch.manual_seed(0)
    from ticketaudit.models import build_architecture

    model = build_architecture("ft-transformer", arguments)
    dense = save_bundle(tmp_path / "d", model, architecture="ft-transformer", arguments=arguments)
    ticket = save_bundle(tmp_path / "t", model, architecture="ft-transformer", arguments=arguments,
                         mask=global_magnitude_mask(model, keep=0.5))
    result = ta.audit(dense=dense, ticket=ticket, data=frame, target="y", sensitive="sex", features=["x1", "x2", "sex"],
                      n_boot=100, attribution_rows=100)
    assert result.ticket.sparsity == pytest.approx(0.5, abs=0.01)
    assert result.attributions is not None and result.attributions.convergence_delta is not None
    assert np.isfinite(result.attributions.overall.cosine)


def test_layer_integrated_gradients_on_the_column_tokens() -> None:
    from ticketaudit.models import build_architecture

    frame = _tabular(300)
    torch.manual_seed(0)
    model = build_architecture("ft-transformer", {"in_features": 3, "column_sizes": [1, 1, 1], "out_features": 2,
                                                  "d_token": 8, "heads": 2, "layers": 1})
    x = frame[["x1", "x2", "sex"]].to_numpy(dtype=np.float64)
    targets = frame["y"].to_numpy()
    out, delta = attribute(model, x, targets, method="layer-integrated-gradients", steps=100,
                           baselines=np.zeros((1, 3)), batch_size=64, device=CPU)
    with torch.no_grad():
        logits = model.double()(torch.as_tensor(x)).numpy()
        base = model(torch.zeros(1, 3, dtype=torch.float64)).numpy()
    assert out.shape == (300, 3)
    error = np.abs(out.sum(1) - (logits[np.arange(300), targets] - base[0, targets]))
    assert error.max() < 0.05 and delta == pytest.approx(error.max(), rel=1e-3, abs=1e-6)
    result = ta.audit(dense=model, ticket=model, data=frame, target="y", sensitive="sex", features=["x1", "x2", "sex"],
                      n_boot=100, attribution_method="layer-integrated-gradients", attribution_rows=100).attributions
    assert result.overall.cosine == pytest.approx(1.0)
    with pytest.raises(ta.InvalidInputError, match="token embedding layer"):
        ta.audit(dense=_model(inputs=3), ticket=_model(inputs=3), data=frame, target="y", sensitive="sex",
                 features=["x1", "x2", "sex"], n_boot=100, attribution_method="layer-integrated-gradients")
