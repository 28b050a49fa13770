"""A saved candidate is the model that was measured (issue: pruning alternatives that hold up, part 1).

``ticketaudit prune`` writes one directory per candidate; auditing each, as it is, with ``--ticket DIR``
on the evaluation rows must reproduce the accuracies ``alternatives.json`` reported for it, for every
method x recovery and for bundle and state_dict dense models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli
from safetensors.torch import save_file

import ticketaudit as ta
from ticketaudit.datasets import MINORITY_FEATURES, make_minority_reliance
from ticketaudit.models import MLP
from ticketaudit.prune import prune, write_prune
from ticketaudit.pruning.imp import TrainSettings, global_magnitude_mask, train
from ticketaudit.pruning.recover import RECOVERY
from ticketaudit.tickets import load_dense
from ticketaudit.tickets.bundle import save_bundle

ARGUMENTS = {"in_features": 6, "hidden": [16, 8], "out_features": 2}
FEATURES = list(MINORITY_FEATURES)


def build_model() -> torch.nn.Module:
    """Factory for the state_dict dense model (``--factory test_saved_candidates:build_model``)."""
    return MLP(**ARGUMENTS)


@pytest.fixture(scope="module")
def dense_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("candidates")
    train_frame = make_minority_reliance(1500, seed=3)
    test_frame = make_minority_reliance(1200, seed=4)
    x = torch.tensor(train_frame[FEATURES].to_numpy(np.float32))
    y = torch.tensor(train_frame["y"].to_numpy())
    torch.manual_seed(0)
    dense, _ = train(build_model(), x, y, settings=TrainSettings(epochs=8, batch_size=64, seed=0))
    save_bundle(root / "bundle", dense, architecture="mlp", arguments=ARGUMENTS)
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(root / "dense.safetensors"))
    return {"root": root, "train": train_frame, "test": test_frame,
            "bundle": (root / "bundle", None), "state_dict": (root / "dense.safetensors", "test_saved_candidates:build_model")}


def _audit_every_saved_candidate(dense_models: dict, kind: str, recover: str, out: Path, monkeypatch) -> int:  # type: ignore[type-arg]
    monkeypatch.chdir(Path(__file__).parent)  # the factory is importable from here
    dense, factory = dense_models[kind]
    result = prune(dense=dense, factory=factory, data=dense_models["test"], train_data=dense_models["train"],
                      target="y", sensitive="group", features=FEATURES, sparsity=0.8, methods="all",
                      recover=recover, epochs=2, n_boot=100, seed=0)
    write_prune(result, out)
    reported = json.loads((out / "alternatives.json").read_text())["alternatives"]["candidates"]
    audited = 0
    for candidate in reported:
        if candidate["saved_to"] is None:
            continue
        assert {p.name for p in Path(candidate["saved_to"]).iterdir()} >= {"mask.safetensors", "model.safetensors"}
        audit = ta.audit(dense=dense, factory=factory, ticket=candidate["saved_to"], data=dense_models["test"],
                         target="y", sensitive="group", features=FEATURES, n_boot=100, analyses="metrics")
        overall = audit.performance.overall.metrics["accuracy"].ticket
        assert overall == pytest.approx(candidate["accuracy"], abs=1e-9), (kind, recover, candidate["name"])
        groups = {g.group: g.metrics["accuracy"].ticket for g in audit.performance.subgroups}
        assert groups == pytest.approx(candidate["group_accuracy"], abs=1e-9), (kind, recover, candidate["name"])
        assert audit.ticket.sparsity == pytest.approx(candidate["sparsity"], abs=1e-9)
        audited += 1
    return audited


@pytest.mark.parametrize(("kind", "recover"), [("state_dict", "finetune"), ("bundle", "none")])
def test_saved_candidates_reproduce_their_reported_numbers(dense_models, kind: str, recover: str, tmp_path,
                                                           monkeypatch) -> None:
    assert _audit_every_saved_candidate(dense_models, kind, recover, tmp_path / "out", monkeypatch) == 5


@pytest.mark.slow
@pytest.mark.parametrize("recover", RECOVERY)
@pytest.mark.parametrize("kind", ["bundle", "state_dict"])
def test_every_method_and_recovery_saves_what_it_measured(dense_models, kind: str, recover: str, tmp_path,
                                                          monkeypatch) -> None:
    assert _audit_every_saved_candidate(dense_models, kind, recover, tmp_path / "out", monkeypatch) == 5


def test_a_directory_holding_only_a_mask_is_dense_times_mask(dense_models, tmp_path) -> None:
    mask = global_magnitude_mask(load_dense(dense_models["bundle"][0]).module, keep=0.3)
    (tmp_path / "m").mkdir()
    save_file({k: v.to(torch.uint8).contiguous() for k, v in mask.items()}, str(tmp_path / "m" / "mask.safetensors"))
    via_dir = ta.audit(dense=dense_models["bundle"][0], ticket=tmp_path / "m", data=dense_models["test"], target="y",
                       sensitive="group", features=FEATURES, n_boot=100, analyses="metrics")
    via_mask = ta.audit(dense=dense_models["bundle"][0], mask=tmp_path / "m" / "mask.safetensors",
                        data=dense_models["test"], target="y", sensitive="group", features=FEATURES, n_boot=100,
                        analyses="metrics")
    assert via_dir.ticket.format == "mask-directory"
    assert via_dir.to_dict()["subgroups"] == via_mask.to_dict()["subgroups"]


def test_an_empty_ticket_directory_says_what_it_may_hold(dense_models, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    run = run_cli(["report", "--dense", str(dense_models["bundle"][0]), "--ticket", str(tmp_path / "empty"),
                   "--data", str(dense_models["root"] / "nope.csv"), "--target", "y", "--sensitive", "group",
                   "--out", str(tmp_path / "r.html")])
    assert run.code == 2 and "no model.safetensors and no mask.safetensors" in run.stderr


def _neurons_removed(dense: torch.nn.Module, keep: int) -> torch.nn.Module:
    """A physically smaller copy of a one-hidden-layer MLP: the ``keep`` hidden units of largest norm."""
    first, last = dense.layers[0], dense.layers[2]
    kept = torch.argsort(first.weight.norm(dim=1), descending=True)[:keep].sort().values
    small = MLP(in_features=first.in_features, hidden=[keep], out_features=last.out_features)
    with torch.no_grad():
        small.layers[0].weight.copy_(first.weight[kept])
        small.layers[0].bias.copy_(first.bias[kept])
        small.layers[2].weight.copy_(last.weight[:, kept])
        small.layers[2].bias.copy_(last.bias)
    return small


def test_a_ticket_with_fewer_units_is_audited_on_its_predictions(fx, tmp_path) -> None:
    from conftest import FEATURES as FX_FEATURES

    small = _neurons_removed(fx.dense, keep=5)
    bundle = save_bundle(tmp_path / "small", small, architecture="mlp",
                         arguments={"in_features": 4, "hidden": [5], "out_features": 2})
    result = ta.audit(dense=fx.dense_dir, ticket=bundle, data=fx.frame, target="y", sensitive="sex,race",
                      features=FX_FEATURES, n_boot=100)
    assert result.compression is None and result.disagreement is not None and result.attributions is not None
    assert any(note.startswith("compression was skipped") for note in result.notes)
    document = result.to_dict()
    assert document["models"]["ticket"]["same_shape"] is False
    assert document["models"]["ticket"]["nonzero_weights_vs_dense"] == pytest.approx((5 * 4 + 2 * 5) / (8 * 4 + 2 * 8))
    with torch.no_grad():
        predicted = small(torch.tensor(fx.frame[FX_FEATURES].to_numpy(np.float32))).argmax(1).numpy()
    correct = predicted == fx.frame["y"].to_numpy()
    for group in result.performance.subgroups:
        if "|" not in group.group:
            column, value = group.group.split("=")
            rows = (fx.frame[column] == value).to_numpy()
            assert group.metrics["accuracy"].ticket == pytest.approx(correct[rows].mean())
    module_result = ta.audit(dense=fx.dense, ticket=small, data=fx.frame, target="y", sensitive="sex,race",
                             features=FX_FEATURES, n_boot=100, analyses="metrics")
    assert module_result.to_dict()["subgroups"] == ta.audit(
        dense=fx.dense_dir, ticket=bundle, data=fx.frame, target="y", sensitive="sex,race", features=FX_FEATURES,
        n_boot=100, analyses="metrics").to_dict()["subgroups"]


def test_smaller_weights_over_the_dense_architecture_say_what_to_do(fx, tmp_path) -> None:
    small = _neurons_removed(fx.dense, keep=5)
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(tmp_path / "small.safetensors"))
    with pytest.raises(ta.InvalidInputError, match="save it as a bundle .config.json with its own arguments"):
        ta.audit(dense=fx.dense_dir, ticket=tmp_path / "small.safetensors", data=fx.frame, target="y",
                 sensitive="sex", features=["x1", "x2", "x3", "x4"], n_boot=100)


def test_a_ticket_with_other_outputs_is_refused(fx, tmp_path) -> None:
    other = MLP(in_features=4, hidden=[3], out_features=3)
    with pytest.raises(ta.InvalidInputError, match="the ticket outputs 3 value.s. per row but the dense model 2"):
        ta.audit(dense=fx.dense_dir, ticket=other, data=fx.frame, target="y", sensitive="sex",
                 features=["x1", "x2", "x3", "x4"], n_boot=100)


@pytest.fixture(scope="module")
def text_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny BERT trained a little on reviews whose label is whether they praise (learnable), saved with its
    tokenizer as a Hugging Face directory."""
    pytest.importorskip("transformers")
    from text_models import save_text_model, text_table, tiny_bert

    from ticketaudit.modalities.text import TextModality
    from ticketaudit.pruning.tokens import TokenClassifier

    root = tmp_path_factory.mktemp("text-candidates")
    tables = {}
    for name, seed in (("train", 2), ("test", 1)):
        table = text_table(400, seed=seed)
        tables[name] = table.assign(label=table["review"].str.contains("good|great|loved|funny").astype(int))
    untrained = save_text_model(tiny_bert(0), root / "untrained")
    modality = TextModality(column="review", tokenizer=load_dense(untrained).tokenizer)
    x = torch.tensor(modality.matrix(tables["train"]), dtype=torch.float32)
    y = torch.tensor(tables["train"]["label"].to_numpy())
    trained, _ = train(TokenClassifier(tiny_bert(0)), x, y, settings=TrainSettings(epochs=6, batch_size=32, seed=0,
                                                                                    learning_rate=3e-3))
    return {"dense": save_text_model(trained.model, root / "dense"), **tables}


