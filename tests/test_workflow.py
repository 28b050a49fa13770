"""Review-workflow outputs (issue: embedded in review workflows). Each output is read back with its
consumer's own parser: JUnit XML with an XML-schema validator and junitparser, the pull-request summary
with markdown-it (GitHub's table rules) and its length limit, the model card with PyYAML and
huggingface_hub, the MLflow run with MLflow's client. Diffs are tested by simulation (known truth)."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ticketaudit as ta
from ticketaudit.cli import optional_values
from ticketaudit.report.render import report_dict
from ticketaudit.workflow import diff as diff_module
from ticketaudit.workflow.reports import check_sentence

from conftest import FEATURES, Fixture
from helpers import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def _broken(dense: torch.nn.Module) -> torch.nn.Module:
    """A 'ticket' that predicts class 0 for every row: a large, certain accuracy drop."""
    ticket = copy.deepcopy(dense)
    last = [m for m in ticket.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([10.0, 0.0]))
    return ticket


def _options() -> dict[str, Any]:
    return {"target": "y", "sensitive": ["sex", "race"], "features": FEATURES, "seed": 0, "n_boot": 200}


@pytest.fixture(scope="module")
def documents(fx: Fixture) -> dict[str, dict[str, Any]]:
    """The JSON documents of a passing-or-open audit (the fixture's ticket) and of a failing one."""
    good = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, **_options())
    bad = ta.audit(dense=fx.dense, ticket=_broken(fx.dense), data=fx.frame, **_options())
    return {"good": report_dict(good), "bad": report_dict(bad)}


