"""Attributions on text: Integrated Gradients at the token embeddings, summed to words; completeness,
word sums, identity-term reliance with known truth, batching, the time budget, and the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli
from text_models import _tokenizer, prune_magnitude, save_text_model, text_table, tiny_bert

import ticketaudit as ta
from ticketaudit.analyses.text_attributions import (
    _attribute, attribute_words, default_lexicon, identity_columns)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - transformers type
    return _tokenizer(tmp_path_factory.mktemp("tok"))


def _silenced(model: torch.nn.Module, word_id: int) -> torch.nn.Module:
    """``model`` with ``word_id``'s embedding set to the padding token's: under a padding baseline the word
    then has no path to the output, so its attribution is exactly 0 (the known truth of the reliance test)."""
    ticket = copy.deepcopy(model)
    with torch.no_grad():
        table = ticket.get_input_embeddings().weight
        table[word_id] = table[0]
    return ticket


def test_word_attributions_are_complete(tokenizer) -> None:
    """Integrated Gradients: a row's word attributions sum to f(text) - f(baseline) for the target."""
    model = tiny_bert(seed=3)
    texts = ["the movie was great", "awful plot and dull acting", "it was not quite good but funny"]
    targets = np.array([1, 0, 1])
    words = attribute_words(model, model, texts, targets, tokenizer=tokenizer, max_length=32,
                            method="integrated-gradients", steps=300, batch_size=2, device=CPU)
    encoded = tokenizer(texts, padding="longest", return_special_tokens_mask=True, return_tensors="pt")
    special = encoded.pop("special_tokens_mask").bool()
    baseline = torch.where(special, encoded["input_ids"], torch.zeros_like(encoded["input_ids"]))
    with torch.no_grad():
        full = model(**encoded).logits[torch.arange(3), targets]
        base = model(input_ids=baseline, attention_mask=encoded["attention_mask"]).logits[torch.arange(3), targets]
    np.testing.assert_allclose(words.dense.sum(1), (full - base).numpy(), atol=1e-4)
    assert words.convergence["dense"] < 1e-4


def test_a_repeated_word_sums_its_tokens(tokenizer) -> None:
    model = tiny_bert(seed=1)
    texts = ["good good film", "bad film"]
    words = attribute_words(model, model, texts, np.array([1, 0]), tokenizer=tokenizer, max_length=32,
                            method="integrated-gradients", steps=20, batch_size=2, device=CPU)
    encoded = tokenizer(texts, padding="longest", return_special_tokens_mask=True)
    ids = np.array(encoded["input_ids"])
    special = np.array(encoded["special_tokens_mask"], dtype=bool)
    tokens, _ = _attribute(model, ids, np.array(encoded["attention_mask"]), np.where(special, ids, 0), np.array([1, 0]),
                           method="integrated-gradients", steps=20, batch_size=2, device=CPU)
    good = words.vocabulary.index("good")
    assert words.dense[0, good] == pytest.approx(tokens[0, 1] + tokens[0, 2], abs=1e-12)
    assert words.present[0].sum() == 2 and not words.present[1, good]
    assert "".join(piece for piece, _ in words.segments[0]) == texts[0]


def test_a_left_padding_tokenizer_explains_each_row_as_it_is_scored(tokenizer) -> None:
    """Texts of different lengths: with the tokenizer padding on the left, the word attributions equal those
    with right padding (rows keep positions 0, 1, ..., as in the audit's own batches)."""
    model = tiny_bert(seed=6)
    texts = ["good", "the movie was great and the acting was fine", "bad film"]
    left = copy.deepcopy(tokenizer)
    left.padding_side = "left"
    runs = [attribute_words(model, model, texts, np.array([1, 0, 1]), tokenizer=t, max_length=32,
                            method="integrated-gradients", steps=20, batch_size=3, device=CPU) for t in (tokenizer, left)]
    assert runs[0].vocabulary == runs[1].vocabulary
    np.testing.assert_allclose(runs[1].dense, runs[0].dense, rtol=0, atol=1e-10)
    assert left.padding_side == "left"  # the caller's tokenizer is left as it was


