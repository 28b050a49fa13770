"""The CLI contract: exit codes, byte-identical JSON, bad input -> exit 2 with one clear message."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pandas as pd
import numpy as np
import pytest
import torch
from conftest import FEATURES, Fixture
from helpers import run_cli
from safetensors.torch import save_file

from ticketaudit.models import MLP
from ticketaudit.report.schema import report_schema


def test_report_runs_and_writes_valid_outputs(report_args: list[str], tmp_path: Path) -> None:
    """800 rows cannot rule out a 2-point harm in 40-row intersections: the verdict says so, exit 0."""
    run = run_cli(report_args)
    assert run.code == 0, run.stderr
    assert "verdict: INCONCLUSIVE" in run.stdout
    assert run.stdout.index("INCONCLUSIVE group_excess_drop") < run.stdout.index("report:")
    document = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(document, report_schema())
    assert "created" not in document
    html = (tmp_path / "r.html").read_text()
    assert "<script" not in html and "Content-Security-Policy" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]


def test_failing_policy_exits_1_and_names_the_check(report_args: list[str], tmp_path: Path, fx: Fixture) -> None:
    policy = tmp_path / "strict.toml"
    policy.write_text("[policy]\nmax_overall_accuracy_drop = 0.0\nconfidence = 0.9\n")
    harsh_mask = tmp_path / "harsh.safetensors"
    save_file({k: (torch.rand_like(v.float(), generator=torch.Generator().manual_seed(1)) < 0.1).to(torch.uint8)
               for k, v in fx.mask.items()}, str(harsh_mask))
    args = [a for a in report_args]
    i = args.index("--ticket")
    args[i:i + 2] = ["--mask", str(harsh_mask)]
    run = run_cli([*args, "--policy", str(policy)])
    assert run.code == 1, run.stdout + run.stderr
    assert "verdict: FAIL" in run.stdout and "overall_accuracy_drop" in run.stdout
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["verdict"] == "fail"
    assert any(not c["passed"] and c["id"] == "overall_accuracy_drop" for c in document["checks"])


def test_json_is_byte_identical_across_runs_and_batch_sizes(report_args: list[str], tmp_path: Path) -> None:
    outputs = []
    for batch in ("3", "64", "4096"):
        json_path = tmp_path / f"b{batch}.json"
        args = [*report_args[:-4], "--out", str(tmp_path / f"b{batch}.html"), "--json", str(json_path),
                "--batch-size", batch, "--attribution-rows", "300"]
        assert run_cli(args).code == 0
        outputs.append(json_path.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_seed_changes_bootstrap_only(report_args: list[str], tmp_path: Path) -> None:
    assert run_cli(report_args).code == 0
    first = json.loads((tmp_path / "r.json").read_text())
    args = list(report_args)
    args[args.index("--seed") + 1] = "5"
    assert run_cli(args).code == 0
    second = json.loads((tmp_path / "r.json").read_text())
    assert first["subgroups"][0]["metrics"]["accuracy"] == second["subgroups"][0]["metrics"]["accuracy"]
    assert first["subgroups"][0]["metrics"]["ece"]["ci"] != second["subgroups"][0]["metrics"]["ece"]["ci"]


def test_without_seed_json_records_creation_time(report_args: list[str], tmp_path: Path) -> None:
    args = list(report_args)
    del args[args.index("--seed"):args.index("--seed") + 2]
    assert run_cli(args).code == 0
    assert "created" in json.loads((tmp_path / "r.json").read_text())


def test_schema_command_prints_the_schema() -> None:
    run = run_cli(["schema"])
    assert run.code == 0 and json.loads(run.stdout) == json.loads(json.dumps(report_schema()))


def test_stdin_data(report_args: list[str], fx: Fixture) -> None:
    args = list(report_args)
    args[args.index("--data") + 1] = "-"
    assert run_cli(args, stdin=fx.csv.read_text()).code == 0


def test_real_subprocess_python_m(report_args: list[str], tmp_path: Path, fx: Fixture) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-m", "ticketaudit", *report_args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verdict: INCONCLUSIVE")


def test_a_reader_that_stops_reading_is_not_a_bug(report_args: list[str], tmp_path: Path) -> None:
    """``ticketaudit report ... | head -1``: the reader closes the pipe before the summary; the run keeps
    its exit code and outputs, with no 'internal error'."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    process = subprocess.Popen([sys.executable, "-m", "ticketaudit", *report_args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert process.stdout is not None
    process.stdout.close()  # gone before the audit prints anything
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    assert b"internal error" not in err and b"BrokenPipe" not in err, err.decode()
    assert (tmp_path / "r.json").is_file() and (tmp_path / "r.html").is_file()


