"""Attention entropy: closed-form values, hooks that change nothing, streaming invariances, the
Poisson-bootstrap interval's coverage by simulation, Hugging Face text models through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from attention_models import one_hot_pair, one_hot_table
from helpers import run_cli
from text_models import prune_magnitude, save_text_model, text_table, tiny_bert

import ticketaudit as ta
from ticketaudit.analyses.attention import js_divergence, normalised_entropy
from ticketaudit.analyses.attention_capture import AttentionRecorder, LayerAttention
from ticketaudit.analyses.streaming import BLOCK, BootstrapSums
from ticketaudit.analyses import stats
from ticketaudit.models import FTTransformer

FEATURES = [f"f{i}" for i in range(12)]


def _layer(probs: list[list[float]], keys: list[bool], queries: list[bool] | None = None) -> LayerAttention:
    p = torch.tensor(probs, dtype=torch.float64)[None, None]  # 1 row, 1 head
    key_valid = torch.tensor(keys)[None, None, None, :]
    query_valid = torch.tensor(queries if queries is not None else [True] * p.shape[2])[None, :]
    return LayerAttention(p, key_valid, query_valid)


def test_entropy_hand_computed() -> None:
    uniform = _layer([[0.25] * 4] * 4, [True] * 4)
    one_hot = _layer([[1.0, 0, 0, 0]] * 4, [True] * 4)
    halves = _layer([[0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.3, 0.3, 0.2, 0.2], [0.0, 1.0, 0, 0]],
                    [True, True, False, False], [True, True, False, False])
    assert float(normalised_entropy(uniform)) == pytest.approx(1.0, abs=1e-15)
    assert float(normalised_entropy(one_hot)) == 0.0
    # Two real keys, padding queries ignored: both real queries are uniform over their 2 keys.
    assert float(normalised_entropy(halves)) == pytest.approx(1.0, abs=1e-15)
    skewed = _layer([[0.9, 0.1, 0.0]], [True, True, True])
    expected = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(3)
    assert float(normalised_entropy(skewed)) == pytest.approx(expected, rel=1e-12)


def test_js_divergence_bounds() -> None:
    a = _layer([[1.0, 0.0], [0.5, 0.5]], [True, True])
    b = _layer([[0.0, 1.0], [0.5, 0.5]], [True, True])
    assert float(js_divergence(a, a)) == 0.0
    assert float(js_divergence(a, b)) == pytest.approx(0.5, abs=1e-12)  # (1 bit + 0 bits) / 2 queries


@pytest.mark.parametrize("positional", [False, True])
def test_hooks_read_multihead_attention_without_changing_outputs(positional: bool) -> None:
    dense, _ = one_hot_pair(positional=positional)
    model = dense.to(torch.float64)
    x = torch.tensor(one_hot_table(8)[FEATURES].to_numpy(dtype=np.float64))
    with torch.inference_mode():
        plain = model(x)
    recorder = AttentionRecorder(model, device=torch.device("cpu"))
    layers = recorder.record(x.numpy())
    with torch.inference_mode():
        after = model(x)
    assert recorder.kind == "multihead" and len(layers) == 1
    assert layers[0].probs.shape == (8, 2, 4, 4)
    torch.testing.assert_close(after, plain, rtol=0, atol=0)  # hooks removed, model unchanged
    torch.testing.assert_close(layers[0].probs.sum(-1), torch.ones(8, 2, 4, dtype=torch.float64))


def test_transformer_encoder_hooks_match_plain_forward() -> None:
    model = FTTransformer(in_features=5, column_sizes=[1, 1, 3], out_features=2).double().eval()
    x = np.random.default_rng(0).normal(size=(16, 5))
    with torch.inference_mode():
        plain = model(torch.as_tensor(x))  # may take PyTorch's fused fast path: equal up to rounding
    recorder = AttentionRecorder(model, device=torch.device("cpu"))
    layers = recorder.record(x)
    with torch.inference_mode():
        again = model(torch.as_tensor(x))
    assert [tuple(a.probs.shape) for a in layers] == [(16, 2, 4, 4)] * 2
    torch.testing.assert_close(again, plain, rtol=0, atol=1e-12)


def _audit_one_hot(rows: int = 400, **options: object) -> ta.AuditResult:
    dense, ticket = one_hot_pair()
    return ta.audit(dense=dense, ticket=ticket, data=one_hot_table(rows), target="y", sensitive="group",
                    features=FEATURES, analyses="metrics,attention", n_boot=200, seed=1, **options)


def test_masked_weights_make_a_head_one_hot() -> None:
    result = _audit_one_hot()
    heads = {(h.layer, h.head): h for h in result.attention.heads}
    groups = {g.group: g for g in result.attention.groups}
    spread, sharp = groups["group=spread"], groups["group=sharp"]
    # Head 0 on 'spread' rows: uniform in the dense model (1), one-hot in the ticket (0).
    assert spread.heads[0][:3] == (1.0, 0.0, -1.0)
    assert sharp.heads[0][:3] == (0.0, 0.0, 0.0)
    assert heads[(0, 0)].significant == "fell" and not heads[(0, 0)].pruned
    assert spread.interaction.value == pytest.approx(-0.5, abs=1e-12)  # head-averaged: -1 on head 0, 0 on head 1
    assert spread.interaction.ci[1] < 0 < sharp.interaction.ci[0]


def test_entropy_shift_policy_check_fails_on_a_group_specific_change() -> None:
    failing = _audit_one_hot(policy=ta.Policy(max_group_entropy_shift=0.05))
    by_id = {c.id: c for c in failing.checks}
    assert not by_id["group_entropy_shift:group=spread"].passed
    assert failing.verdict == "fail"
    lenient = _audit_one_hot(policy=ta.Policy(max_group_entropy_shift=0.9))
    assert all(c.passed for c in lenient.checks if c.id.startswith("group_entropy_shift"))
    assert not any(c.id.startswith("group_entropy_shift") for c in _audit_one_hot().checks)  # off by default


def test_head_pruned_entirely_is_reported_as_pruned() -> None:
    dense, ticket = one_hot_pair()
    with torch.no_grad():
        ticket.attention.out_proj.weight[:, 1] = 0.0  # head 1's output columns
    result = ta.audit(dense=dense, ticket=ticket, data=one_hot_table(300), target="y", sensitive="group",
                      features=FEATURES, analyses="attention", n_boot=200, seed=0)
    document = result.to_dict()["attention"]
    pruned = [h for h in document["heads"] if h["pruned"]]
    assert [(h["layer"], h["head"]) for h in pruned] == [(0, 1)]
    assert pruned[0]["ticket"] is None and pruned[0]["delta"] is None
    assert document["summary"]["pruned_heads"] == 1 and document["summary"]["tested_heads"] == 1
    assert any("pruned 1 attention head" in note for note in result.notes)


def test_identical_models_change_nothing() -> None:
    dense, _ = one_hot_pair()
    result = ta.audit(dense=dense, ticket=dense, data=one_hot_table(300), target="y", sensitive="group",
                      features=FEATURES, analyses="attention", n_boot=200, seed=0).attention
    assert all(h.delta.value == 0.0 and h.js == 0.0 and h.significant == "" for h in result.heads)
    assert all(g.delta.value == 0.0 for g in result.groups)


def test_batch_size_never_changes_the_attention_json(tmp_path: Path) -> None:
    model = FTTransformer(in_features=12, column_sizes=[3, 3, 3, 3], out_features=2)
    ticket = prune_magnitude_module(model, keep=0.4)
    frame = one_hot_table(BLOCK + 300, seed=3)
    frame[FEATURES] = np.random.default_rng(0).normal(size=(len(frame), 12))
    documents = [json.dumps(ta.audit(dense=model, ticket=ticket, data=frame, target="y", sensitive="group",
                                     features=FEATURES, analyses="attention", n_boot=100, seed=2,
                                     batch_size=size).to_dict()["attention"], sort_keys=True)
                 for size in (61, 333, 10_000)]
    assert documents[0] == documents[1] == documents[2]


def prune_magnitude_module(model: torch.nn.Module, *, keep: float) -> torch.nn.Module:
    import copy

    ticket = copy.deepcopy(model)
    with torch.no_grad():
        for param in ticket.parameters():
            if param.dim() == 2:
                cut = param.abs().flatten().kthvalue(max(1, int(param.numel() * (1 - keep)))).values
                param.mul_(param.abs() > cut)
    return ticket


def test_streamed_sums_do_not_depend_on_chunks_and_merge_by_shard() -> None:
    rng = np.random.default_rng(0)
    rows = 2 * BLOCK + 777
    values, strata = rng.normal(size=(rows, 3)), rng.integers(0, 4, size=rows)

    def fed(chunk: int, start: int = 0, stop: int = rows) -> BootstrapSums:
        sums = BootstrapSums(n_strata=4, width=3, n_boot=50, seed=7, stream=1)
        for i in range(start, stop, chunk):
            end = min(i + chunk, stop)
            sums.update(values[i:end], strata[i:end], np.arange(i, end))
        return sums.finish()

    whole, small = fed(rows), fed(97)
    for name in ("count", "sums", "boot_count", "boot_sums"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(small, name))
    for cut in (BLOCK, 700, 1):  # shards need not start at a block boundary
        merged = fed(500, 0, cut).merge(fed(313, cut, rows))
        for name in ("count", "boot_count"):
            np.testing.assert_array_equal(getattr(whole, name), getattr(merged, name))
        np.testing.assert_allclose(merged.boot_sums, whole.boot_sums, rtol=1e-12)
        np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-12)


def test_poisson_bootstrap_interval_covers_a_known_paired_shift() -> None:
    """Known truth: per-row dense/ticket entropies with a true mean change of -0.03 in 'a' and 0 in 'b'."""
    rng = np.random.default_rng(11)
    truth = {0: -0.03, 1: 0.0}
    covered = {0: 0, 1: 0}
    sims = 300
    for sim in range(sims):
        rows = 600
        strata = (rng.random(rows) < 0.3).astype(np.int64)
        dense = rng.beta(8, 2, size=rows)
        ticket = np.clip(dense + np.where(strata == 0, truth[0], truth[1]) + rng.normal(0, 0.05, size=rows), 0, 1)
        sums = BootstrapSums(n_strata=2, width=2, n_boot=400, seed=sim, stream=3)
        sums.update(np.stack([dense, ticket], axis=1), strata, np.arange(rows))
        sums.finish()
        for s in (0, 1):
            _, _, boot = sums.means(np.array([s]))
            low, high = stats.percentile_interval(boot[:, 1] - boot[:, 0], confidence=0.95)
            # Clipping at 1 moves the true mean slightly: compare with the population value.
            covered[s] += low <= _population_shift(truth[s]) <= high
    for s in (0, 1):
        assert 0.91 <= covered[s] / sims <= 0.985, covered


_POP: dict[float, float] = {}


def _population_shift(shift: float) -> float:
    if shift not in _POP:
        rng = np.random.default_rng(12345)
        dense = rng.beta(8, 2, size=2_000_000)
        ticket = np.clip(dense + shift + rng.normal(0, 0.05, size=dense.size), 0, 1)
        _POP[shift] = float((ticket - dense).mean())
    return _POP[shift]


# --- Hugging Face text models ---------------------------------------------------------------


@pytest.fixture(scope="module")
def text_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text")
    dense = tiny_bert(seed=0)
    save_text_model(dense, root / "dense")
    save_text_model(prune_magnitude(dense, keep=0.3), root / "ticket")
    save_text_model(dense, root / "no_tokenizer", tokenizer=False)
    text_table(240).to_csv(root / "reviews.csv", index=False)
    text_table(240).assign(review=lambda d: d.review.where(d.index != 7, "  ")).to_csv(root / "empty.csv", index=False)
    return root


def _text_args(root: Path, *extra: str) -> list[str]:
    return ["report", "--dense", str(root / "dense"), "--ticket", str(root / "ticket"), "--data",
            str(root / "reviews.csv"), "--target", "label", "--sensitive", "group", "--text", "review",
            "--n-boot", "200", "--seed", "0", "--out", str(root / "r.html"), "--json", str(root / "r.json"), *extra]


def test_hugging_face_text_pair_through_the_cli(text_pair: Path) -> None:
    run = run_cli(_text_args(text_pair))
    assert run.code == 0, run.stderr
    document = json.loads((text_pair / "r.json").read_text())
    attention = document["attention"]
    assert document["models"]["dense"]["format"] == "huggingface"
    assert attention["source"] == "huggingface" and len(attention["layers"]) == 2
    assert len(attention["heads"]) == 4 and attention["rows"] == 240
    assert document["settings"]["analyses"] == ["metrics", "disagreement", "attention", "attributions", "compression"]
    assert document["attributions"]["unit"] == "word" and document["attributions"]["sample_rows"] == 240
    assert {g["group"] for g in attention["groups"]} == {"group=a", "group=b", "group=c"}
    html = (text_pair / "r.html").read_text()
    assert "Attention entropy, dense model" in html and "Change in attention entropy" in html
    # Same answer with a 7-token budget (one row per batch): a row's padding is fixed by its own length.
    first = (text_pair / "r.json").read_bytes()
    assert run_cli(_text_args(text_pair, "--batch-size", "7")).code == 0
    assert (text_pair / "r.json").read_bytes() == first


def test_text_models_as_modules_with_a_tokenizer(text_pair: Path) -> None:
    dense = ta.load_dense(text_pair / "dense")
    ticket = ta.load_dense(text_pair / "ticket")
    frame = text_table(120, seed=2)
    result = ta.audit(dense=dense.module, ticket=ticket.module, tokenizer=dense.tokenizer, data=frame, target="label",
                      sensitive="group", text="review", n_boot=200, seed=0)
    assert result.attention is not None and result.attention.rows == 120
    assert result.dense.format == "module"


def test_text_padding_is_ignored(text_pair: Path) -> None:
    """A row's entropy is the same alone (no padding) and among longer rows (padded)."""
    from ticketaudit.inputs import build_text_inputs

    loaded = ta.load_dense(text_pair / "dense")
    frame = text_table(30, seed=5)
    short = int(frame.review.str.split().str.len().idxmin())
    together = build_text_inputs(frame, column="review", tokenizer=loaded.tokenizer, max_length=32)
    alone = build_text_inputs(frame.iloc[[short]], column="review", tokenizer=loaded.tokenizer, max_length=32)
    assert together.attention_mask[short].sum() < together.attention_mask.shape[1]  # this row is padded
    model = loaded.module.double()
    recorder = AttentionRecorder(model, device=torch.device("cpu"))
    padded = [normalised_entropy(layer)[short] for layer in recorder.record(together)]
    single = [normalised_entropy(layer)[0] for layer in recorder.record(alone)]
    for a, b in zip(padded, single):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