def test_batched_equals_unbatched(tokenizer) -> None:
    model = tiny_bert(seed=2)
    texts = list(text_table(12, seed=4)["review"])
    targets = np.arange(12) % 2
    runs = [attribute_words(model, prune_magnitude(model, keep=0.5), texts, targets, tokenizer=tokenizer, max_length=32,
                            method="integrated-gradients", steps=16, batch_size=size, device=CPU) for size in (1, 5, 12)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.dense, runs[0].dense, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(other.ticket, runs[0].ticket, rtol=1e-4, atol=1e-7)


def test_lexicon_from_sensitive_values_and_matching() -> None:
    lexicon = default_lexicon({"race": ["Asian-Pac-Islander", "Black", "<missing>"], "sex": ["Female", "M", "2"]})
    assert lexicon == ("asian", "black", "female", "islander", "pac")
    assert identity_columns(("black", "women's", "film", "women"), ["women", "black"]) == [0, 1, 3]


def _text_audit(tmp_path: Path, ticket: torch.nn.Module, dense: torch.nn.Module, **options) -> dict:
    save_text_model(dense, tmp_path / "dense")
    save_text_model(ticket, tmp_path / "ticket")
    table = text_table(300, seed=7)
    result = ta.audit(dense=str(tmp_path / "dense"), ticket=str(tmp_path / "ticket"), data=table, target="label",
                      sensitive="group", text="review", n_boot=200, analyses=["attributions"], **options)
    return result.to_dict()["attributions"]


def test_a_ticket_that_silences_an_identity_term_stops_relying_on_it(tmp_path: Path, tokenizer) -> None:
    dense = tiny_bert(seed=5)
    term = "great"
    ticket = _silenced(dense, tokenizer.convert_tokens_to_ids(term))
    found = _text_audit(tmp_path, ticket, dense, identity_terms=[term])
    share = found["overall"]["sensitive_share"]
    assert found["identity_terms_found"] == [term] and term in found["identity_terms"]
    assert share["ticket"] == 0.0 and share["dense"] > 0.01
    assert share["ci"][1] < 0  # the drop in reliance is significant
    for group in found["groups"]:
        assert group["sensitive_share"]["ticket"] == 0.0


def test_identical_models_explain_identically(tmp_path: Path) -> None:
    dense = tiny_bert(seed=6)
    found = _text_audit(tmp_path, copy.deepcopy(dense), dense, identity_terms=["good"])
    assert found["overall"]["cosine"] == pytest.approx(1.0) and found["overall"]["spearman"] == pytest.approx(1.0)
    assert found["overall"]["sensitive_share"]["delta"] == pytest.approx(0.0, abs=1e-12)
    assert all(w["delta"] == pytest.approx(0.0, abs=1e-9) for g in found["changed_words"] for w in g["words"])


def test_without_attribution_rows_the_budget_cuts_the_stratified_sample(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget too small for the model cuts the stratified sample (every group represented, the same rows each run;
    a slow machine is simulated by the cost model's throughputs, not by a clock)."""
    from ticketaudit.analyses import cost

    slow = {kind: {p: rate / 1e4 for p, rate in rates.items()} for kind, rates in cost.THROUGHPUT.items()}
    monkeypatch.setattr(cost, "THROUGHPUT", slow)
    dense = tiny_bert(seed=8)
    found = [_text_audit(tmp_path / str(i), prune_magnitude(dense, keep=0.5), dense, attribution_budget=30)
             for i in range(2)]
    assert found[0] == found[1]
    budget = found[0]["budget"]
    assert found[0]["population_rows"] == 300 and found[0]["sample_rows"] == budget["rows"] < 300
    assert budget["estimated_seconds"] <= 30 and all(g["rows"] >= 1 for g in found[0]["groups"])


def test_text_attributions_through_the_cli(tmp_path: Path) -> None:
    dense = tiny_bert(seed=0)
    save_text_model(dense, tmp_path / "dense")
    save_text_model(prune_magnitude(dense, keep=0.3), tmp_path / "ticket")
    text_table(200).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "terms.txt").write_text("# words naming a group\nGood\n\nawful  # and another\n", encoding="utf-8")
    args = ["report", "--dense", str(tmp_path / "dense"), "--ticket", str(tmp_path / "ticket"), "--data",
            str(tmp_path / "reviews.csv"), "--target", "label", "--sensitive", "group", "--text", "review",
            "--n-boot", "200", "--seed", "0", "--identity-terms", str(tmp_path / "terms.txt"),
            "--attribution-rows", "120", "--analyses", "attributions", "--quiet"]
    documents = []
    for name in ("a", "b"):
        run = run_cli([*args, "--out", str(tmp_path / f"{name}.html"), "--json", str(tmp_path / f"{name}.json")])
        assert run.code in (0, 1), run.stderr
        documents.append((tmp_path / f"{name}.json").read_bytes())
    assert documents[0] == documents[1]
    found = json.loads(documents[0])["attributions"]
    assert found["sample_rows"] == 120 and found["unit"] == "word"
    assert {"good", "awful"} <= set(found["identity_terms"]) and found["highlighted"]
    html = (tmp_path / "a.html").read_text()
    assert "Rows whose explanations differ most" in html and "<mark style=" in html
    assert "reliance on identity terms" in html


def test_empty_identity_terms_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "terms.txt").write_text("# nothing here\n\n", encoding="utf-8")
    with pytest.raises(ta.InvalidInputError, match="gives no term"):
        from ticketaudit.analyses.attributions import read_identity_terms

        read_identity_terms(tmp_path / "terms.txt")


@pytest.mark.slow
def test_text_audit_is_the_same_on_ray_in_fragments_and_in_memory(tmp_path: Path) -> None:
    """Every row is padded to the table's longest, so fragments, workers and engines see the same inputs."""
    pytest.importorskip("ray")
    dense = tiny_bert(seed=9)
    save_text_model(dense, tmp_path / "dense")
    save_text_model(prune_magnitude(dense, keep=0.4), tmp_path / "ticket")
    table = text_table(300, seed=11)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(table)), 3)):
        table.iloc[rows].to_parquet(parts / f"part-{i}.parquet", index=False, row_group_size=40)
    table.to_csv(tmp_path / "all.csv", index=False)

    def run(data: Path, **options) -> dict:
        return ta.audit(dense=str(tmp_path / "dense"), ticket=str(tmp_path / "ticket"), data=str(data),
                        target="label", sensitive="group", text="review", n_boot=200, seed=2, attribution_rows=90,
                        **options).to_dict()

    local, remote = run(parts), run(parts, engine="ray", num_workers=2)
    assert json.dumps(local, sort_keys=True) == json.dumps(remote, sort_keys=True)
    in_memory = run(tmp_path / "all.csv")
    for key in ("performance", "subgroups", "disagreement", "attention", "attributions", "checks", "verdict"):
        assert json.dumps(in_memory[key], sort_keys=True) == json.dumps(local[key], sort_keys=True), key
    assert remote["attributions"]["unit"] == "word" and remote["attributions"]["sample_rows"] == 90
