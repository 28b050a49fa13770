"""Progress in CI logs: plain lines when stderr is not a terminal, at most every 10 s per stage and at each
stage's end; --quiet silences them (issue: defaults that finish, item 4)."""

from __future__ import annotations

import re

from helpers import run_cli

from ticketaudit.progress import PlainProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_every_ten_seconds_and_at_each_stage_end() -> None:
    clock, lines = Clock(), []
    progress = PlainProgress(lines.append, clock=clock)
    progress("Running both models", 0, 1000)
    for done in range(1, 1001):  # one row every 0.1 s: 100 s in all
        clock.now += 0.1
        progress("Running both models", done, 1000)
    progress("Measuring groups", 0, 1)
    clock.now += 3
    progress("Done", 1, 1)
    counts = [line for line in lines if "Running both models: " in line and "/ 1,000" in line]
    assert 9 <= len(counts) <= 11  # one per 10 s, and the 100% line
    assert "1,000 / 1,000 (100%)" in counts[-1]
    middle = next(line for line in counts if "(50%)" in line or "(51%)" in line or "(49%)" in line)
    assert re.search(r"about (4\d|5\d) s left", middle), middle
    assert any("Running both models: done in 1 min 40 s" in line for line in lines)
    assert any("Measuring groups: done in 3 s" in line for line in lines)
    assert lines[-1].endswith("finished")


def test_the_cli_prints_progress_to_a_log_unless_quiet(report_args: list[str]) -> None:
    quiet = run_cli(report_args)  # the fixture's arguments say --quiet
    assert "[ticketaudit" not in quiet.stderr
    loud = run_cli([a for a in report_args if a != "--quiet"])
    assert loud.code in (0, 1), loud.stderr
    for stage in ("Loading models", "Running both models", "Measuring groups and bootstrapping"):
        assert f"] {stage}" in loud.stderr
    assert re.search(r"Running both models: [\d,]+ / [\d,]+ \(100%\)", loud.stderr)
    assert "finished" in loud.stderr.splitlines()[-1]
