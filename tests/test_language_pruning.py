"""Language-model pruning: the keep rules against direct computation, SparseGPT against its known special case,
the layer-by-layer driver on tiny Llama and GPT-2 models, and ``prune --model`` end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from helpers import run_cli
from llm_models import CORPUS, save_tiny, tiny_llama, tiny_tokenizer
from ticketaudit.pruning.language import calibration_batches, full_mask, row_mask
from ticketaudit.pruning.sequential import block_linears, decoder_blocks, prune_layerwise, sparsegpt_prune


@pytest.mark.parametrize("at_once", [None, 3], ids=["whole", "three-groups-at-a-time"])
def test_nm_pattern_is_found_only_when_every_group_keeps_half(at_once: int | None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import ticketaudit.analyses.compression as compression

    if at_once is not None:  # the groups are counted in parts: a violation in the last part still counts
        monkeypatch.setattr(compression, "NM_GROUPS_AT_ONCE", at_once)
    two_of_four = torch.tensor([[1, 0, 1, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0, 0, 1]], dtype=torch.bool).repeat(4, 1)
    assert compression.nm_pattern(two_of_four) == "2:4"
    four_of_eight = two_of_four.clone()
    four_of_eight[-1] = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)  # 3 of the first 4, 4 of 8
    assert compression.nm_pattern(four_of_eight) == "4:8"
    neither = four_of_eight.clone()
    neither[-1, -1] = False
    neither[-1, 4] = True
    neither[-1, 5] = True  # the last row keeps 5 of 8
    assert compression.nm_pattern(neither) is None


def test_row_mask_keeps_each_rows_largest_scores_and_nm_groups() -> None:
    torch.manual_seed(0)
    score = torch.rand(6, 16, dtype=torch.float64)
    kept = row_mask(score, sparsity=0.5, pattern=None)
    for row in range(6):
        assert set(torch.nonzero(kept[row]).flatten().tolist()) == set(torch.topk(score[row], 8).indices.tolist())
    nm = row_mask(score, sparsity=0.5, pattern=(2, 4))
    groups = nm.reshape(6, 4, 4)
    assert (groups.sum(dim=-1) == 2).all()
    best = torch.topk(score.reshape(6, 4, 4), 2, dim=-1).indices
    assert torch.gather(groups, -1, best).all()


def test_sparsegpt_with_an_identity_hessian_is_magnitude_pruning_without_updates() -> None:
    """With H = I the inverse Hessian is diagonal: no error spreads to other weights, and the scores are w^2 (up to
    one constant), so SparseGPT keeps each block's largest weights unchanged."""
    torch.manual_seed(1)
    weight = torch.randn(8, 256, dtype=torch.float64)
    pruned, kept = sparsegpt_prune(weight, torch.eye(256, dtype=torch.float64), sparsity=0.5, pattern=None)
    for start in (0, 128):  # blocks of 128 columns, one threshold each (the reference's rule)
        block = weight[:, start:start + 128].abs()
        threshold = torch.sort(block.flatten())[0][int(block.numel() * 0.5)]
        assert torch.equal(kept[:, start:start + 128], block > threshold)
    torch.testing.assert_close(pruned, weight * kept, rtol=0, atol=1e-12)


def test_sparsegpt_compensates_the_removed_weights_on_correlated_inputs() -> None:
    """On correlated inputs the updated kept weights reproduce the layer's outputs better than masking alone."""
    torch.manual_seed(2)
    base = torch.randn(512, 8, dtype=torch.float64)
    inputs = base @ torch.randn(8, 64, dtype=torch.float64) + 0.05 * torch.randn(512, 64, dtype=torch.float64)
    weight = torch.randn(16, 64, dtype=torch.float64)
    hessian = 2 * inputs.T @ inputs / len(inputs)
    pruned, kept = sparsegpt_prune(weight, hessian, sparsity=0.5, pattern=(2, 4))
    assert (kept.reshape(16, 16, 4).sum(dim=-1) == 2).all() and torch.equal(pruned == 0, ~kept | (pruned == 0))
    masked_error = ((inputs @ (weight * kept).T - inputs @ weight.T) ** 2).mean()
    updated_error = ((inputs @ pruned.T - inputs @ weight.T) ** 2).mean()
    assert updated_error < 0.5 * masked_error


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize(("method", "pattern"), [("magnitude", None), ("wanda", None), ("wanda", (2, 4)),
                                                 ("sparsegpt", None), ("sparsegpt", (4, 8))])
