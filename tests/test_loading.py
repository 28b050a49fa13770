"""Every model and ticket format becomes the same validated Mask and the same predictions."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.utils.prune
from conftest import FEATURES, Fixture, build
from safetensors.torch import save_file

import ticketaudit as ta
from ticketaudit.exceptions import InvalidInputError, UnsafeInputError
from ticketaudit.tickets import load_dense, load_ticket
from ticketaudit.tickets.mask import Mask

FACTORY = "conftest:build"


def _same_ticket(loaded: ta.tickets.LoadedModel, fx: Fixture, expected: torch.nn.Module | None = None) -> None:
    for name, tensor in fx.mask.items():
        assert torch.equal(loaded.mask[name], tensor), name
    x = torch.tensor(fx.frame[FEATURES].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), (expected or fx.ticket)(x), atol=1e-6)


def test_bundle(fx: Fixture) -> None:
    dense = load_dense(fx.dense_dir)
    ticket = load_ticket(fx.ticket_dir, dense=dense)
    assert dense.format == ticket.format == "bundle"
    _same_ticket(ticket, fx)
    assert len(dense.sha256) == 64 and dense.sha256 != ticket.sha256


def test_state_dict_safetensors_with_factory(fx: Fixture, tmp_path) -> None:
    save_file(fx.dense.state_dict(), str(tmp_path / "d.safetensors"))
    save_file(fx.ticket.state_dict(), str(tmp_path / "t.safetensors"))
    dense = load_dense(tmp_path / "d.safetensors", factory=FACTORY)
    ticket = load_ticket(tmp_path / "t.safetensors", dense=dense)
    assert ticket.format == "zeroed-weights"
    _same_ticket(ticket, fx)


def test_pt_state_dict_and_torch_prune(fx: Fixture, tmp_path) -> None:
    torch.save(fx.dense.state_dict(), tmp_path / "d.pt")
    pruned = copy.deepcopy(fx.ticket)
    for name, module in pruned.named_modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.utils.prune.custom_from_mask(module, "weight", fx.mask[f"{name}.weight"])
    torch.save(pruned.state_dict(), tmp_path / "t.pt")
    dense = load_dense(tmp_path / "d.pt", factory=FACTORY)
    ticket = load_ticket(tmp_path / "t.pt", dense=dense)
    assert ticket.format == "torch-prune"
    _same_ticket(ticket, fx)


def test_mask_files_safetensors_and_open_lth(fx: Fixture, tmp_path) -> None:
    dense = load_dense(fx.dense_dir)
    save_file({k: v.to(torch.uint8) for k, v in fx.mask.items()}, str(tmp_path / "m.safetensors"))
    torch.save({k: v.float() for k, v in fx.mask.items()}, tmp_path / "mask.pth")
    for path in (tmp_path / "m.safetensors", tmp_path / "mask.pth"):
        ticket = load_ticket(None, dense=dense, mask=path)
        assert ticket.format == "mask-file"
        _same_ticket(ticket, fx, fx.mask.apply(fx.dense))


def test_every_format_reports_the_same_sparsity(fx: Fixture, tmp_path) -> None:
    dense = load_dense(fx.dense_dir)
    torch.save(fx.ticket.state_dict(), tmp_path / "t.pt")
    save_file({k: v.to(torch.uint8) for k, v in fx.mask.items()}, str(tmp_path / "m.safetensors"))
    figures = {load_ticket(fx.ticket_dir, dense=dense).sparsity, load_ticket(tmp_path / "t.pt", dense=dense).sparsity,
               load_ticket(None, dense=dense, mask=tmp_path / "m.safetensors").sparsity,
               load_ticket(fx.ticket, dense=dense).sparsity}
    assert len(figures) == 1 and abs(figures.pop() - (1 - fx.mask.kept / fx.mask.total)) < 1e-12


def test_pickle_refused_without_flag_and_loaded_with_it(fx: Fixture, tmp_path) -> None:
    torch.save(fx.dense, tmp_path / "whole.pt")
    with pytest.raises(UnsafeInputError, match="--allow-pickle"):
        load_dense(tmp_path / "whole.pt")
    loaded = load_dense(tmp_path / "whole.pt", allow_pickle=True)
    assert loaded.format == "pickled-module"


def test_callers_module_is_never_modified(fx: Fixture) -> None:
    dense, ticket = copy.deepcopy(fx.dense).train(), copy.deepcopy(fx.ticket).train()
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    ta.audit(dense=dense, ticket=ticket, data=fx.frame, target="y", sensitive="sex", features=FEATURES, n_boot=100)
    assert dense.training and ticket.training
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())
    assert all(p.requires_grad for p in dense.parameters())


def test_mask_apply_returns_a_copy(fx: Fixture) -> None:
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = Mask({k: torch.zeros_like(v) for k, v in fx.mask.items()}, model=model).apply(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(float(p.detach().abs().sum()) == 0 for n, p in pruned.named_parameters() if p.dim() >= 2)


def test_a_zeroed_tickets_mask_is_its_nonzero_weights(fx: Fixture) -> None:
    """A ticket given as zeroed weights: its mask is each prunable weight's ``!= 0``, every time it is read."""
    model = fx.mask.apply(build())
    mask = Mask.from_zeros(model)
    weights = {n: p for n, p in model.named_parameters() if p.dim() >= 2}
    assert list(mask) == list(weights) and len(mask) == len(weights)
    for name, weight in weights.items():
        assert mask[name].dtype == torch.bool and torch.equal(mask[name], weight.detach() != 0)
        assert torch.equal(mask[name], fx.mask[name])
    assert mask.kept == fx.mask.kept and mask.total == fx.mask.total and mask.density() == fx.mask.density()


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: {**m, "nope.weight": m["layers.0.weight"]}, "not a prunable weight"),
    (lambda m: {k: v for k, v in m.items() if k != "layers.2.weight"}, "has no entry for 'layers.2.weight'"),
    (lambda m: {**m, "layers.0.weight": m["layers.0.weight"][:, :2]}, r"has shape \(8, 2\) but the model's is \(8, 4\)"),
    (lambda m: {**m, "layers.0.weight": m["layers.0.weight"].float() * 0.5}, "not binary"),
])
def test_mask_validation_names_the_tensor(fx: Fixture, change, message) -> None:
    tensors = {k: v.float() for k, v in fx.mask.items()}
    with pytest.raises(InvalidInputError, match=message):
        Mask(change(tensors), model=build())


