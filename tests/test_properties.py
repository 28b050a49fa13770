"""Property-based tests (hypothesis): loaders fail only with our errors; metric invariants hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build
from helpers import synthetic_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketaudit.analyses.performance import analyse_performance
from ticketaudit.checks import evaluate_policy
from ticketaudit.config import Policy
from ticketaudit.data import load_table
from ticketaudit.exceptions import InvalidInputError
from ticketaudit.tickets import load_dense, load_ticket
from ticketaudit.tickets.mask import Mask

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(payload=st.binary(max_size=600), suffix=st.sampled_from([".pt", ".pth", ".safetensors", ".bin"]))
def test_model_loader_fails_only_with_our_error(tmp_path_factory, payload: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"model{suffix}"
    path.write_bytes(payload)
    with pytest.raises(InvalidInputError):
        load_dense(path, factory="conftest:build")


@FAST
@given(payload=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".parquet"]))
def test_table_loader_fails_only_with_our_error(tmp_path_factory, payload: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(payload)
    try:
        load_table(path)
    except InvalidInputError:
        pass


@FAST
@given(values=st.lists(st.sampled_from([0.0, 1.0, 0.5, 2.0, -1.0, float("nan")]), min_size=32, max_size=32),
       drop=st.booleans())
def test_mask_validation_fails_only_with_our_error(values: list[float], drop: bool) -> None:
    model = build()
    tensor = torch.tensor(values).reshape(8, 4)
    tensors = {name: torch.ones_like(p) for name, p in model.named_parameters() if p.dim() >= 2}
    tensors["layers.0.weight"] = tensor
    if drop:
        tensors.pop("layers.2.weight")
    try:
        mask = Mask(tensors, model=model)
    except InvalidInputError:
        return
    assert set(values) <= {0.0, 1.0} and not drop
    assert torch.equal(mask["layers.0.weight"], tensor != 0)


def _scenario(seed: int, n: int = 600):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    dense = np.where(rng.random(n) < 0.8, labels, 1 - labels)
    ticket = np.where(rng.random(n) < 0.15, 1 - dense, dense)
    sensitive = {"sex": rng.choice(["F", "M"], size=n), "race": rng.choice(["A", "B", "C"], size=n)}
    return labels, dense, ticket, sensitive


def _observed(result) -> dict:
    """Point estimates only (bootstrap intervals depend on row order through the random draws)."""
    return {g.group: {k: (m.dense, m.ticket, m.delta, m.ci) for k, m in g.metrics.items() if m.ci_method == "bonett-price"}
            for g in (result.overall, *result.subgroups)}


PROPERTY = settings(max_examples=15, deadline=None)


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_row_permutation_changes_nothing(seed: int) -> None:
    labels, dense, ticket, sensitive = _scenario(seed)
    order = np.random.default_rng(seed + 1).permutation(len(labels))
    a = analyse_performance(synthetic_inputs(labels, dense, ticket, sensitive), point_estimates="counts")
    b = analyse_performance(synthetic_inputs(labels[order], dense[order], ticket[order],
                                             {k: v[order] for k, v in sensitive.items()}), point_estimates="counts")
    assert _observed(a) == _observed(b)


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_relabelling_groups_only_renames_them(seed: int) -> None:
    labels, dense, ticket, sensitive = _scenario(seed)
    renamed = {"sex": np.where(sensitive["sex"] == "F", "woman", "man"), "race": sensitive["race"]}
    a = _observed(analyse_performance(synthetic_inputs(labels, dense, ticket, sensitive), point_estimates="counts"))
    b = _observed(analyse_performance(synthetic_inputs(labels, dense, ticket, renamed), point_estimates="counts"))
    translate = {"sex=F": "sex=woman", "sex=M": "sex=man"}

    def rename(name: str) -> str:
        return "|".join(translate.get(part, part) for part in name.split("|"))

    assert {rename(k): v for k, v in a.items()} == b


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_swapping_models_negates_deltas(seed: int) -> None:
    labels, dense, ticket, sensitive = _scenario(seed)
    a = analyse_performance(synthetic_inputs(labels, dense, ticket, sensitive), point_estimates="counts")
    b = analyse_performance(synthetic_inputs(labels, ticket, dense, sensitive), point_estimates="counts")
    for ga, gb in zip((a.overall, *a.subgroups), (b.overall, *b.subgroups)):
        for name in ga.metrics:
            da, db = ga.metrics[name].delta, gb.metrics[name].delta
            assert (np.isnan(da) and np.isnan(db)) or da == pytest.approx(-db, abs=1e-12)
        if ga.metrics["accuracy"].ci_method == "bonett-price":
            low, high = ga.metrics["accuracy"].ci
            assert (low, high) == pytest.approx((-gb.metrics["accuracy"].ci[1], -gb.metrics["accuracy"].ci[0]))


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_identical_models_zero_deltas_and_pass(seed: int) -> None:
    labels, dense, _, sensitive = _scenario(seed)
    result = analyse_performance(synthetic_inputs(labels, dense, dense.copy(), sensitive), point_estimates="counts")
    assert all(m.delta == 0 or np.isnan(m.delta) for g in (result.overall, *result.subgroups) for m in g.metrics.values())
    assert all(c.passed for c in evaluate_policy(Policy(max_group_excess_drop=0.0, max_gap_widening=0.0,
                                                        max_overall_accuracy_drop=0.0), result))


def test_ticket_loader_random_state_dicts(tmp_path: Path) -> None:
    """Random tensors under the right and wrong names/shapes: our error or a valid ticket, nothing else."""
    dense = load_dense(build())
    rng = torch.Generator().manual_seed(0)
    for i in range(30):
        state = {k: torch.randn(v.shape, generator=rng) for k, v in build().state_dict().items()}
        if i % 3 == 1:
            state.pop(next(iter(state)))
        if i % 3 == 2:
            key = next(iter(state))
            state[key] = torch.randn(3, 3, generator=rng)
        torch.save(state, tmp_path / "t.pt")
        try:
            loaded = load_ticket(tmp_path / "t.pt", dense=dense)
        except InvalidInputError:
            assert i % 3 != 0
            continue
        assert i % 3 == 0 and loaded.format == "zeroed-weights"