def test_layerwise_pruning_prunes_every_decoder_linear_and_nothing_else(kind: str, method: str,
                                                                        pattern: tuple[int, int] | None) -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), kind=kind)
    original = copy.deepcopy(model)
    batches = calibration_batches(tokenizer, " ".join(CORPUS * 4), sequences=4, length=32)
    kept = prune_layerwise(model, batches, method=method, sparsity=0.5, pattern=pattern)
    blocks = decoder_blocks(model)
    assert len(kept) == len(blocks) * len(block_linears(blocks[0]))
    parameters, before = dict(model.named_parameters()), dict(original.named_parameters())
    for name, keep in kept.items():
        assert keep.float().mean() == pytest.approx(0.5, abs=0.01)
        assert torch.all(parameters[name][~keep] == 0)
        if method != "sparsegpt":  # masking only: kept weights are the dense ones
            assert torch.equal(parameters[name][keep], before[name][keep])
    for name, tensor in parameters.items():
        if name not in kept:
            assert torch.equal(tensor, before[name]), name  # embeddings, norms, head untouched
    mask = full_mask(model, kept)
    assert mask.kept < mask.total


def test_wanda_reads_the_pruned_first_blocks_outputs_in_the_second_block() -> None:
    """Block 1's Wanda masks equal those computed by hand from a full forward pass of the model whose block 0 alone
    is pruned (input norms recorded by hooks), and differ from those of the all-dense model's activations."""
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), seed=4)
    batches = calibration_batches(tokenizer, " ".join(CORPUS * 4), sequences=4, length=32)
    kept = prune_layerwise(copy.deepcopy(model), batches, method="wanda", sparsity=0.5)

    def block1_masks(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
        norms: dict[str, torch.Tensor] = {}
        linears = block_linears(decoder_blocks(reference)[1])
        hooks = [layer.register_forward_hook(
            lambda _, i, __, n=name: norms.__setitem__(n, norms.get(n, 0) + i[0].double().pow(2).sum(dim=(0, 1))))
            for name, (layer, _) in linears.items()]
        with torch.no_grad():
            for batch in batches:
                reference(input_ids=batch, use_cache=False)
        for hook in hooks:
            hook.remove()
        return {name: row_mask(layer.weight.double().abs() * norms[name].sqrt()[None, :], sparsity=0.5, pattern=None)
                for name, (layer, _) in linears.items()}

    first_pruned = copy.deepcopy(model)
    parameters = dict(first_pruned.named_parameters())
    with torch.no_grad():
        for name, keep in kept.items():
            if name.startswith("model.layers.0."):
                parameters[name].mul_(keep)
    by_hand = block1_masks(first_pruned)
    for name, keep in by_hand.items():
        assert torch.equal(kept[f"model.layers.1.{name}.weight"], keep), name
    dense = block1_masks(model)
    assert any(not torch.equal(dense[n], by_hand[n]) for n in dense)


def test_prune_model_writes_a_directory_that_report_loads(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    dense = save_tiny(tmp_path / "dense", tokenizer=tokenizer)
    calibration = tmp_path / "calibration.txt"
    calibration.write_text(" ".join(CORPUS * 20), encoding="utf-8")
    run = run_cli(["prune", "--model", str(dense), "--method", "sparsegpt", "--pattern", "2:4", "--sparsity", "0.5",
                   "--calibration", str(calibration), "--out", str(tmp_path / "ticket"), "--quiet"])
    assert run.code == 0, run.stderr
    summary = json.loads((tmp_path / "ticket" / "prune.json").read_text())
    assert summary["decoder_weight_sparsity"] == pytest.approx(0.5) and summary["pattern"] == "2:4"
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(tmp_path / "ticket"), "--benchmark", "bbq",
                   "--data", str(Path(__file__).parent.parent / "datasets" / "bbq" / "bbq_sample.jsonl.gz"),
                   "--limit", "30", "--json", str(tmp_path / "a.json"), "--out", str(tmp_path / "a.html"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["compression"]["pattern"] == "2:4"
    assert doc["models"]["ticket"]["format"] == "huggingface"


@pytest.mark.parametrize(("extra", "words"), [
    (["--method", "all"], "choose the language-model method"),
    (["--method", "obc"], "must be one of magnitude, wanda, sparsegpt"),
    (["--method", "wanda", "--pattern", "3:4"], "--pattern must be one of"),
    (["--method", "wanda", "--pattern", "2:4", "--sparsity", "0.3"], "give --sparsity 0.5"),
    (["--method", "wanda", "--data", "x.csv"], "leave out --dense, --data"),
])
def test_bad_prune_options_are_exit_2(tmp_path: Path, extra: list[str], words: str) -> None:
    dense = save_tiny(tmp_path / "dense")
    args = ["prune", "--model", str(dense), "--out", str(tmp_path / "out"), "--quiet", *extra]
    if "--sparsity" not in extra:
        args += ["--sparsity", "0.5"]
    run = run_cli(args)
    assert run.code == 2 and words in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()


def _grouped_texts() -> tuple[list[str], list[str]]:
    """Two calibration groups of different text: ages and religions, several items each."""
    ages = [CORPUS[0], CORPUS[3], CORPUS[4]] * 6
    faiths = [CORPUS[1], CORPUS[2]] * 9
    return ages + faiths, ["age"] * len(ages) + ["religion"] * len(faiths)


def test_group_balanced_calibration_takes_equal_tokens_from_each_group() -> None:
    """Each group gives the same number of sequences; every sequence's tokens are a window of its own group's text;
    the seed decides which windows (same seed: same sequences)."""
    from ticketaudit.pruning.language import grouped_calibration

    tokenizer = tiny_tokenizer()
    texts, groups = _grouped_texts()
    batches, owners, names = grouped_calibration(tokenizer, texts, groups, sequences=6, length=16, seed=0)
    assert names == ("age", "religion") and owners == [0, 0, 0, 1, 1, 1]
    assert all(b.shape == (1, 16) for b in batches)
    for batch, owner in zip(batches, owners):
        own = tokenizer("\n\n".join(t for t, g in zip(texts, groups) if g == names[owner]),
                        add_special_tokens=False)["input_ids"]
        window = batch[0].tolist()
        assert any(own[i:i + 16] == window for i in range(len(own) - 15))
    again = grouped_calibration(tokenizer, texts, groups, sequences=6, length=16, seed=0)[0]
    other = grouped_calibration(tokenizer, texts, groups, sequences=6, length=16, seed=1)[0]
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert not all(torch.equal(a, b) for a, b in zip(batches, other))


def test_worst_group_wanda_keeps_by_the_largest_per_group_norm() -> None:
    """wanda-worst-group's block-0 masks equal masks computed by hand: each input's root-mean-square activation per
    group (hooks on the dense model, which block 0 reads), the largest of the groups, times |W|, top half per row;
    and they differ from plain Wanda's on the same calibration sequences."""
    from ticketaudit.pruning.language import grouped_calibration

    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), seed=5)
    texts, groups = _grouped_texts()
    batches, owners, _ = grouped_calibration(tokenizer, texts, groups, sequences=6, length=16, seed=0)
    worst = prune_layerwise(copy.deepcopy(model), batches, method="wanda-worst-group", sparsity=0.5, groups=owners)
    plain = prune_layerwise(copy.deepcopy(model), batches, method="wanda", sparsity=0.5, groups=owners)
    linears = block_linears(decoder_blocks(model)[0])
    squares: dict[tuple[str, int], torch.Tensor] = {}
    tokens = [0, 0]
    current = [0]
    hooks = [layer.register_forward_hook(lambda _, i, __, n=name: squares.__setitem__(
        (n, current[0]), squares.get((n, current[0]), 0) + i[0].double().pow(2).sum(dim=(0, 1))))
        for name, (layer, _) in linears.items()]
    with torch.no_grad():
        for batch, owner in zip(batches, owners):
            current[0] = owner
            tokens[owner] += batch.shape[1]
            model(input_ids=batch, use_cache=False)
    for hook in hooks:
        hook.remove()
    differs = False
    for name, (layer, _) in linears.items():
        norms = torch.stack([(squares[(name, g)] / tokens[g]).sqrt() for g in (0, 1)]).amax(dim=0)
        by_hand = row_mask(layer.weight.double().abs() * norms[None, :], sparsity=0.5, pattern=None)
        assert torch.equal(worst[f"model.layers.0.{name}.weight"], by_hand), name
        differs |= not torch.equal(by_hand, plain[f"model.layers.0.{name}.weight"])
    assert differs


def test_prune_model_with_balanced_groups_records_them(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    dense = save_tiny(tmp_path / "dense", tokenizer=tokenizer)
    texts, groups = _grouped_texts()
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps({"context": t, "category": g}) for t, g in zip(texts, groups)) + "\n",
                     encoding="utf-8")
    run = run_cli(["prune", "--model", str(dense), "--method", "wanda-worst-group", "--sparsity", "0.5",
                   "--calibration", str(items), "--calibration-text", "context", "--balance-groups", "category",
                   "--out", str(tmp_path / "ticket"), "--quiet", "--seed", "3"])
    assert run.code == 0, run.stderr
    calibration = json.loads((tmp_path / "ticket" / "prune.json").read_text())["calibration"]
    assert calibration["balanced_by"] == "category" and calibration["groups"] == ["age", "religion"]
    assert calibration["seed"] == 3 and calibration["sequences"] == 2 * calibration["sequences_per_group"]
    for extra, words in ((["--calibration", str(items)], "name its text column with --calibration-text"),
                         (["--calibration-text", "context"], "read an item file"),
                         ([], "takes each input's norm per group")):
        out = tmp_path / f"bad{len(extra)}"
        run = run_cli(["prune", "--model", str(dense), "--method", "wanda-worst-group", "--sparsity", "0.5",
                       "--out", str(out), "--quiet", *extra])
        assert run.code == 2 and words in run.stderr, run.stderr
        assert not out.exists()


