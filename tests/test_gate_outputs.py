"""Every output tells the exit code's story; no gate the policy sets disappears; side outputs never lose the
audit nor write over an input (issue: nothing quietly wrong, round two)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import run_cli

import ticketaudit as ta
from ticketaudit.report.formats import BIDI_CONTROLS

from conftest import FEATURES, Fixture

POLICIES = {  # name: (policy TOML body, how the gate should end: exit code)
    "defaults (inconclusive, warn)": ("", None),
    "inconclusive fails": ('on_inconclusive = "fail"\n', None),
    "loose: passes": ("max_group_excess_drop = 0.9\nmax_gap_widening = 0.9\nmax_tpr_gap_widening = 0.9\n"
                      "max_fpr_gap_widening = 0.9\nmax_overall_accuracy_drop = 0.9\nmin_group_size = 1000000\n", 0),
    "strict: fails": ("max_overall_accuracy_drop = 0.0\nmax_group_excess_drop = 0.0\nmax_gap_widening = 0.0\n", None),
    "gate not evaluated": ("max_sensitive_reliance_increase = 0.05\n", None),
    "gate not evaluated fails": ('max_group_entropy_shift = 0.05\non_not_evaluated = "fail"\n', 1),
    "small groups fail": ('on_insufficient = "fail"\nmin_group_size = 1000\n', 1),
}


def _run(report_args: list[str], tmp_path: Path, policy: str, *extra: str) -> tuple[int, dict, str]:
    (tmp_path / "policy.toml").write_text("[policy]\n" + policy, encoding="utf-8")
    outputs = ["--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "pr.md"), "--model-card",
               str(tmp_path / "card.md"), "--mlflow", f"sqlite:///{tmp_path / 'm.db'}"]
    run = run_cli([*report_args, "--analyses", "metrics", "--policy", str(tmp_path / "policy.toml"), *outputs, *extra])
    assert run.code in (0, 1), run.stderr
    return run.code, json.loads((tmp_path / "r.json").read_text()), run.stdout


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_output_tells_the_exit_codes_story(name: str, report_args: list[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """JUnit's failure count, Markdown's and the card's gate line, MLflow's gate tag and metric, the HTML and
    stdout agree with the exit code, for every policy (inconclusive warn / fail, passing, failing, not-evaluated
    gates counted either way, small groups)."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    policy, expected = POLICIES[name]
    code, document, stdout = _run(report_args, tmp_path, policy)
    if expected is not None:
        assert code == expected, (name, document["verdict"])
    fails = code == 1
    junit = ET.parse(tmp_path / "j.xml").getroot()
    assert (int(junit.get("failures")) > 0) == fails
    assert int(junit.get("failures")) == len(junit.findall(".//failure"))
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["gate"] == ("fail" if fails else "pass")
    words = "release gate: FAILS (exit 1)" if fails else "release gate: passes (exit 0)"
    assert words.lower() in (tmp_path / "pr.md").read_text().lower()
    assert words.lower() in (tmp_path / "card.md").read_text().lower()
    assert words in stdout
    warns = not fails and document["verdict"] == "inconclusive"  # exit 0 is never a bare "passes" when unsure
    assert ("release gate: passes (exit 0), with a warning: the verdict is inconclusive" in stdout) == warns
    assert ("with a warning: the verdict is inconclusive" in (tmp_path / "pr.md").read_text().lower()) == warns
    html = (tmp_path / "r.html").read_text()
    assert ("Release gate: fails (exit code 1)" if fails else "Release gate: passes (exit code 0)") in html
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ticketaudit").experiment_id])
    assert run.data.tags["ticketaudit.gate"] == ("fail" if fails else "pass")
    assert run.data.metrics["gate_failed"] == float(fails)
    if document["verdict"] == "inconclusive" and 'on_inconclusive = "fail"' in policy:
        assert code == 1 and junit.findall(".//failure")  # the case JUnit used to call green


@pytest.mark.parametrize("key, analyses, words", [
    ("max_sensitive_reliance_increase", "metrics", "add attributions to --analyses"),
    ("max_sensitive_reliance_increase", "metrics,attributions", "no sensitive column is a model input"),
    ("max_group_entropy_shift", "metrics", "needs"),
    ("max_tpr_drop", "metrics", "no group is large enough"),
])
def test_a_gate_that_cannot_be_evaluated_is_reported_not_dropped(key: str, analyses: str, words: str,
                                                                  fx: Fixture) -> None:
    """Asked-for gates whose analysis did not run, cannot run on this model (no attention), or has nothing to
    gate (no sensitive input column; every group too small) become ``not_evaluated`` checks, counted as the
    policy says."""
    extra = {"min_group_size": 10**6} if key == "max_tpr_drop" else {}
    for counted in ("inconclusive", "fail"):
        policy = ta.Policy(**{key: 0.05, "on_not_evaluated": counted, **extra})
        result = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, target="y", sensitive=["sex", "race"],
                          features=FEATURES, analyses=analyses, seed=0, n_boot=200, policy=policy,
                          attribution_rows=40)
        (check,) = result.not_evaluated_checks
        assert check.status == "not_evaluated" and words in check.reason, check.reason
        assert result.verdict in (("fail",) if counted == "fail" else ("inconclusive", "fail"))
        assert result.gate_failed == (counted == "fail" or result.verdict == "fail")
        assert check.to_dict()["reason"] == check.reason
        assert check.id == key.removeprefix("max_").replace("sensitive_reliance_increase",
                                                              "sensitive_reliance_increase")