@pytest.mark.parametrize("recover", ["none", "finetune"])
def test_saved_text_candidates_reproduce_their_reported_numbers(text_models, recover: str, tmp_path) -> None:
    """Hugging Face text models: every candidate is saved as a Hugging Face directory (tokenizer and config
    copied, its own weights) and, audited as it is with --ticket DIR, scores what alternatives.json says."""
    dense = text_models["dense"]
    result = prune(dense=dense, data=text_models["test"], train_data=text_models["train"], target="label",
                   sensitive="group", text="review", sparsity=0.7, methods="all", recover=recover, epochs=1,
                   n_boot=100, seed=0)
    out = tmp_path / "out"
    write_prune(result, out)
    document = json.loads((out / "alternatives.json").read_text())["alternatives"]
    saved = [c for c in document["candidates"] if c["saved_to"] is not None]
    assert {c["method"] for c in saved} == {"global-magnitude", "layerwise-magnitude", "group-balanced", "worst-group",
                                           "structured"}
    assert any("removes whole attention heads" in note for note in document["notes"])
    accuracies = set()
    for candidate in saved:
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in Path(candidate["saved_to"]).iterdir()}
        audit = ta.audit(dense=dense, ticket=candidate["saved_to"], data=text_models["test"], target="label",
                         sensitive="group", text="review", n_boot=100, analyses="metrics")
        assert audit.ticket.format == "huggingface"
        overall = audit.performance.overall.metrics["accuracy"]
        assert overall.ticket == pytest.approx(candidate["accuracy"], abs=1e-9), candidate["name"]
        groups = {g.group: g.metrics["accuracy"].ticket for g in audit.performance.subgroups}
        assert groups == pytest.approx(candidate["group_accuracy"], abs=1e-9), candidate["name"]
        assert audit.ticket.sparsity == pytest.approx(candidate["sparsity"], abs=1e-3)
        accuracies.add(candidate["accuracy"])
    assert overall.dense > 0.75  # the dense model learned the task, so the comparison means something