def test_a_token_of_weight_w_counts_as_w_copies_of_it() -> None:
    """Protected items weigh more: Wanda's norms (overall and per group), the token count and SparseGPT's Hessian with
    a token weighted 3 equal those with the token repeated three times."""
    from ticketaudit.pruning.sequential import _Statistics

    torch.manual_seed(4)
    layer = torch.nn.Linear(6, 3)
    x = torch.randn(1, 5, 6)
    weights = torch.tensor([1.0, 3.0, 1.0, 3.0, 1.0], dtype=torch.float64)
    repeated = torch.cat([x[:, i:i + 1].repeat(1, int(w), 1) for i, w in enumerate(weights)], dim=1)
    for hessian in (False, True):
        weighted, copies = (_Statistics(layer, False, hessian=hessian, groups=2) for _ in range(2))
        for statistics in (weighted, copies):
            statistics.group = 1
            statistics.add(torch.randn(1, 4, 6).mul(0) + x[:, :4])  # an earlier sequence of weight 1
        weighted.weights = weights
        weighted.add(x)
        copies.add(repeated)
        torch.testing.assert_close(weighted.value, copies.value, rtol=1e-12, atol=1e-12)
        assert weighted.tokens == copies.tokens == 4 + 9
        if not hessian:
            torch.testing.assert_close(weighted.worst_group_norms(), copies.worst_group_norms())


