"""--precision (issue: fast and bounded on real models): float64 keeps results independent of batch size;
the model's own precision is reproducible for the same batch size and device; auto picks float64 for
small models on the CPU; the verdict and every count agree between float32 and float64 on the test
models (bfloat16 may move a near-tied row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ticketaudit as ta
from ticketaudit.analyses import predict
from ticketaudit.analyses.cost import row_cost
from ticketaudit.report.render import report_dict

from conftest import FEATURES, Fixture
from helpers import run_cli
from text_models import prune_magnitude, save_text_model, text_table, tiny_bert


def _counts(document: dict[str, Any]) -> dict[str, Any]:
    """What a precision must not change: the verdict, each check's state, and every count-based number."""
    return {
        "verdict": document["verdict"],
        "checks": {c["id"]: c["status"] for c in document["checks"]},
        "groups": {g["group"]: (g["n"], g["positives"], g["discordant"],
                                {m: (e["dense"], e["ticket"]) for m, e in g["metrics"].items() if m != "ece"})
                   for g in document["subgroups"]},
        "flips": document.get("disagreement", {}).get("overall"),
    }


def test_auto_is_float64_for_cheap_audits_on_the_cpu_else_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    small = torch.nn.Linear(4, 2)
    assert predict.resolve_precision("auto", models=(small, small), device="cpu") == "float64"
    assert predict.resolve_precision("auto", models=(small, small), device="cuda") == "float32"
    half = torch.nn.Linear(4, 2).to(torch.bfloat16)  # Module.to works in place
    assert predict.resolve_precision("auto", models=(half, half), device="cuda") == "bfloat16"
    assert predict.resolve_precision("float32", models=(small, small), device="cpu") == "float32"
    # the cost is multiply-adds x rows, not the parameter count: a small model on many rows is costly too
    assert predict.resolve_precision("auto", models=(small, small), device="cpu", macs_per_row=16,
                                     rows=10**10) == "float32"
    choice = predict.choose_precision("auto", models=(small, small), device="cpu", macs_per_row=16, rows=1000)
    assert choice.name == "float64" and "1,000 rows" in choice.reason and "1.6e+04" in choice.reason


def test_a_convolution_at_224_pixels_runs_in_its_own_precision_by_default() -> None:
    """Few parameters, much compute: a 224-px CNN of 0.6M parameters (the old rule said float64) costs ~2e9
    multiply-adds an image, so 600 images on both models are far over the float64 budget."""
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    per_image = row_cost(cnn, np.zeros((1, 3, 224, 224), dtype=np.float32)).total
    assert 3.5e9 < per_image < 4.5e9  # 2 x 64 x 64 x 9 x 224 x 224 + 3 x 64 x 9 x 224 x 224
    choice = predict.choose_precision("auto", models=(cnn, cnn), device="cpu", macs_per_row=2 * per_image, rows=600)
    assert choice.name == "float32" and "over" in choice.reason


def test_the_json_and_provenance_say_why(fx: Fixture) -> None:
    result = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, target="y", sensitive=["sex"],
                      features=FEATURES, analyses="metrics", seed=0, n_boot=200)
    settings = report_dict(result)["settings"]
    assert settings["precision"] == "float64" and settings["precision_reason"].startswith("auto:")
    assert f"{len(fx.frame):,} rows" in settings["precision_reason"]
    assert result.provenance["precision"].startswith("float64 (auto:")
    forced = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, target="y", sensitive=["sex"],
                      features=FEATURES, analyses="metrics", seed=0, n_boot=200, precision="float32")
    assert report_dict(forced)["settings"]["precision_reason"] == "requested"


def test_precisions_agree_on_every_count_and_the_json_says_which(fx: Fixture) -> None:
    options = {"target": "y", "sensitive": ["sex", "race"], "features": FEATURES, "seed": 0, "n_boot": 200,
               "analyses": "metrics,disagreement"}
    found = {p: report_dict(ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, precision=p, **options))
             for p in ("auto", "float64", "float32", "bfloat16")}
    assert {p: d["settings"]["precision"] for p, d in found.items()} == {
        "auto": "float64", "float64": "float64", "float32": "float32", "bfloat16": "bfloat16"}
    assert found["auto"]["settings"]["precision_reason"].startswith("auto:")
    assert found["float64"]["settings"]["precision_reason"] == "requested"
    assert {k: v for k, v in found["auto"].items() if k != "settings"} == {
        k: v for k, v in found["float64"].items() if k != "settings"}
    assert _counts(found["float32"]) == _counts(found["float64"])
    # bfloat16 keeps 8 bits of mantissa: a near-tied row may change its prediction (here 1 of 800), never many.
    coarse, exact = found["bfloat16"], found["float64"]
    assert coarse["verdict"] == exact["verdict"]
    for low, high in zip(coarse["subgroups"], exact["subgroups"]):
        for model in ("dense", "ticket"):
            assert abs(low["metrics"]["accuracy"][model] - high["metrics"]["accuracy"][model]) <= 0.01


def test_own_precision_is_byte_identical_for_the_same_batch_size(report_args: list[str], tmp_path: Path) -> None:
    outputs = []
    for run in range(2):
        json_path = tmp_path / f"{run}.json"
        args = [a if a != str(tmp_path / "r.json") else str(json_path) for a in report_args]
        done = run_cli(args + ["--precision", "float32", "--batch-size", "64"])
        assert done.code in (0, 1), done.stderr
        outputs.append(json_path.read_bytes())
    assert outputs[0] == outputs[1] and b'"precision": "float32"' in outputs[0]


def test_precision_agrees_on_a_hugging_face_text_model(tmp_path: Path) -> None:
    dense = tiny_bert()
    save_text_model(dense, tmp_path / "dense")
    save_text_model(prune_magnitude(dense, keep=0.5), tmp_path / "ticket")
    table = text_table(400)
    found = {p: report_dict(ta.audit(dense=str(tmp_path / "dense"), ticket=str(tmp_path / "ticket"), data=table,
                                     target="label", sensitive="group", text="review", seed=0, n_boot=200,
                                     analyses="metrics,disagreement,attention", precision=p))
             for p in ("float64", "float32")}
    assert _counts(found["float32"]) == _counts(found["float64"])
    entropy = [found[p]["attention"] for p in ("float64", "float32")]
    assert entropy[0].keys() == entropy[1].keys()


def test_a_bad_precision_is_exit_2(report_args: list[str], tmp_path: Path) -> None:
    run = run_cli(report_args + ["--precision", "Float16"])
    assert run.code == 2 and "--precision" in run.stderr and "float64" in run.stderr
    assert not (tmp_path / "r.html").exists()
    with pytest.raises(ta.InvalidInputError, match="lower case"):
        ta.audit(dense=torch.nn.Linear(4, 2), data="x.csv", target="y", sensitive="s", precision="FLOAT32")