def test_inconclusive_fails_when_the_policy_says_so(report_args: list[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[policy]\non_inconclusive = "fail"\n')
    run = run_cli([*report_args, "--policy", str(policy)])
    assert run.code == 1, run.stdout + run.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["verdict"] == "inconclusive"
    assert all(c["passed"] for c in document["checks"])  # compatibility: passed is false only for fail
    html = (tmp_path / "r.html").read_text()
    assert "INCONCLUSIVE" in html and "The policy says to fail on this" in html and 'class="verdict pass"' not in html


# --- bad input: every case is exit 2, one message naming the problem, no traceback, no output file ---

Case = Callable[[list[str], Path, Fixture], list[str]]


def _set(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    if option in out:
        out[out.index(option) + 1] = value
    else:
        out += [option, value]
    return out


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _table(tmp: Path, fx: Fixture, change: Callable, name: str = "bad.csv") -> str:
    frame = fx.frame.copy()
    frame = change(frame)
    frame.to_csv(tmp / name, index=False)
    return str(tmp / name)


def _truncated_safetensors(tmp: Path, fx: Fixture) -> str:
    save_file(fx.dense.state_dict(), str(tmp / "full.safetensors"))
    return _write(tmp / "trunc.safetensors", (tmp / "full.safetensors").read_bytes()[:100])


def _other_architecture(tmp: Path, fx: Fixture) -> str:
    torch.save(MLP(in_features=4, hidden=[16], out_features=2).state_dict(), tmp / "other.pt")
    return str(tmp / "other.pt")


def _mask_file(tmp: Path, fx: Fixture, change: Callable) -> str:
    tensors = change({k: v.float() for k, v in fx.mask.items()})
    save_file(tensors, str(tmp / "m.safetensors"))
    return str(tmp / "m.safetensors")


def _ticket_to_mask(args: list[str], mask: str) -> list[str]:
    out = list(args)
    i = out.index("--ticket")
    out[i:i + 2] = ["--mask", mask]
    return out


BAD_INPUTS: dict[str, tuple[Case, str]] = {
    "dense missing": (lambda a, t, f: _set(a, "--dense", str(t / "nope")), "does not exist"),
    "garbage .pt": (lambda a, t, f: _set(a, "--dense", _write(t / "g.pt", b"garbage" * 20)), "not a readable torch file"),
    "truncated safetensors": (lambda a, t, f: _set(a, "--ticket", _truncated_safetensors(t, f)), "truncated or corrupt"),
    "unknown model extension": (lambda a, t, f: _set(a, "--dense", _write(t / "m.onnx", b"x")), "unknown extension"),
    "pickle without flag": (lambda a, t, f: (torch.save(f.dense, t / "p.pt"), _set(a, "--ticket", str(t / "p.pt")))[1],
                            "--allow-pickle"),
    "state_dict without factory": (lambda a, t, f: (torch.save(f.dense.state_dict(), t / "sd.pt"),
                                                    _set(a, "--dense", str(t / "sd.pt")))[1], "--factory"),
    "factory module missing": (lambda a, t, f: (torch.save(f.dense.state_dict(), t / "sd.pt"),
                                                _set(_set(a, "--dense", str(t / "sd.pt")), "--factory", "no_such_mod:build"))[1],
                               "cannot be imported"),
    "factory function missing": (lambda a, t, f: (torch.save(f.dense.state_dict(), t / "sd.pt"),
                                                  _set(_set(a, "--dense", str(t / "sd.pt")), "--factory", "conftest:nope"))[1],
                                 "is not defined"),
    "state_dict of another architecture": (lambda a, t, f: _set(a, "--ticket", _other_architecture(t, f)),
                                           "does not match the architecture"),
    "mask not binary": (lambda a, t, f: _ticket_to_mask(a, _mask_file(t, f, lambda m: {k: v * 0.5 for k, v in m.items()})),
                        "not binary"),
    "mask wrong names": (lambda a, t, f: _ticket_to_mask(a, _mask_file(t, f, lambda m: {"x." + k: v for k, v in m.items()})),
                         "not a prunable weight"),
    "mask for a subset of layers": (lambda a, t, f: _ticket_to_mask(a, _mask_file(t, f, lambda m: dict(list(m.items())[:1]))),
                                    "has no entry for"),
    "mask and ticket both": (lambda a, t, f: [*a, "--mask", _mask_file(t, f, lambda m: m)], "not both"),
    "data missing": (lambda a, t, f: _set(a, "--data", str(t / "none.csv")), "does not exist"),
    "data empty": (lambda a, t, f: _set(a, "--data", _write(t / "e.csv", b"")), "is empty"),
    "header-only csv": (lambda a, t, f: _set(a, "--data", _write(t / "h.csv", b"x1,x2,x3,x4,sex,race,y\n")), "no rows"),
    "non-UTF-8 csv": (lambda a, t, f: _set(a, "--data", _write(t / "l.csv", "x1,sex\n1,caf\xe9\n".encode("latin-1"))),
                      "not UTF-8"),
    "unknown data extension": (lambda a, t, f: _set(a, "--data", _write(t / "d.xlsx", b"x")), "unknown extension"),
    "duplicate column names": (lambda a, t, f: _set(a, "--data", _write(t / "dup.csv", b"x1,x1,y\n1,2,0\n")), "twice"),
    "corrupt parquet": (lambda a, t, f: _set(a, "--data", _write(t / "d.parquet", b"PAR1garbage")), "Parquet"),
    "target missing": (lambda a, t, f: _set(a, "--target", "income"), "target column 'income' is not in the data"),
    "feature missing": (lambda a, t, f: _set(a, "--features", "x1,x2,x3,x9"), "feature column 'x9'"),
    "sensitive missing": (lambda a, t, f: _set(a, "--sensitive", "sex,age"), "sensitive column 'age'"),
    "target one class": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(y=1))), "single class"),
    "label the model cannot output": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(y=d.y * 2))),
                                      "not a label the model can output"),
    "text labels without label list": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(y=d.y.map({0: "no", 1: "yes"})))),
                                       "no label list"),
    "NaN in features": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(x2=d.x2.where(d.index != 3)))),
                        "feature column 'x2' has a missing, NaN or infinite value in 1 row (3)"),
    "inf in features": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(x3=d.x3.where(d.index != 5, np.inf)))),
                        "feature column 'x3'"),
    "non-numeric feature": (lambda a, t, f: _set(a, "--features", "x1,x2,x3,sex"), "not numeric"),
    "wrong feature count": (lambda a, t, f: _set(a, "--features", "x1,x2,x3"), "cannot take the 3 input features"),
    "constant sensitive column": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(sex="F"))), "single value"),
    "all-missing sensitive column": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.assign(sex=None))),
                                     "only missing values"),
    "sensitive column with 10,000 values": (lambda a, t, f: _set(_set(a, "--data", _table(t, f, lambda d: d.assign(
        race=[f"id{i}" for i in range(len(d))]))), "--sensitive", "race"), "distinct values"),
    "output directory missing": (lambda a, t, f: _set(a, "--out", str(t / "missing" / "r.html")), "does not exist"),
    "policy unknown key": (lambda a, t, f: _set(a, "--policy", _write(t / "p.toml", b"[policy]\nmax_drop = 1\n")),
                           "policy key 'max_drop' is unknown"),
    "policy malformed": (lambda a, t, f: _set(a, "--policy", _write(t / "p.toml", b"[policy\nx=")), "not valid TOML"),
    "policy bad value": (lambda a, t, f: _set(a, "--policy", _write(t / "p.toml", b"[policy]\nconfidence = 2\n")),
                         "policy.confidence must be in"),
    "negative n-boot": (lambda a, t, f: _set(a, "--n-boot", "-5"), "n_boot must be an integer"),
    "absurd batch size": (lambda a, t, f: _set(a, "--batch-size", "0"), "batch_size must be an integer"),
    "absurd n-boot": (lambda a, t, f: _set(a, "--n-boot", "1000000000"), "n_boot must be an integer"),
    "confidence out of range": (lambda a, t, f: _set(a, "--confidence", "1.5"), "policy.confidence must be in"),
    "split without equals sign": (lambda a, t, f: _set(a, "--split", "sex"), "--split must look like COL=VALUE"),
    "target also sensitive": (lambda a, t, f: _set(a, "--sensitive", "y"), "cannot also be a sensitive column"),
    "out and json the same file": (lambda a, t, f: _set(a, "--json", a[a.index("--out") + 1]), "name the same file"),
    "cuda without GPU": (lambda a, t, f: _set(a, "--device", "cuda"), "no CUDA GPU"),
    "unknown analysis": (lambda a, t, f: _set(a, "--analyses", "metrics,vibes"), "analysis 'vibes' is unknown"),
    "split without match": (lambda a, t, f: _set(a, "--split", "sex=X"), "no row has"),
    "unknown attribution method": (lambda a, t, f: _set(a, "--attribution-method", "shapley-magic"),
                                   "attribution method 'shapley-magic' is unknown"),
    "attribution rows more than data": (lambda a, t, f: _set(a, "--attribution-rows", "100000"), "more than the 800 rows"),
    "proxy not in the data": (lambda a, t, f: _set(a, "--proxies", "zipcode"), "proxy column 'zipcode' is not a model input"),
    "bad attribution target": (lambda a, t, f: _set(a, "--attribution-target", "truth"), "--attribution-target must be"),
    "text column on a tabular model": (lambda a, t, f: _set(a, "--text", "x1"), "--text needs a Hugging Face model"),
    "attention on a model without attention": (lambda a, t, f: _set(a, "--analyses", "metrics,attention"),
                                                "--analyses attention needs a model with attention layers"),
    "entropy-shift tolerance out of range": (lambda a, t, f: _set(a, "--policy", _write(
        t / "p.toml", b"[policy]\nmax_group_entropy_shift = -0.1\n")), "policy.max_group_entropy_shift must be in"),
    # issue 13: unusual but legal input gets a clear refusal, never exit 3 or a quietly wrong report
    "unknown device": (lambda a, t, f: _set(a, "--device", "tpu"), "device must be one of cpu, cuda, mps; got 'tpu'"),
    "device in upper case": (lambda a, t, f: _set(a, "--device", "CPU"), "(devices are lower case)"),
    "feature listed twice": (lambda a, t, f: _set(a, "--features", "x1,x1,x2,x3"), "--features names 'x1' twice"),
    "sensitive listed twice": (lambda a, t, f: _set(a, "--sensitive", "sex,sex"), "--sensitive names 'sex' twice"),
    "analysis listed twice": (lambda a, t, f: _set(a, "--analyses", "metrics,metrics"), "--analyses names 'metrics' twice"),
    "semicolon-delimited csv": (lambda a, t, f: _set(a, "--data", _write(t / "semi.csv", f.frame.to_csv(
        index=False, sep=";").encode())), "seem to be separated by semicolons"),
    "column with a leading space": (lambda a, t, f: _set(a, "--data", _table(t, f, lambda d: d.rename(
        columns={"y": " y"}))), "target column 'y' is not in the data. Available columns: 'x1', 'x2', 'x3', 'x4', "
        "'sex', 'race', ' y'. Did you mean ' y'?"),
    "policy number given as a string": (lambda a, t, f: _set(a, "--policy", _write(
        t / "p.toml", b'[policy]\nmax_gap_widening = "0.02"\n')), "got a string ('0.02')"),
    "too many unseen values": (lambda a, t, f: _set(a, "--max-unseen-share", "1.5"), "--max-unseen-share"),
    "ray flags without ray": (lambda a, t, f: _set(a, "--gpus-per-worker", "1"), "belong to engine='ray'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input(case: str, report_args: list[str], tmp_path: Path, fx: Fixture, monkeypatch) -> None:
    if case == "cuda without GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    make, message = BAD_INPUTS[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    monkeypatch.chdir(Path(__file__).parent)
    args = make(report_args, inputs, fx)
    run = run_cli(args)
    assert run.code == 2, (run.code, run.stdout, run.stderr)
    assert message in " ".join(run.stderr.split()), run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "inputs"]