def _with_groups(document: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A copy of ``document`` whose subgroups are ``names`` (copies of its first group)."""
    out = copy.deepcopy(document)
    out["subgroups"] = [{**copy.deepcopy(document["subgroups"][0]), "group": name} for name in names]
    return out


# --- JUnit -----------------------------------------------------------------------------------------------

def test_junit_is_valid_for_ci_reporters_and_counts_every_check(documents: dict[str, dict[str, Any]]) -> None:
    import junitparser
    import xmlschema

    schema = xmlschema.XMLSchema(FIXTURES / "junit-jenkins.xsd")
    document = documents["bad"]
    xml = ta.render_junit(document)
    schema.validate(xml.decode("utf-8"))
    parsed = junitparser.JUnitXml.fromstring(xml)
    cases = [case for suite in parsed for case in suite]
    assert len(cases) == len(document["checks"])
    failed = [c for c in document["checks"] if c["status"] == "fail"]
    assert failed, "the broken ticket must fail a check"
    failures = [r for case in cases for r in case.result if isinstance(r, junitparser.Failure)]
    skipped = [r for case in cases for r in case.result if isinstance(r, junitparser.Skipped)]
    assert len(failures) == len(failed)
    assert len(skipped) == sum(c["status"] == "inconclusive" for c in document["checks"])
    overall = next(c for c in failed if c["id"] == "overall_accuracy_drop")
    message = next(f.message for case in cases for f in case.result
                   if isinstance(f, junitparser.Failure) and case.classname.endswith("overall_accuracy_drop"))
    assert f"{overall['value'] * 100:+.2f} pts" in message and f"{overall['tolerance'] * 100:.2f} pts" in message
    assert "interval" in message


def test_junit_keeps_hostile_group_names_valid(documents: dict[str, dict[str, Any]]) -> None:
    import xmlschema

    document = copy.deepcopy(documents["bad"])
    document["checks"][-1]["group"] = 'a<b>&"c"\x01\x1b]0;x\x07'
    xml = ta.render_junit(document)
    xmlschema.XMLSchema(FIXTURES / "junit-jenkins.xsd").validate(xml.decode("utf-8"))
    assert b"\\x01" in xml and b"&lt;b&gt;" in xml


# --- Markdown ---------------------------------------------------------------------------------------------

def _github() -> Any:
    """markdown-it with GitHub's extensions: tables, strikethrough and linkify (bare URLs, www., e-mail)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("gfm-like")


def _tables(markdown: str) -> list[list[list[str]]]:
    """Tables as rows of cell texts, parsed with GitHub's rules (markdown-it's GFM preset: tables and bare-URL
    links); a cell with any markup (emphasis, link, HTML) is marked "<markup>"; code spans read as their text."""
    tokens = _github().parse(markdown)
    tables: list[list[list[str]]] = []
    row: list[str] = []
    for i, token in enumerate(tokens):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            children = tokens[i + 1].children or []
            plain = all(child.type in ("text", "softbreak", "code_inline") for child in children)
            row.append("".join(child.content for child in children) if plain else "<markup>")
        elif token.type == "tr_close":
            tables[-1].append(row)
    return tables


def test_markdown_lists_failed_checks_and_a_row_per_group(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["bad"]
    markdown = ta.render_markdown(document)
    assert markdown.startswith("## ticketaudit: FAIL")
    for check in (c for c in document["checks"] if c["status"] == "fail"):
        assert check_sentence(check) in markdown
    (table,) = _tables(markdown)
    assert len(table) == 1 + len(document["subgroups"])
    width = len(table[0])
    assert all(len(row) == width for row in table)
    assert "http" not in markdown and "](" not in markdown  # link-free


def test_markdown_stays_under_githubs_limit_and_escapes_names(documents: dict[str, dict[str, Any]]) -> None:
    names = [f"g{i}|x*y_[z](http://e.test)<b>" for i in range(3_000)]
    document = _with_groups(documents["bad"], names)
    markdown = ta.render_markdown(document)
    assert len(markdown) <= 65_000
    (table,) = _tables(markdown)
    assert all(len(row) == len(table[0]) for row in table)  # a '|' in a name never splits a cell
    assert table[1][0] == names[0]  # shown literally: no emphasis, link or HTML
    assert re.search(r"and [\d,]+ more groups", markdown)
    few = ta.render_markdown(_with_groups(documents["bad"], names[:3]))
    assert "more groups" not in few


LINKABLE_NAMES = ["https://evil.example/x?a=1", "see www.evil.example now", "mail me@evil.example", "ftp://f.example/a|b",
                  "sex=F`x`https://a.example", "mailto:me@evil.example"]
BIDI_NAMES = ["sex=Female\u202e(evil)", "a\u2066b\u2069", "\u200fright", "x\u061cy"]


@pytest.mark.parametrize("name", LINKABLE_NAMES + BIDI_NAMES)
def test_markdown_never_links_a_group_name_nor_passes_bidi_controls(documents: dict[str, dict[str, Any]],
                                                                   name: str) -> None:
    """GitHub links bare URLs, www. names and addresses; the summary shows them as code. Bidirectional controls
    (which reorder how a line reads) are written out as ⟨U+XXXX⟩ in the Markdown and the model card."""
    from ticketaudit.report.formats import BIDI_CONTROLS

    document = _with_groups(documents["bad"], [name, "plain"])
    card = ta.render_model_card(document)
    for text in (ta.render_markdown(document), card.split("---\n", 2)[2]):  # the card's body; its YAML is metadata
        html = _github().render(text)
        assert "<a " not in html, html
        assert not any(ch in BIDI_CONTROLS for ch in text)
    assert not any(ch in BIDI_CONTROLS for ch in card)
    (table,) = _tables(ta.render_markdown(document))
    shown = next(row[0] for row in table[1:] if row[0] != "plain")
    expected = "".join(f"⟨U+{ord(ch):04X}⟩" if ch in BIDI_CONTROLS else ch for ch in name)
    assert shown.replace(" ", "") == expected.replace(" ", "")


# --- Model card -------------------------------------------------------------------------------------------

def test_model_card_front_matter_parses_and_holds_each_groups_accuracy(documents: dict[str, dict[str, Any]]) -> None:
    import yaml
    from huggingface_hub import ModelCard

    document = documents["bad"]
    card = ta.render_model_card(document, model_name="my-ticket")
    front = card.split("---\n")[1]
    metadata = yaml.safe_load(front)
    assert metadata["model-index"][0]["name"] == "my-ticket"
    results = ModelCard(card).data.eval_results
    groups = [document["performance"]["overall"], *document["subgroups"]]
    assert len(results) == 2 * len(groups)  # dense and ticket per group
    for group in groups:
        found = {r.metric_name: r.metric_value for r in results if r.dataset_config == group["group"]}
        accuracy = group["metrics"]["accuracy"]
        assert math.isclose(found[f"Accuracy, ticket ({group['group']})"], accuracy["ticket"], abs_tol=1e-6)
        assert math.isclose(found[f"Accuracy, dense model ({group['group']})"], accuracy["dense"], abs_tol=1e-6)
    assert "## Bias, Risks, and Limitations" in card and "Harms found" in card


# --- MLflow -----------------------------------------------------------------------------------------------

def test_mlflow_run_holds_params_metrics_and_reports(documents: dict[str, dict[str, Any]], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default artifact root is ./mlruns
    document = documents["bad"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = ta.log_mlflow(document, artifacts={"report.json": b"{}", "summary.md": b"# x"}, tracking_uri=uri)
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == "0" and run.data.params["ticket_sha256"] == document["models"]["ticket"]["sha256"]
    assert run.data.metrics["verdict"] == 2.0  # fail
    assert run.data.metrics["checks_failed"] == sum(c["status"] == "fail" for c in document["checks"])
    group = document["subgroups"][0]
    key = f"{group['group']}/accuracy/delta".replace("=", "_")
    assert math.isclose(run.data.metrics[key], group["metrics"]["accuracy"]["delta"], rel_tol=1e-12)
    artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id)}
    assert artifacts == {"report.json", "summary.md", "metric_names.json"}


def test_report_writes_every_workflow_output_together(fx: Fixture, report_args: list[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    outputs = {"--junit": "checks.xml", "--markdown": "pr.md", "--model-card": "card.md"}
    args = report_args + [x for option, name in outputs.items() for x in (option, str(tmp_path / name))]
    run = run_cli(args + ["--mlflow", f"sqlite:///{tmp_path / 'm.db'}"])
    assert run.code in (0, 1), run.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "checks.xml").read_bytes() == ta.render_junit(document)
    assert (tmp_path / "pr.md").read_text() == ta.render_markdown(document)
    assert summary.read_text() == "earlier step\n" + ta.render_markdown(document) + "\n"
    from mlflow import MlflowClient

    html = (tmp_path / "r.html").read_text()
    assert "Also written" in html and f"JUnit XML: {tmp_path / 'checks.xml'}" in html and "MLflow run at sqlite" in html
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    (run_info,) = client.search_runs([client.get_experiment_by_name("ticketaudit").experiment_id])
    assert run_info.data.tags["ticketaudit.verdict"] == document["verdict"]


def test_an_mlflow_store_that_cannot_be_made_leaves_no_output(report_args: list[str], tmp_path: Path) -> None:
    """Checked before any work (exit 2); a store that fails after the files exist is exit 4 (test_gate_outputs)."""
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store's folder should be")
    run = run_cli(report_args + ["--junit", str(tmp_path / "j.xml"), "--mlflow", f"sqlite:///{blocked}/m.db"])
    assert run.code == 2 and "--mlflow" in run.stderr and "does not exist or is not writable" in run.stderr
    assert "Traceback" not in run.stderr
    assert not any((tmp_path / name).exists() for name in ("r.html", "r.json", "j.xml"))


def test_mlflow_missing_is_exit_2_before_any_work(report_args: list[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    run = run_cli(report_args + ["--mlflow="])
    assert run.code == 2 and "ticketaudit[mlflow]" in run.stderr
    assert not (tmp_path / "r.html").exists()


def test_output_paths_are_checked_like_the_report(report_args: list[str], fx: Fixture, tmp_path: Path) -> None:
    same = run_cli(report_args + ["--markdown", str(tmp_path / "r.json")])
    assert same.code == 2 and "--json and --markdown name the same file" in same.stderr
    over_input = run_cli(report_args + ["--junit", str(fx.csv)])
    assert over_input.code == 2 and "never writes over its inputs" in over_input.stderr
    assert not (tmp_path / "r.html").exists()


def test_bare_mlflow_takes_no_value_from_the_next_option() -> None:
    assert optional_values(["report", "--mlflow", "--quiet"]) == ["report", "--mlflow=", "--quiet"]
    assert optional_values(["report", "--mlflow"]) == ["report", "--mlflow="]
    assert optional_values(["report", "--mlflow", "sqlite:///m.db"]) == ["report", "--mlflow", "sqlite:///m.db"]


# --- assert_no_group_harm ---------------------------------------------------------------------------------

def test_assert_no_group_harm_fails_with_the_failed_checks_in_words(fx: Fixture, tmp_path: Path) -> None:
    from ticketaudit.testing import assert_no_group_harm

    with pytest.raises(AssertionError) as raised:
        assert_no_group_harm(fx.dense, _broken(fx.dense), fx.frame, report=tmp_path / "r.html", **_options())
    message = str(raised.value)
    assert "verdict: FAIL" in message and "Overall accuracy drop" in message and str(tmp_path / "r.html") in message
    assert (tmp_path / "r.html").exists()
    result = assert_no_group_harm(fx.dense, copy.deepcopy(fx.dense), fx.frame, **_options())
    assert result.verdict != "fail" and not result.gate_failed


@pytest.mark.slow
def test_pytest_fixture_fails_a_users_test_with_the_message(fx: Fixture, tmp_path: Path) -> None:
    torch.save(fx.dense.state_dict(), tmp_path / "dense.pt")
    torch.save(_broken(fx.dense).state_dict(), tmp_path / "ticket.pt")
    (tmp_path / "test_user.py").write_text(f'''
def test_ticket(no_group_harm):
    no_group_harm("{tmp_path / 'dense.pt'}", "{tmp_path / 'ticket.pt'}", "{fx.csv}", factory="conftest:build",
                  target="y", sensitive="sex,race", features={FEATURES!r}, seed=0, n_boot=200)
''')
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_user.py"),
                          "--rootdir", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "AssertionError: the ticket harms groups beyond the policy" in run.stdout
    assert "ticketaudit-report.html" in run.stdout


# --- diff -------------------------------------------------------------------------------------------------

def test_diff_names_what_got_worse_and_gates_on_it(documents: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(documents["good"]))
    new.write_text(json.dumps(documents["bad"]))
    worse = run_cli(["diff", str(old), str(new), "--fail-on-regression", "--json", str(tmp_path / "d.json")])
    assert worse.code == 1, worse.stderr
    assert "WORSE Overall accuracy drop" in worse.stdout and "regression: yes" in worse.stdout
    diff = json.loads((tmp_path / "d.json").read_text())
    assert any(m["metric"] == "accuracy" and m["worse"] for m in diff["moves"])
    better = run_cli(["diff", str(new), str(old)])  # the way back: the big drop is named as better (another
    # check near its bound may still move either way, so only --fail-on-regression on identical audits must pass)
    same = run_cli(["diff", str(old), str(old), "--fail-on-regression"])
    assert (better.code, same.code) == (0, 0), better.stdout
    assert "better Overall accuracy drop" in better.stdout and "WORSE Overall accuracy drop" not in better.stdout
    assert "no check changed state" in same.stdout


def _simulated(rng: np.random.Generator, *, groups: int, se: float, shift: float) -> tuple[dict, dict]:
    """Two audits' per-group accuracy deltas: estimates ~ N(truth, se) with 95% intervals."""
    z = 1.959963984540054

    def audit(truth: float) -> dict[str, Any]:
        estimates = rng.normal(truth, se, size=groups)
        return {"policy": {"confidence": 0.95}, "subgroups": [
            {"group": f"g{i}", "insufficient": False,
             "metrics": {"accuracy": {"delta": float(e), "ci": [float(e - z * se), float(e + z * se)]}}}
            for i, e in enumerate(estimates)]}

    return audit(0.0), audit(shift)


def test_diff_moves_are_rare_by_chance_and_found_when_real() -> None:
    rng = np.random.default_rng(7)
    trials = 400
    chance = sum(bool(diff_module._moves(*_simulated(rng, groups=20, se=0.01, shift=0.0))[0]) for _ in range(trials))
    assert chance / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)  # family-wise, over 20 groups
    # A shift of 6 standard errors of the difference in every group: found (and called worse) nearly always.
    found = [diff_module._moves(*_simulated(rng, groups=20, se=0.01, shift=-0.06 * math.sqrt(2)))[0] for _ in range(50)]
    share = np.mean([len(moves) / 20 for moves in found])
    assert share >= 0.9 and all(m.worse for moves in found for m in moves)


def test_diff_refuses_what_it_cannot_read(documents: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(documents["good"]))
    cases = {
        "newer.json": ({**documents["good"], "schema_version": "2.0"}, "Upgrade ticketaudit"),
        "older.json": ({**documents["good"], "schema_version": "0.9"}, "Re-run the audit"),
        "prune.json": ({"schema_version": "1.0", "alternatives": {}}, "prune result"),
        "edited.json": ({**documents["good"], "verdict": "maybe"}, "does not match the report schema at verdict"),
        "other.json": ({"rows": 3}, "not a ticketaudit audit report"),
    }
    for name, (content, words) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        run = run_cli(["diff", str(good), str(tmp_path / name)])
        assert run.code == 2 and words in run.stderr, (name, run.stderr)
    (tmp_path / "report.html").write_text("<html>")
    run = run_cli(["diff", str(tmp_path / "report.html"), str(good)])
    assert run.code == 2 and "is not JSON" in run.stderr


# --- history ----------------------------------------------------------------------------------------------

def test_history_page_shows_every_audit_and_group_offline(documents: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    folder = tmp_path / "audits"
    folder.mkdir()
    for name, key in (("v2", "bad"), ("v10", "good"), ("v1", "good")):
        (folder / f"{name}.json").write_text(json.dumps(documents[key]))
    run = run_cli(["history", str(folder), "--out", str(tmp_path / "trend.html")])
    assert run.code == 0, run.stderr
    assert "v1 INCONCLUSIVE" in run.stdout.replace("PASS", "INCONCLUSIVE") and run.stdout.index("v2") < run.stdout.index("v10")
    html = (tmp_path / "trend.html").read_text()
    assert 'http-equiv="Content-Security-Policy"' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing from outside
    groups = [g["group"] for g in documents["good"]["subgroups"]]
    for group in groups:
        assert f"<strong>{group}</strong>" in html
    assert html.count("<svg") == sum(1 for g in documents["good"]["subgroups"] for m in ("accuracy", "tpr", "fpr")
                                     if m in g["metrics"])
    missing = run_cli(["history", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t2.html")])
    assert missing.code == 2 and not (tmp_path / "t2.html").exists()


def test_the_readmes_github_workflow_uses_real_options() -> None:
    import yaml

    from ticketaudit.cli import app

    root = Path(__file__).parents[1]
    workflow = yaml.safe_load((root / "examples/.github/workflows/ticket-audit.yml").read_text())
    (command,) = [step["run"] for step in workflow["jobs"]["audit"]["steps"] if "ticketaudit report" in step.get("run", "")]
    report = next(c for c in app.registered_commands if c.callback.__name__ == "report")
    import typer.main

    known = {opt for param in typer.main.get_command_from_info(report, pretty_exceptions_short=True,
                                                                rich_markup_mode=None).params for opt in param.opts}
    used = set(re.findall(r"(--[a-z-]+)", command))
    assert used and used <= known, used - known
    guide = (root / "docs" / "workflows.md").read_text()
    assert "```yaml\n" + (root / "examples/.github/workflows/ticket-audit.yml").read_text() + "```" in guide
