"""Outputs never overwrite inputs, appear together or not at all, and fail with exit 2 (issue: no quietly
wrong report, "Files")."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_cli

import ticketaudit._io as io_module


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("output", ["--out", "--json"])
@pytest.mark.parametrize("source", ["--data", "--dense", "--policy", "--mask", "inside --dense"])
def test_an_output_that_is_an_input_is_refused_before_any_work(report_args, tmp_path, fx, output, source) -> None:
    args = list(report_args)
    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\nmax_gap_widening = 0.05\n")
    mask = fx.root / "mask.safetensors"
    if not mask.exists():
        from safetensors.torch import save_file

        save_file({k: v.to(dtype=__import__("torch").uint8) for k, v in fx.mask.items()}, str(mask))
    if source == "--policy":
        args += ["--policy", str(policy)]
    if source == "--mask":
        i = args.index("--ticket")
        del args[i:i + 2]
        args += ["--mask", str(mask)]
    target = {"--data": _option(args, "--data"), "--dense": _option(args, "--dense"), "--policy": str(policy),
              "--mask": str(mask), "inside --dense": str(Path(_option(args, "--dense")) / "report.html")}[source]
    before = {p: p.read_bytes() for p in Path(fx.root).rglob("*") if p.is_file()}
    args[args.index(output) + 1] = target
    run = run_cli(args)
    assert run.code == 2, run.stderr
    assert "never writes over its inputs" in run.stderr and source.split()[-1] in run.stderr
    assert {p: p.read_bytes() for p in Path(fx.root).rglob("*") if p.is_file()} == before


def test_a_symlinked_output_is_written_through(report_args, tmp_path) -> None:
    real = tmp_path / "real.html"
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    args = list(report_args)
    args[args.index("--out") + 1] = str(link)
    assert run_cli(args).code == 0
    assert link.is_symlink() and real.read_text().startswith("<!DOCTYPE html>")


def test_a_device_output_is_written_through(report_args) -> None:
    args = list(report_args)
    args[args.index("--json") + 1] = os.devnull
    assert run_cli(args).code == 0
    assert Path(os.devnull).is_char_device()


def test_a_full_disk_is_exit_2_and_leaves_nothing(report_args, tmp_path, monkeypatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_module.os, "fsync", full)
    run = run_cli(report_args)
    assert run.code == 2 and "the disk is full" in run.stderr
    assert not list(tmp_path.iterdir())


def test_a_failed_rename_restores_every_earlier_output(report_args, tmp_path, monkeypatch) -> None:
    old = {tmp_path / "r.html": b"old html", tmp_path / "r.json": b"old json"}
    for path, payload in old.items():
        path.write_bytes(payload)
    real_replace = os.replace
    calls = []

    def second_fails(src, dst):  # type: ignore[no-untyped-def]
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", second_fails)
    run = run_cli(report_args)
    assert run.code == 2, run.stderr
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == old  # no temp files, old contents back


def test_a_signal_during_the_renames_arrives_after_all_outputs_are_in_place(report_args, tmp_path,
                                                                          monkeypatch) -> None:
    real_replace = os.replace

    def replace_then_signal(src, dst):  # type: ignore[no-untyped-def]
        if str(dst).endswith((".html", ".json")) and not str(dst).endswith(".old"):
            os.kill(os.getpid(), signal.SIGTERM)  # held until both files are in place
        return real_replace(src, dst)

    monkeypatch.setattr(io_module.os, "replace", replace_then_signal)
    run = run_cli(report_args)
    assert run.code == 143
    assert "interrupted after the outputs were written" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]


@pytest.mark.slow
def test_sigterm_and_ctrl_c_at_any_moment_leave_all_or_nothing(report_args, tmp_path) -> None:
    """A real process, signalled at spread-out moments: never a temp file, never a new HTML beside an old
    JSON, and the message says which."""
    args = [a for a in report_args if a != "--quiet"] + ["--quiet"]
    html, js = Path(_option(args, "--out")), Path(_option(args, "--json"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    baseline = subprocess.run([sys.executable, "-m", "ticketaudit", *args], env=env, capture_output=True, text=True)
    duration = time.monotonic() - start
    assert baseline.returncode == 0, baseline.stderr
    for i, fraction in enumerate([0.2, 0.5, 0.8, 0.9, 0.95, 0.98, 1.0, 1.02]):
        html.write_text("old html")
        js.write_text("old json")
        process = subprocess.Popen([sys.executable, "-m", "ticketaudit", *args], env=env, stderr=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, text=True)
        time.sleep(duration * fraction)
        process.send_signal(signal.SIGTERM if i % 2 else signal.SIGINT)
        _, err = process.communicate(timeout=120)
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["r.html", "r.json"], (fraction, files)  # no temp file left behind
        html_new, json_new = html.read_text() != "old html", js.read_text() != "old json"
        assert html_new == json_new, (fraction, html_new, json_new)  # never a new HTML beside an old JSON
        if process.returncode in (130, 143):
            assert ("nothing was written" in err) == (not html_new), err
        elif process.returncode in (-signal.SIGINT, -signal.SIGTERM):
            assert not html_new  # signalled while Python was still starting, before ticketaudit ran
        else:
            assert process.returncode == 0 and html_new, (process.returncode, err)