def test_sensitive_column_named_like_an_internal_column(report_args: list[str], tmp_path: Path, fx: Fixture) -> None:
    frame = fx.frame.rename(columns={"sex": "__rows__", "race": "level_0"})
    frame.to_csv(tmp_path / "d.csv", index=False)
    run = run_cli(_set(_set(report_args, "--data", str(tmp_path / "d.csv")), "--sensitive", "__rows__,level_0"))
    assert run.code == 0, run.stderr
    groups = json.loads((tmp_path / "r.json").read_text())["data"]["groups"]
    assert "__rows__=F" in groups and "__rows__=M|level_0=C" in groups


def test_data_from_a_pipe_is_read_not_called_missing(report_args: list[str], tmp_path: Path, fx: Fixture) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(fx.csv.read_bytes()))
    writer.start()
    run = run_cli(_set(report_args, "--data", str(fifo)))
    writer.join()
    assert run.code == 0, run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["data"]["rows"] == len(fx.frame)


@pytest.mark.parametrize(("argument", "value", "message"), [
    ("policy", {"max_gap_widening": 0.05}, "policy must be a ticketaudit.Policy (for a dict d: ta.Policy.from_mapping(d))"),
    ("data", 42, "data must be a pandas DataFrame or a path (str or pathlib.Path); got 42"),
    ("sensitive", 3, "sensitive must be a column name or a list of column names; got 3"),
    ("features", ["x1", 2], "--features must be a comma-separated string or a list of strings"),
    ("seed", "0", "seed must be an integer or None; got a string ('0')"),
    ("device", "tpu", "device must be one of cpu, cuda, mps"),
    ("allow_pickle", "yes", "allow_pickle must be True or False"),
    ("train_data", "x.csv", "train_data (--train-data) belongs to alternatives"),
])
def test_api_wrong_arguments_are_invalid_input_errors(fx: Fixture, argument: str, value: object, message: str) -> None:
    import ticketaudit as ta

    arguments = {"dense": fx.dense_dir, "ticket": fx.ticket_dir, "data": fx.frame, "target": "y",
                 "sensitive": ["sex", "race"], "features": FEATURES, "n_boot": 100, argument: value}
    with pytest.raises(ta.InvalidInputError) as raised:
        ta.audit(**arguments)
    assert isinstance(raised.value, ValueError)
    assert message in str(raised.value)


