"""``report --alternatives`` on a language model: the ticket's decoder shape, the split by family, candidates that
reproduce their numbers when audited again, the recommendation's rule, the budget, and bad options."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import run_cli
from llm_models import CORPUS, save_tiny, tiny_llama, tiny_tokenizer
from ticketaudit.analyses.base import Estimate
from ticketaudit.llm.bbq import read_bbq
from ticketaudit.pruning.alternatives import AUDITED, Candidate
from ticketaudit.pruning.language_alternatives import decoder_shape, recommend_language, split_items
from ticketaudit.pruning.language import calibration_batches
from ticketaudit.pruning.sequential import prune_layerwise

BBQ = Path(__file__).parent.parent / "datasets" / "bbq" / "bbq_sample.jsonl.gz"


@pytest.mark.parametrize(("sparsity", "pattern"), [(0.5, (2, 4)), (0.5, (4, 8)), (0.6, None), (0.5, None)])
def test_decoder_shape_reads_the_tickets_sparsity_and_pattern(sparsity: float, pattern: tuple[int, int] | None
                                                              ) -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    batches = calibration_batches(tokenizer, " ".join(["The old man and the young woman."] * 60), sequences=4,
                                  length=32)
    kept = prune_layerwise(model, batches, method="wanda", sparsity=sparsity, pattern=pattern)
    shape = decoder_shape(model)
    assert shape.sparsity == 1 - sum(int(m.sum()) for m in kept.values()) / sum(m.numel() for m in kept.values())
    assert shape.sparsity == pytest.approx(sparsity, abs=0.01)  # whole weights per row
    assert shape.pattern == (None if pattern is None else f"{pattern[0]}:{pattern[1]}")
    assert decoder_shape(tiny_llama(len(tokenizer))).sparsity == 0.0


def test_split_keeps_each_context_whole_and_halves_every_value() -> None:
    items = read_bbq(BBQ, choices="original")
    calibration = split_items(items, sensitive="category", benchmark="bbq", prompts=items.prompt.tolist(), seed=3)
    family = items.category + "#" + items.question_index
    assert (items.assign(c=calibration).groupby(family)["c"].nunique() == 1).all()  # no template on both sides
    first_sentence = items.prompt.str.split(".").str[0]
    assert not set(first_sentence[calibration]) & set(first_sentence[~calibration])  # nor any shared context
    for _, members in items.assign(c=calibration, f=family).groupby("category"):
        families = members.drop_duplicates("f")
        assert abs(int(families.c.sum()) - len(families) // 2) <= 0  # half of each category's contexts calibrate
    again = split_items(items, sensitive="category", benchmark="bbq", prompts=items.prompt.tolist(), seed=3)
    other = split_items(items, sensitive="category", benchmark="bbq", prompts=items.prompt.tolist(), seed=4)
    assert (again == calibration).all() and (other != calibration).any()


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny Llama (weights scaled up), its 2:4 Wanda ticket and one ``report --alternatives`` on 160 BBQ items (three answers)."""
    root = tmp_path_factory.mktemp("language-alternatives")
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    with torch.no_grad():  # larger weights: pruning half of them changes some answers
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.mul_(8.0)
    model.save_pretrained(root / "dense")
    tokenizer.save_pretrained(root / "dense")
    run = run_cli(["prune", "--model", str(root / "dense"), "--method", "wanda", "--pattern", "2:4", "--sparsity",
                   "0.5", "--out", str(root / "ticket"), "--quiet"])
    assert run.code == 0, run.stderr
    run = run_cli(["report", "--dense", str(root / "dense"), "--ticket", str(root / "ticket"), "--benchmark", "bbq",
                   "--bbq-choices", "original", "--data", str(BBQ), "--limit", "160", "--analyses", "metrics,benchmark",
                   "--alternatives", "--alternatives-out", str(root / "candidates"), "--json", str(root / "a.json"),
                   "--out", str(root / "a.html"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    return root, json.loads((root / "a.json").read_text())["alternatives"]


def test_every_method_gives_a_candidate_of_the_tickets_shape(audited: tuple[Path, dict]) -> None:
    root, alternatives = audited
    names = [c["name"] for c in alternatives["candidates"]]
    assert names == [AUDITED, "magnitude", "wanda", "wanda+balanced", "wanda-worst-group", "sparsegpt"]
    assert "2:4 pattern" in alternatives["split"]
    for candidate in alternatives["candidates"][1:]:
        saved = Path(candidate["saved_to"])
        assert saved.is_dir() and (saved / "config.json").is_file()
        from ticketaudit.tickets.load import load_dense

        module = load_dense(saved).module
        assert decoder_shape(module) == decoder_shape(load_dense(root / "ticket").module)  # 50%, 2:4
        language = candidate["language"]
        assert language["verdict"] in ("pass", "fail", "inconclusive")
        assert np.isfinite(language["loss_per_token"])
        assert set(language["benchmark"]["per_category"]) == {"Age"}
        low, high = language["accuracy_vs_audited"]["ci"]
        assert low <= language["accuracy_vs_audited"]["value"] <= high
    lines = (root / "candidates" / "evaluation_items.jsonl").read_text().splitlines()
    assert len(lines) == alternatives["evaluation_rows"] and alternatives["calibration_rows"] + len(lines) == 160
    assert not [p for p in root.iterdir() if p.name.startswith(".ticketaudit-")]  # no staging left


@pytest.fixture(scope="module")
def audited_items(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The user's own items (one-token choices, so answers turn on the model, not on lengths), a 50% magnitude
    ticket and one ``report --alternatives``."""
    root = tmp_path_factory.mktemp("language-alternatives-items")
    save_tiny(root / "dense")
    rng = np.random.default_rng(0)
    words = " ".join(CORPUS).split()
    items = pd.DataFrame({"prompt": [" ".join(rng.choice(words, size=12)) + " Answer:" for _ in range(160)],
                          "c0": " A", "c1": " B", "c2": " C", "label": rng.integers(0, 3, 160),
                          "region": rng.choice(["north", "south"], 160)})
    items.to_json(root / "items.jsonl", orient="records", lines=True)
    assert run_cli(["prune", "--model", str(root / "dense"), "--method", "magnitude", "--sparsity", "0.5", "--out",
                    str(root / "ticket"), "--quiet"]).code == 0
    run = run_cli(["report", "--dense", str(root / "dense"), "--ticket", str(root / "ticket"), "--task", "choice",
                   "--data", str(root / "items.jsonl"), "--prompt", "prompt", "--choices", "c0,c1,c2", "--target",
                   "label", "--sensitive", "region", "--analyses", "metrics", "--alternatives", "--alternatives-out",
                   str(root / "candidates"), "--json", str(root / "a.json"), "--out", str(root / "a.html"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    return root, json.loads((root / "a.json").read_text())["alternatives"]


@pytest.mark.parametrize("which", ["audited", "audited_items"])
def test_a_saved_candidate_audited_again_reproduces_its_numbers(which: str, request: pytest.FixtureRequest) -> None:
    root, alternatives = request.getfixturevalue(which)
    changed = 0
    for candidate in alternatives["candidates"][1:]:
        command = json.loads((Path(candidate["saved_to"]) / "candidate.json").read_text())["reaudit"]
        out = root / f"again-{Path(candidate['saved_to']).name}.json"
        run = run_cli([*shlex.split(command)[1:], "--json", str(out), "--out", str(out.with_suffix(".html")),
                       "--quiet"])
        assert run.code in (0, 1), run.stderr
        again = json.loads(out.read_text())
        accuracy = again["performance"]["overall"]["metrics"]["accuracy"]
        assert accuracy["ticket"] == candidate["accuracy"]
        assert accuracy["delta"] == candidate["accuracy_delta"]["value"]
        assert accuracy["ci"] == candidate["accuracy_delta"]["ci"]
        assert {g["group"]: g["metrics"]["accuracy"]["ticket"] for g in again["subgroups"]} == candidate["group_accuracy"]
        if "benchmark" in candidate["language"]:
            assert again["benchmarks"]["bbq"]["per_category"] == candidate["language"]["benchmark"]["per_category"]
        changed += accuracy["delta"] != 0
    if which == "audited_items":
        assert changed  # some candidate answers differently from the dense model: equality has teeth here


def _candidate(name: str, *, verdict: str, gain: tuple[float, float, float] | None, accuracy: float = 0.6
               ) -> Candidate:
    language = {"verdict": verdict, "loss_per_token": 3.0}
    if gain is not None:
        language["accuracy_vs_audited"] = {"value": gain[0], "ci": [gain[1], gain[2]]}
    nothing = Estimate(0.0, (0.0, 0.0))
    return Candidate(name=name, method=name, recover="-", seed=None, sparsity=0.5, accuracy=accuracy,
                     accuracy_delta=nothing, worst_group="g", worst_group_accuracy=nothing, gap_widening=nothing,
                     max_excess_drop=None, group_accuracy={}, verdict=verdict, failed_checks=(),
                     language=language)


def test_an_alternative_is_preferred_only_when_the_paired_interval_shows_it() -> None:
    audited = _candidate(AUDITED, verdict="pass", gain=None)
    noisy = _candidate("wanda", verdict="pass", gain=(0.04, -0.01, 0.09), accuracy=0.9)
    shown = _candidate("sparsegpt", verdict="pass", gain=(0.03, 0.01, 0.05))
    worse_verdict = _candidate("magnitude", verdict="inconclusive", gain=(0.10, 0.05, 0.15))
    assert recommend_language([audited, noisy])[1] == AUDITED
    assert recommend_language([audited, noisy, shown])[1] == "sparsegpt"
    assert recommend_language([audited, worse_verdict])[1] == AUDITED
    unsure = _candidate(AUDITED, verdict="inconclusive", gain=None)
    text, best = recommend_language([unsure, noisy])
    assert best is None and "cannot show it passes" in text  # never "keep" what the data cannot show passes
    failing = _candidate(AUDITED, verdict="fail", gain=None)
    unfailed = _candidate("wanda", verdict="inconclusive", gain=(0.0, -0.1, 0.1))
    text, best = recommend_language([failing, unfailed])
    assert best is None and "wanda" in text and "cannot show they pass" in text  # named, never recommended
    passing = _candidate("sparsegpt", verdict="pass", gain=(-0.01, -0.1, 0.08), accuracy=0.5)
    assert recommend_language([failing, unfailed, passing])[1] == "sparsegpt"  # shown within every tolerance
    assert recommend_language([failing, _candidate("wanda", verdict="fail", gain=(0.0, -0.1, 0.1))])[1] is None


def test_a_small_budget_runs_the_required_candidates_and_names_the_rest(tmp_path: Path) -> None:
    save_tiny(tmp_path / "dense")
    assert run_cli(["prune", "--model", str(tmp_path / "dense"), "--method", "magnitude", "--sparsity", "0.5", "--out",
                    str(tmp_path / "ticket"), "--quiet"]).code == 0
    run = run_cli(["report", "--dense", str(tmp_path / "dense"), "--ticket", str(tmp_path / "ticket"), "--benchmark",
                   "bbq", "--data", str(BBQ), "--limit", "40", "--analyses", "metrics", "--alternatives",
                   "--alternatives-budget", "0.001", "--json", str(tmp_path / "a.json"), "--out",
                   str(tmp_path / "a.html"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    alternatives = json.loads((tmp_path / "a.json").read_text())["alternatives"]
    assert [c["name"] for c in alternatives["candidates"]] == [AUDITED, "magnitude"]
    assert {s["job"] for s in alternatives["budget"]["skipped"]} == {"wanda", "wanda+balanced", "wanda-worst-group",
                                                                    "sparsegpt"}
    assert (tmp_path / "a-alternatives" / "magnitude").is_dir()  # the default folder: beside the report
    assert "skipped" in " ".join(alternatives["notes"])


@pytest.mark.parametrize(("extra", "words"), [
    (["--alternatives", "--train-data", "x.csv"], "leave them out"),
    (["--alternatives", "--alternatives-out", "{existing}"], "not an empty directory"),
    (["--alternatives-out", "{tmp}/new"], "belongs to --alternatives"),
])
def test_bad_alternatives_options_on_a_language_model_are_exit_2(tmp_path: Path, extra: list[str], words: str) -> None:
    dense = save_tiny(tmp_path / "dense")
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("mine")
    args = ["report", "--dense", str(dense), "--ticket", str(dense), "--benchmark", "bbq", "--data", str(BBQ),
            "--limit", "20", "--json", str(tmp_path / "a.json"), "--out", str(tmp_path / "a.html"), "--quiet",
            *(e.format(existing=tmp_path / "existing", tmp=tmp_path) for e in extra)]
    run = run_cli(args)
    assert run.code == 2 and words in run.stderr, run.stderr
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "a-alternatives").exists()
    assert (tmp_path / "existing" / "keep.txt").read_text() == "mine"


def test_a_ticket_without_zeros_is_refused(tmp_path: Path) -> None:
    dense = save_tiny(tmp_path / "dense")
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(dense), "--benchmark", "bbq", "--data", str(BBQ),
                   "--limit", "20", "--alternatives", "--json", str(tmp_path / "a.json"), "--quiet"])
    assert run.code == 2 and "no zeros" in run.stderr, run.stderr
    assert not (tmp_path / "a.json").exists()



def test_crows_pairs_alternatives_on_gpt2_save_the_evaluation_pairs_and_reproduce(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer), kind="gpt2", seed=3)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.mul_(6.0)
    model.save_pretrained(tmp_path / "dense")
    tokenizer.save_pretrained(tmp_path / "dense")
    rng = np.random.default_rng(1)
    words = " ".join(CORPUS).split()
    pd.DataFrame({"sent_more": [" ".join(rng.choice(words, 8)) for _ in range(120)],
                  "sent_less": [" ".join(rng.choice(words, 8)) for _ in range(120)], "stereo_antistereo": "stereo",
                  "bias_type": rng.choice(["age", "gender"], 120)}).to_csv(tmp_path / "crows.csv", index=False)
    assert run_cli(["prune", "--model", str(tmp_path / "dense"), "--method", "sparsegpt", "--sparsity", "0.6", "--out",
                    str(tmp_path / "ticket"), "--quiet"]).code == 0
    run = run_cli(["report", "--dense", str(tmp_path / "dense"), "--ticket", str(tmp_path / "ticket"), "--benchmark",
                   "crows-pairs", "--data", str(tmp_path / "crows.csv"), "--alternatives", "--json",
                   str(tmp_path / "a.json"), "--out", str(tmp_path / "a.html"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    alternatives = json.loads((tmp_path / "a.json").read_text())["alternatives"]
    pairs = pd.read_csv(tmp_path / "a-alternatives" / "evaluation_items.csv")
    assert len(pairs) == alternatives["evaluation_rows"] and set(pairs.columns) >= {"sent_more", "sent_less"}
    wanda = next(c for c in alternatives["candidates"] if c["name"] == "wanda")
    command = json.loads((Path(wanda["saved_to"]) / "candidate.json").read_text())["reaudit"]
    run = run_cli([*shlex.split(command)[1:], "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.html"),
                   "--quiet"])
    assert run.code in (0, 1), run.stderr
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["performance"]["overall"]["metrics"]["accuracy"]["ci"] == wanda["accuracy_delta"]["ci"]
    assert again["benchmarks"]["crows_pairs"]["per_bias_type"] == wanda["language"]["benchmark"]["per_bias_type"]


def _uneven_ticket(root: Path) -> tuple[Path, dict[str, float]]:
    """A tiny Llama and a magnitude ticket that prunes its first block to 30% and its second to 70% (an OWL-style
    allocation), both saved as Hugging Face directories; the ticket's per-layer shares."""
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.mul_(8.0)
    model.save_pretrained(root / "dense")
    tokenizer.save_pretrained(root / "dense")
    names = decoder_shape(model).layers
    prune_layerwise(model, [], method="magnitude", sparsity={n: 0.3 if ".0." in n else 0.7 for n in names})
    model.save_pretrained(root / "ticket")
    tokenizer.save_pretrained(root / "ticket")
    return root, decoder_shape(model).layers


def test_an_uneven_ticket_is_matched_layer_by_layer(tmp_path: Path) -> None:
    root, layers = _uneven_ticket(tmp_path)
    assert {round(v, 2) for v in layers.values()} == {0.3, 0.7}
    run = run_cli(["report", "--dense", str(root / "dense"), "--ticket", str(root / "ticket"), "--benchmark", "bbq",
                   "--bbq-choices", "original", "--data", str(BBQ), "--limit", "80", "--analyses", "metrics",
                   "--alternatives", "--alternatives-out", str(root / "candidates"), "--json", str(root / "a.json"),
                   "--out", str(root / "a.html"), "--quiet"])
    assert run.code in (0, 1), run.stderr
    alternatives = json.loads((root / "a.json").read_text())["alternatives"]
    assert "each layer at the ticket's own share there, 30." in alternatives["split"]
    from ticketaudit.tickets.load import load_dense

    saved = [c for c in alternatives["candidates"] if c["saved_to"]]
    assert len(saved) >= 4
    for candidate in saved:
        shape = decoder_shape(load_dense(Path(candidate["saved_to"])).module)
        assert shape.layers.keys() == layers.keys()
        assert max(abs(shape.layers[n] - layers[n]) for n in layers) < 0.02, candidate["name"]  # whole rows