def test_structured_pruning_of_a_text_model_removes_whole_heads(text_models) -> None:
    """The structured method on a BERT prunes attention heads: a pruned head's query, key and value rows and its
    output-projection columns are all gone, every layer keeps a head, and the head kept is one a group relies on."""
    from ticketaudit.pruning.methods import attention_heads

    result = prune(dense=text_models["dense"], data=text_models["test"], train_data=text_models["train"],
                   target="label", sensitive="group", text="review", sparsity=0.5, methods="structured",
                   n_boot=100, seed=0)
    candidate = next(c for c in result.alternatives.candidates if c.method == "structured")
    layers = attention_heads(candidate.module)
    assert len(layers) == 2
    mask = candidate.mask
    size = mask[layers[0].qkv[0]].shape[0] // layers[0].heads
    pruned = 0
    for layer in layers:
        alive = []
        for head in range(layer.heads):
            rows = slice(head * size, (head + 1) * size)
            parts = [mask[n][rows] for n in layer.qkv] + [mask[layer.output][:, rows]]
            assert all(bool(p.all()) for p in parts) or not any(bool(p.any()) for p in parts)  # whole heads only
            alive.append(bool(parts[0].all()))
        assert any(alive)
        pruned += alive.count(False)
    assert pruned == 2  # 2 heads per layer, one kept in each