def test_a_gate_that_is_evaluated_makes_no_not_evaluated_check(fx: Fixture) -> None:
    result = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, target="y", sensitive=["sex", "race"],
                      features=FEATURES, analyses="metrics", seed=0, n_boot=200, policy=ta.Policy(max_tpr_drop=0.05))
    assert not result.not_evaluated_checks and any(c.id.startswith("tpr_drop:") for c in result.checks)


# --- MLflow ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["https://example.test/", "a//b", "/lead", "trail/", "..", "x/./y", "ü ß:é"])
def test_any_group_value_logs_to_mlflow_with_a_name_map(value: str, fx: Fixture, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    data = fx.frame.assign(sex=fx.frame["sex"].where(fx.frame["sex"] != fx.frame["sex"].iloc[0], value))
    result = ta.audit(dense=fx.dense, ticket=fx.ticket, data=data, target="y", sensitive=["sex"], features=FEATURES,
                      analyses="metrics", seed=0, n_boot=200)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    run_id = ta.log_mlflow(result, tracking_uri=uri)
    client = MlflowClient(tracking_uri=uri)
    folder = Path(client.download_artifacts(run_id, "metric_names.json", str(tmp_path)))
    names = json.loads(folder.read_text())
    logged = client.get_run(run_id).data.metrics
    mine = [n for n in names if n["group"] == f"sex={value}" and n["metric"] == "accuracy" and n["field"] == "delta"]
    assert len(mine) == 1 and mine[0]["mlflow_metric"] in logged


def test_mlflow_failing_after_the_audit_keeps_the_files_and_exits_4(report_args: list[str], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    def gone(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the tracking server went away")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", gone)
    run = run_cli([*report_args, "--junit", str(tmp_path / "j.xml"), "--mlflow", f"sqlite:///{tmp_path / 'm.db'}"])
    assert run.code == 4, run.stderr
    assert "cannot log the audit to MLflow" in run.stderr and "Traceback" not in run.stderr
    assert all((tmp_path / name).stat().st_size for name in ("r.html", "r.json", "j.xml"))
    assert "verdict:" in run.stdout


@pytest.mark.parametrize("where", ["missing folder", "a file as folder"])
def test_an_mlflow_store_that_cannot_be_made_is_exit_2_before_any_work(where: str, report_args: list[str],
                                                                       tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'm.db'}" if where == "missing folder" else f"sqlite:///{blocker}/m.db"
    run = run_cli([*report_args, "--mlflow", uri])
    assert run.code == 2 and "--mlflow" in run.stderr, run.stderr
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.json").exists()


# --- step summary and inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["the data", "the report", "a symlink to the data", "a hard link to the policy",
                                    "a directory", "a missing folder", "the json"])
def test_the_step_summary_is_never_an_input_or_an_output(target: str, report_args: list[str], fx: Fixture,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\n")
    data = tmp_path / "data.csv"
    data.write_bytes(fx.csv.read_bytes())
    paths = {"the data": data, "the report": tmp_path / "r.html", "the json": tmp_path / "r.json",
             "a symlink to the data": tmp_path / "link.csv", "a hard link to the policy": tmp_path / "hard.toml",
             "a directory": tmp_path, "a missing folder": tmp_path / "no" / "summary.md"}
    os.symlink(data, tmp_path / "link.csv")
    os.link(policy, tmp_path / "hard.toml")
    before = {p: p.read_bytes() for p in (data, policy)}
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(paths[target]))
    args = [a if a != str(fx.csv) else str(data) for a in report_args]
    run = run_cli([*args, "--policy", str(policy), "--markdown", str(tmp_path / "pr.md")])
    assert run.code == 2 and "GITHUB_STEP_SUMMARY" in run.stderr, run.stderr
    assert {p: p.read_bytes() for p in (data, policy)} == before
    assert not (tmp_path / "pr.md").exists()


@pytest.mark.parametrize("kind", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("output", ["--out", "--json", "--junit", "--markdown", "--model-card"])
def test_no_output_is_a_file_a_data_glob_matches(kind: str, output: str, report_args: list[str], fx: Fixture,
                                                 tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    fx.frame.iloc[:200].to_parquet(folder / "a.parquet")
    fx.frame.iloc[200:].to_parquet(folder / "b.parquet")
    victim = folder / "b.parquet"
    target = {"same path": victim, "symlink": tmp_path / "out.link", "hard link": tmp_path / "out.hard"}[kind]
    if kind == "symlink":
        os.symlink(victim, target)
    elif kind == "hard link":
        os.link(victim, target)
    before = victim.read_bytes()
    args = [a if a != str(fx.csv) else str(folder / "*.parquet") for a in report_args]
    if output in ("--out", "--json"):
        args[args.index(output) + 1] = str(target)
    else:
        args += [output, str(target)]
    run = run_cli(args)
    assert run.code == 2 and "never writes over its inputs" in run.stderr, run.stderr
    assert victim.read_bytes() == before


def test_bidi_controls_in_group_values_are_shown_not_obeyed(report_args: list[str], fx: Fixture,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "bidi.csv"
    fx.frame.assign(sex=fx.frame["sex"].astype(str) + "\u202e\u2066").to_csv(data, index=False)
    args = [a if a != str(fx.csv) else str(data) for a in report_args]
    run = run_cli([*args, "--markdown", str(tmp_path / "pr.md")])
    assert run.code in (0, 1), run.stderr
    html = (tmp_path / "r.html").read_text()
    for text in (html, run.stdout, (tmp_path / "pr.md").read_text()):
        assert not any(ch in BIDI_CONTROLS for ch in text)
    assert "⟨U+202E⟩⟨U+2066⟩" in html
    groups = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["data"]["groups"]
    assert any("\u202e" in g for g in groups)  # the JSON keeps the data's own value