def _protected_texts() -> tuple[list[str], list[float]]:
    texts, _ = _grouped_texts()
    return texts, [4.0 if i % 9 == 0 else 1.0 for i in range(len(texts))]


def test_protection_holds_the_protected_items_and_pulls_the_mask_toward_them() -> None:
    """The protected items' tokens open the calibration (as many as fit in half of it) and weigh more; a weight
    of 1 gives plain Wanda's masks on the same sequences exactly; a large weight gives masks closer to those of
    calibrating on the protected windows alone than plain Wanda's are."""
    from ticketaudit.pruning.language import encode_texts, protected_batches

    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), seed=6)
    texts, weights = _protected_texts()
    marked = [w > 1 for w in weights]
    protected = [t for t, m in zip(texts, marked) if m]
    batches, token_weights, covered, total = protected_batches(tokenizer, texts, marked, sequences=8, length=16,
                                                               weight=1.0)
    first, _ = encode_texts(tokenizer, protected)
    assert total == len(first) and covered == min(total, 4 * 16)  # at most half the sequences: the rest keep theirs
    assert torch.cat([b[0] for b in batches])[:covered].tolist() == first[:covered]
    assert len(batches) == 8 and all(len(w) == 16 for w in token_weights)
    plain = prune_layerwise(copy.deepcopy(model), batches, method="wanda", sparsity=0.5)
    ones = prune_layerwise(copy.deepcopy(model), batches, method="wanda", sparsity=0.5, token_weights=token_weights)
    assert all(torch.equal(plain[name], ones[name]) for name in plain)
    heavy_batches, heavy_weights, _, _ = protected_batches(tokenizer, texts, marked, sequences=8, length=16,
                                                           weight=1000.0)
    assert all(torch.equal(a, b) for a, b in zip(batches, heavy_batches))
    assert float(heavy_weights[0][0]) == 1000.0 and float(heavy_weights[-1][-1]) == 1.0
    heavy = prune_layerwise(copy.deepcopy(model), heavy_batches, method="wanda", sparsity=0.5,
                            token_weights=heavy_weights)
    alone = prune_layerwise(copy.deepcopy(model), batches[:-(-covered // 16)], method="wanda", sparsity=0.5)

    def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return sum(int((a[n] == b[n]).sum()) for n in a) / sum(a[n].numel() for n in a)

    assert agreement(heavy, alone) > agreement(plain, alone)


def test_balanced_and_protected_calibration_holds_each_groups_protected_items_in_equal_shares() -> None:
    """--balance-groups with --protect: each group gives the same number of sequences; within a group its protected
    items open its windows and weigh W, everything else weighs 1; each sequence belongs to its own group's text."""
    from ticketaudit.pruning.language import encode_texts, grouped_protected_batches

    tokenizer = tiny_tokenizer()
    texts, groups = _grouped_texts()
    marked = [i % 9 == 0 for i in range(len(texts))]  # items 0, 9 (ages) and 18, 27 (religions)
    batches, owners, names, weights, covered, total = grouped_protected_batches(
        tokenizer, texts, groups, marked, sequences=8, length=16, weight=5.0)
    assert names == ("age", "religion") and owners.count(0) == owners.count(1) >= 1
    assert len(batches) == len(owners) == len(weights) and all(len(w) == 16 for w in weights)
    for index, name in enumerate(names):
        rows = [i for i, g in enumerate(groups) if g == name]
        first, _ = encode_texts(tokenizer, [texts[i] for i in rows if marked[i]])
        held = [b[0] for b, o in zip(batches, owners) if o == index]
        opening = torch.cat(held).tolist()[:min(len(first), 16)]
        assert opening == first[:len(opening)]  # the group's protected tokens come first
        group_weights = torch.cat([w for w, o in zip(weights, owners) if o == index])
        assert float(group_weights[0]) == 5.0 and set(group_weights.tolist()) <= {1.0, 5.0}
        rest, _ = encode_texts(tokenizer, [texts[i] for i in rows if not marked[i]])
        own = first + tokenizer("\n\n", add_special_tokens=False)["input_ids"] + rest
        for window in held:  # each window is a run of its group's own tokens
            run = window.tolist()
            assert any(own[i:i + len(run)] == run for i in range(len(own) - len(run) + 1))
    assert 0 < covered <= total == sum(len(encode_texts(tokenizer, [t for t, g, m in zip(texts, groups, marked)
                                                                    if g == name and m])[0]) for name in names)


def test_prune_model_with_protected_items_records_them(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    dense = save_tiny(tmp_path / "dense", tokenizer=tokenizer)
    texts, weights = _protected_texts()
    items = tmp_path / "items.csv"
    import pandas as pd

    pd.DataFrame({"context": texts, "keep": ["yes" if w > 1 else "no" for w in weights]}).to_csv(items, index=False)
    base = ["prune", "--model", str(dense), "--method", "sparsegpt", "--sparsity", "0.5", "--calibration", str(items),
            "--calibration-text", "context", "--quiet"]
    run = run_cli([*base, "--protect", "keep", "--protect-weight", "8", "--out", str(tmp_path / "ticket")])
    assert run.code == 0, run.stderr
    protected = json.loads((tmp_path / "ticket" / "prune.json").read_text())["calibration"]["protected"]
    assert {k: protected[k] for k in ("column", "items", "of", "weight")} == {
        "column": "keep", "items": sum(w > 1 for w in weights), "of": len(texts), "weight": 8.0}
    assert 0 < protected["tokens_in_calibration"] <= protected["tokens"]
    _, groups = _grouped_texts()
    pd.DataFrame({"context": texts, "keep": ["yes" if w > 1 else "no" for w in weights], "topic": groups}).to_csv(
        items, index=False)
    run = run_cli([*base, "--protect", "keep", "--balance-groups", "topic", "--method", "wanda-worst-group",
                   "--out", str(tmp_path / "both")])
    assert run.code == 0, run.stderr
    calibration = json.loads((tmp_path / "both" / "prune.json").read_text())["calibration"]
    assert calibration["groups"] == ["age", "religion"] and calibration["balanced_by"] == "topic"
    assert calibration["protected"]["items"] == sum(w > 1 for w in weights) and calibration["sequences_per_group"] >= 1
    pd.DataFrame({"context": texts, "keep": ["maybe"] * len(texts), "none": ["false"] * len(texts)}).to_csv(
        tmp_path / "bad.csv", index=False)
    for extra, words in ((["--protect", "keep", "--calibration", str(tmp_path / "bad.csv")], "'maybe'"),
                         (["--protect", "none", "--calibration", str(tmp_path / "bad.csv")], "marks no item"),
                         (["--protect", "keep", "--protect-weight", "1"], "a weight of 1 protects nothing"),
                         (["--protect", "missing"], "missing")):
        out = tmp_path / f"bad{len(extra)}{extra[1]}"
        run = run_cli([*base, *extra, "--out", str(out)])
        assert run.code == 2 and words in run.stderr, run.stderr
        assert "Traceback" not in run.stderr and not out.exists()
    run = run_cli(["prune", "--dense", str(dense), "--data", str(items), "--target", "y", "--sensitive", "g",
                   "--sparsity", "0.5", "--protect", "keep", "--out", str(tmp_path / "cls"), "--quiet"])
    assert run.code == 2 and "calibrate a language model" in run.stderr