def test_read_only_output_directory(report_args: list[str], tmp_path: Path) -> None:
    """A permission-locked directory (as a normal user) or /proc (read-only even for root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    target = Path("/proc") if os.geteuid() == 0 else locked
    run = run_cli(_set(report_args, "--out", str(target / "r.html")))
    assert run.code == 2 and "not writable" in run.stderr, run.stderr
    assert not (tmp_path / "r.json").exists()


def test_usage_error_is_exit_2() -> None:
    run = run_cli(["report", "--dense"])
    assert run.code == 2


def test_demo_rejects_an_unknown_model(tmp_path: Path) -> None:
    run = run_cli(["demo", "--model", "lstm", "--out", str(tmp_path / "d"), "--quiet"])
    assert run.code == 2 and "--model must be" in run.stderr and not (tmp_path / "d").exists()


def test_internal_error_is_exit_3_without_partial_files(report_args: list[str], tmp_path: Path, monkeypatch) -> None:
    audit_module = importlib.import_module("ticketaudit.analyses.performance")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(audit_module, "performance_from_cells", broken)
    run = run_cli(report_args)
    assert run.code == 3 and "internal error" in run.stderr and "bug" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.iterdir())


def test_interrupt_leaves_no_partial_file(report_args: list[str], tmp_path: Path, monkeypatch) -> None:
    import ticketaudit.outputs as outputs_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs_module, "report_dict", interrupted)
    run = run_cli(report_args)
    assert run.code == 130 and "nothing was written" in run.stderr
    assert not list(tmp_path.iterdir())


BAD_ROWS = {  # name: (column, rows, value written in place, words of the message)
    "overflowing numbers, the first row among them": ("x2", [0, 4, 9, 13, 20, 31, 47, 58, 77, 90], "1e5000",
                                                      "missing, NaN or infinite value in 10 rows (first: 0, 4, 9, 13, 20, ...)"),
    "infinities after the first row": ("x3", [11, 12, 500], "-inf", "in 3 rows (first: 11, 12, 500)"),
    "missing targets": ("y", [3, 8, 200, 201, 350], "", "target column 'y' is missing in 5 rows (first: 3, 8, 200, 201, 350)"),
    "one missing target in the first row": ("y", [0], "", "target column 'y' is missing in 1 row (0)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
@pytest.mark.parametrize("layout", ["csv", "parquet-fragments"])
def test_bad_values_are_counted_over_every_row(case: str, layout: str, fx: Fixture, report_args: list[str],
                                               tmp_path: Path) -> None:
    """The message gives the true count and the first row numbers (of the audited rows, across files), whether the
    first row, one chunk or a later file shows the problem first."""
    column, rows, value, words = BAD_ROWS[case]
    frame = fx.frame.copy().astype({column: object})
    frame.loc[rows, column] = value
    if layout == "csv":
        data = tmp_path / "bad.csv"
        frame.to_csv(data, index=False)
    else:
        data = tmp_path / "parts"
        data.mkdir()
        typed = frame.assign(**{column: pd.to_numeric(frame[column].replace("", None), errors="coerce")})
        for part, start in enumerate(range(0, len(typed), 150)):  # bad rows land in several files
            typed.iloc[start:start + 150].to_parquet(data / f"part-{part:03d}.parquet", index=False)
    run = run_cli(_set(report_args, "--data", str(data)))
    assert run.code == 2, run.stdout + run.stderr
    assert words in " ".join(run.stderr.split()), run.stderr
    assert not (tmp_path / "r.html").exists()
