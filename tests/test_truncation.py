"""Texts longer than the model's limit are never cut silently: counted per group in the JSON and the report, and
cut as ``--truncation`` says (head, head+tail) or refused (error)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli
from text_models import WORDS, _tokenizer, prune_magnitude, save_text_model, text_table, tiny_bert

import ticketaudit as ta
from ticketaudit.exceptions import InvalidInputError
from ticketaudit.inputs import build_text_inputs, encode_texts

pytest.importorskip("transformers")
LIMIT = 32  # the tiny tokenizer's model_max_length


def _long(words: int, seed: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(WORDS, size=words))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("long")
    dense = tiny_bert(seed=1)
    save_text_model(dense, root / "dense")
    save_text_model(prune_magnitude(dense, keep=0.4), root / "ticket")
    return root


def _table(long_rows: dict[str, list[int]], *, words: int = 5_000) -> pd.DataFrame:
    """Short reviews, with the rows listed per group made ``words`` words long."""
    frame = text_table(120, seed=3)
    frame["group"] = np.where(np.arange(120) < 60, "a", np.where(np.arange(120) < 100, "b", "c"))
    for rows in long_rows.values():
        for i in rows:
            frame.loc[i, "review"] = _long(words + i, seed=i)
    return frame


@pytest.mark.parametrize("words", [31, 40, 5_000])
def test_head_and_head_tail_keep_the_right_tokens(tmp_path: Path, words: int) -> None:
    tokenizer = _tokenizer(tmp_path)
    text = _long(words, seed=words)
    full = tokenizer(text)["input_ids"]
    encoded, cut = encode_texts(tokenizer, [text, "good film"], limit=LIMIT, truncation="head")
    assert list(cut) == [len(full) > LIMIT, False]
    assert encoded["input_ids"][0] == tokenizer(text, truncation=True, max_length=LIMIT)["input_ids"]
    assert encoded["input_ids"][1] == tokenizer("good film")["input_ids"]
    both, _ = encode_texts(tokenizer, [text], limit=LIMIT, truncation="head+tail")
    ids = both["input_ids"][0]
    if len(full) > LIMIT:
        assert len(ids) == LIMIT and ids == full[:LIMIT // 4] + full[-(LIMIT - LIMIT // 4):]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    else:
        assert ids == full
    with pytest.raises(InvalidInputError, match="shorten them") if len(full) > LIMIT else _nothing():
        encode_texts(tokenizer, [text], limit=LIMIT, truncation="error")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


@pytest.mark.parametrize("strategy", ["head", "head+tail"])
@pytest.mark.parametrize("long_rows", [{"a": [0, 5, 9], "c": [110]}, {"b": list(range(60, 100))}, {}])
def test_truncated_rows_are_counted_per_group(models: Path, strategy: str, long_rows: dict[str, list[int]]) -> None:
    frame = _table(long_rows)
    result = ta.audit(dense=models / "dense", ticket=models / "ticket", data=frame, target="label",
                      sensitive="group", text="review", analyses="metrics", seed=0, n_boot=200, truncation=strategy)
    summary = result.to_dict()["data"]["truncation"]
    assert summary["strategy"] == strategy and summary["limit"] == LIMIT
    assert summary["rows"] == sum(len(v) for v in long_rows.values())
    counted = {g["group"]: g["rows"] for g in summary["groups"]}
    assert counted == {f"group={k}": len(v) for k, v in long_rows.items()}
    noted = [n for n in result.notes if "longer than the model's" in n]
    assert bool(noted) == bool(long_rows)


def test_the_rule_changes_what_the_models_see_and_is_in_the_report(models: Path, tmp_path: Path) -> None:
    frame = _table({"a": list(range(0, 30))}, words=300)
    frame.to_csv(tmp_path / "long.csv", index=False)
    inputs = {s: build_text_inputs(frame, column="review", tokenizer=_tokenizer(tmp_path), max_length=LIMIT,
                                   truncation=s) for s in ("head", "head+tail")}
    assert not np.array_equal(inputs["head"].input_ids[:30], inputs["head+tail"].input_ids[:30])
    assert np.array_equal(inputs["head"].input_ids[30:], inputs["head+tail"].input_ids[30:])
    args = ["report", "--dense", str(models / "dense"), "--ticket", str(models / "ticket"), "--data",
            str(tmp_path / "long.csv"), "--target", "label", "--sensitive", "group", "--text", "review", "--seed", "0",
            "--n-boot", "200", "--analyses", "metrics,attributions", "--attribution-rows", "12", "--quiet",
            "--truncation", "head+tail", "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")]
    run = run_cli(args)
    assert run.code in (0, 1), run.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["data"]["truncation"]["rows"] == 30
    html = (tmp_path / "r.html").read_text()
    assert "30 text(s)" in html and "--truncation head+tail" in html


@pytest.mark.parametrize("long_rows", [[0], [3, 50, 99, 119], list(range(10, 30))])
def test_error_refuses_every_long_row_before_any_model_runs(models: Path, long_rows: list[int],
                                                             tmp_path: Path) -> None:
    frame = _table({"a": long_rows})
    frame.to_csv(tmp_path / "long.csv", index=False)
    run = run_cli(["report", "--dense", str(models / "dense"), "--ticket", str(models / "ticket"), "--data",
                   str(tmp_path / "long.csv"), "--target", "label", "--sensitive", "group", "--text", "review",
                   "--truncation", "error", "--quiet", "--out", str(tmp_path / "r.html")])
    assert run.code == 2, run.stderr
    words = " ".join(run.stderr.split())
    count = len(long_rows)
    assert f"{count:,} row{'s' if count > 1 else ''}" in words and str(long_rows[0]) in words
    assert "--truncation head or head+tail" in words and not (tmp_path / "r.html").exists()


def test_many_empty_texts_are_counted(models: Path, tmp_path: Path) -> None:
    frame = _table({})
    rows = [0, 7, 8, 30, 31, 44, 60, 61, 90, 119]
    frame.loc[rows, "review"] = "   "
    frame.to_csv(tmp_path / "empty.csv", index=False)
    run = run_cli(["report", "--dense", str(models / "dense"), "--ticket", str(models / "ticket"), "--data",
                   str(tmp_path / "empty.csv"), "--target", "label", "--sensitive", "group", "--text", "review",
                   "--quiet", "--out", str(tmp_path / "r.html")])
    assert run.code == 2
    assert "is an empty string in 10 rows (first: 0, 7, 8, 30, 31, ...)" in " ".join(run.stderr.split())