TEXT_BAD_INPUTS = {
    "tokenizer missing": (lambda root, a: _replace(a, "--dense", str(root / "no_tokenizer")), "has no tokenizer files"),
    "text column missing": (lambda root, a: _replace(a, "--text", "body"), "text column 'body' is not in the data"),
    "empty strings": (lambda root, a: _replace(a, "--data", str(root / "empty.csv")), "is an empty string in 1 row"),
    "Hugging Face model without --text": (lambda root, a: a[:a.index("--text")] + a[a.index("--text") + 2:],
                                          "name the text column with --text"),
    "feature ablation on text": (lambda root, a: [*a, "--attribution-method", "feature-ablation"],
                                 "--attribution-method feature-ablation cannot explain text models"),
    "proxies on text": (lambda root, a: [*a, "--proxies", "review"], "Use --identity-terms FILE"),
    "identity terms file missing": (lambda root, a: [*a, "--identity-terms", str(root / "nope.txt")],
                                    "--identity-terms file"),
    "text with --features": (lambda root, a: [*a, "--features", "review"], "cannot be combined"),
}


def _replace(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = value
    return out


@pytest.mark.parametrize("case", sorted(TEXT_BAD_INPUTS))
def test_text_bad_input(case: str, text_pair: Path) -> None:
    make, message = TEXT_BAD_INPUTS[case]
    for stale in ("r.html", "r.json"):
        (text_pair / stale).unlink(missing_ok=True)
    run = run_cli(make(text_pair, _text_args(text_pair)))
    assert run.code == 2, (run.stdout, run.stderr)
    assert message in " ".join(run.stderr.split()), run.stderr
    assert "Traceback" not in run.stderr
    assert not (text_pair / "r.html").exists() and not (text_pair / "r.json").exists()


class _DotAttention(torch.nn.Module):
    """A user's own single-head attention exposing its probabilities (the AttentionAdapter protocol)."""

    exposes_attention = True

    def __init__(self) -> None:
        super().__init__()
        self.query = torch.nn.Linear(2, 2)
        self.attention_probs: torch.Tensor | None = None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.query(tokens) @ tokens.transpose(1, 2), dim=-1)
        self.attention_probs = probs[:, None]
        return probs @ tokens


class _AdapterModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attend = _DotAttention()
        self.head = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attend(x.reshape(len(x), 3, 2)).mean(dim=1))


def test_adapter_protocol_exposes_custom_attention() -> None:
    from ticketaudit.analyses.attention_capture import AttentionAdapter

    torch.manual_seed(0)
    model = _AdapterModel().double().eval()
    assert isinstance(model.attend, AttentionAdapter)
    x = np.random.default_rng(0).normal(size=(5, 6))
    recorder = AttentionRecorder(model, device=torch.device("cpu"))
    (layer,) = recorder.record(x)
    assert recorder.kind == "adapter" and recorder.layer_names == ["attend"]
    probs = layer.probs[:, 0].numpy()
    expected = (-(probs * np.log(probs)).sum(-1) / np.log(3)).mean(-1)
    np.testing.assert_allclose(normalised_entropy(layer)[:, 0].numpy(), expected, rtol=1e-12)