def test_mask_entropy_and_density(fx: Fixture) -> None:
    from ticketaudit.tickets.mask import binary_entropy_bits

    assert binary_entropy_bits(0.5) == 1.0 and binary_entropy_bits(0.0) == 0.0 and binary_entropy_bits(1.0) == 0.0
    assert abs(sum(fx.mask.density()[n] * fx.mask[n].numel() for n in fx.mask) - fx.mask.kept) < 1e-9


def test_ticket_with_reordered_labels_is_refused_naming_both_lists(tmp_path) -> None:
    from ticketaudit.models import MLP
    from ticketaudit.tickets.bundle import save_bundle

    torch.manual_seed(0)
    model = MLP(in_features=4, hidden=[3], out_features=2)
    arguments = {"in_features": 4, "hidden": [3], "out_features": 2}
    dense = load_dense(save_bundle(tmp_path / "d", model, architecture="mlp", arguments=arguments, labels=("no", "yes")))
    swapped = save_bundle(tmp_path / "t", model, architecture="mlp", arguments=arguments, labels=("yes", "no"))
    with pytest.raises(InvalidInputError, match=r"\['yes', 'no'\].*\['no', 'yes'\].*another order"):
        load_ticket(swapped, dense=dense)
    same = save_bundle(tmp_path / "s", model, architecture="mlp", arguments=arguments, labels=("no", "yes"))
    assert load_ticket(same, dense=dense).labels == ("no", "yes")


def test_ticket_with_its_own_preprocess_is_refused_naming_the_input(tmp_path) -> None:
    from ticketaudit.models import MLP
    from ticketaudit.preprocess import Preprocessor
    from ticketaudit.tickets.bundle import save_bundle

    model = MLP(in_features=2, hidden=[3], out_features=2)
    arguments = {"in_features": 2, "hidden": [3], "out_features": 2}
    spec = {"version": 1, "inputs": [{"column": "age", "kind": "numeric", "mean": 40.0, "std": 10.0},
                                     {"column": "x", "kind": "numeric", "mean": 0.0, "std": 1.0}]}
    other = {"version": 1, "inputs": [{"column": "age", "kind": "numeric", "mean": 0.0, "std": 1.0},
                                      {"column": "x", "kind": "numeric", "mean": 0.0, "std": 1.0}]}
    dense = load_dense(save_bundle(tmp_path / "d", model, architecture="mlp", arguments=arguments,
                                   preprocess=Preprocessor.from_dict(spec)))
    ticket = save_bundle(tmp_path / "t", model, architecture="mlp", arguments=arguments,
                         preprocess=Preprocessor.from_dict(other))
    with pytest.raises(InvalidInputError, match="input 'age' is numeric, mean 40.0"):
        load_ticket(ticket, dense=dense)


def test_a_mask_ticket_shares_only_what_the_mask_keeps_whole(tmp_path: Path) -> None:
    """--mask: tensors kept whole (and biases) are the dense model's own, pruned ones are fresh; the dense model's
    weights are unchanged and the ticket's are the dense weights times the mask."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    keep = {"0.weight": torch.rand(8, 6) > 0.5, "2.weight": torch.ones(2, 8, dtype=torch.bool)}
    save_file({n: m.to(torch.uint8) for n, m in keep.items()}, str(tmp_path / "mask.safetensors"))
    dense = load_dense(model)
    ticket = load_ticket(None, dense=dense, mask=tmp_path / "mask.safetensors")
    mine, theirs = dict(dense.module.named_parameters()), dict(ticket.module.named_parameters())
    assert theirs["2.weight"] is mine["2.weight"] and theirs["0.bias"] is mine["0.bias"]
    assert theirs["0.weight"] is not mine["0.weight"]
    assert torch.equal(theirs["0.weight"], before["0.weight"] * keep["0.weight"])
    for name, value in before.items():
        assert torch.equal(mine[name], value), name
