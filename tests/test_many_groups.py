"""Many groups (issue: defaults that finish, item 5): statistics linear in the groups, reports that list the groups
that matter and count the rest, every group one option away (``--groups-table``, ``--all-groups``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

import ticketaudit as ta
from ticketaudit import listing
from ticketaudit.report.render import report_dict
from ticketaudit.workflow.reports import counts

from conftest import FEATURES, Fixture, make_table


def _many(values: int, rows: int = 6000) -> pd.DataFrame:
    frame = make_table(rows, seed=3)
    rng = np.random.default_rng(0)
    return frame.assign(a=[f"a{v}" for v in rng.integers(0, values, rows)],
                        b=[f"b{v}" for v in rng.integers(0, values, rows)])


@pytest.fixture(scope="module")
def audited(fx: Fixture) -> ta.AuditResult:
    return ta.audit(dense=fx.dense, ticket=fx.ticket, data=_many(15), target="y", sensitive=["a", "b"],
                    features=FEATURES, analyses="metrics,disagreement", seed=0, n_boot=200)


def test_a_report_of_many_groups_lists_those_that_matter_and_counts_all(audited: ta.AuditResult) -> None:
    full, cut = report_dict(audited, all_groups=True), report_dict(audited)
    assert len(full["subgroups"]) == 15 + 15 + 225 > listing.MAX_LISTED_GROUPS
    auditable = [g for g in full["subgroups"] if not g["insufficient"]]
    assert len(cut["subgroups"]) == min(listing.MAX_LISTED_GROUPS, len(auditable)) and len(auditable) > 60
    assert cut["groups_listed"]["total"] == len(full["subgroups"])
    assert sum(cut["groups_listed"]["by_status"].values()) == len(full["subgroups"])
    assert cut["verdict"] == full["verdict"]
    assert counts(cut) == counts(full) and cut["checks_summary"]["total"] == len(full["checks"])
    listed = {g["group"] for g in cut["subgroups"]}
    assert all(c["group"] in listed or c["group"] is None or c["group"] in ("a", "b", "a|b")
               for c in cut["checks"] if c["status"] != "fail")
    assert {c["id"] for c in full["checks"] if c["status"] == "fail"} <= {c["id"] for c in cut["checks"]}
    assert not any(g["insufficient"] for g in cut["subgroups"])  # too-small groups are counted only
    assert {g["group"] for g in cut["disagreement"]["groups"]} <= listed
    assert len(cut["data"]["groups"]) <= listing.MAX_LISTED_GROUPS and cut["data"]["groups_total"] == 255


def test_the_listed_groups_are_the_worst_and_the_extremes(audited: ta.AuditResult) -> None:
    full = report_dict(audited, all_groups=True)
    chosen = listing.listed_groups(full)
    inconclusive = sorted((c for c in full["checks"] if c["status"] == "inconclusive" and c["group"] in
                           {g["group"] for g in full["subgroups"]}), key=lambda c: -(c["pass_bound"] - c["tolerance"]))
    assert inconclusive[0]["group"] in chosen  # the group whose harm could be largest
    auditable = sorted((g for g in full["subgroups"] if not g["insufficient"]), key=lambda g: -g["n"])
    assert auditable[0]["group"] in chosen and auditable[-1]["group"] in chosen
    assert listing.listed_groups(full) == chosen  # deterministic


def test_groups_table_holds_every_group_and_all_groups_lists_them(fx: Fixture, tmp_path: Path) -> None:
    data = tmp_path / "many.csv"
    _many(15).to_csv(data, index=False)
    args = ["report", "--dense", str(fx.dense_dir), "--ticket", str(fx.ticket_dir), "--data", str(data), "--target",
            "y", "--sensitive", "a,b", "--features", ",".join(FEATURES), "--seed", "0", "--n-boot", "200",
            "--analyses", "metrics", "--quiet", "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"),
            "--groups-table", str(tmp_path / "groups.parquet")]
    run = run_cli(args)
    assert run.code in (0, 1), run.stderr
    table = pd.read_parquet(tmp_path / "groups.parquet")
    document = json.loads((tmp_path / "r.json").read_text())
    assert len(table) == document["groups_listed"]["total"] == 255
    listed = {g["group"]: g for g in document["subgroups"]}
    for _, row in table[table["group"].isin(listed)].iterrows():
        accuracy = listed[row["group"]]["metrics"]["accuracy"]
        assert row["accuracy_delta"] == pytest.approx(accuracy["delta"]) and row["n"] == listed[row["group"]]["n"]
    assert "255 groups" in (tmp_path / "r.html").read_text()
    everything = run_cli([a for a in args if a != "--groups-table" and a != str(tmp_path / "groups.parquet")]
                         + ["--all-groups", "--json", str(tmp_path / "all.json")])
    assert everything.code in (0, 1)
    assert len(json.loads((tmp_path / "all.json").read_text())["subgroups"]) == 255


@pytest.mark.slow
def test_ten_thousand_groups_stay_small_and_quick(fx: Fixture, tmp_path: Path) -> None:
    """100 x 100 values: 10,200 groups on 200,000 rows. JSON < 1 MB and HTML < 2 MB (the bench times 1M rows)."""
    data = tmp_path / "many.parquet"
    _many(100, rows=200_000).to_parquet(data)
    run = run_cli(["report", "--dense", str(fx.dense_dir), "--ticket", str(fx.ticket_dir), "--data", str(data),
                   "--target", "y", "--sensitive", "a,b", "--features", ",".join(FEATURES), "--seed", "0",
                   "--analyses", "metrics", "--quiet", "--out", str(tmp_path / "r.html"), "--json",
                   str(tmp_path / "r.json")])
    assert run.code in (0, 1), run.stderr
    assert (tmp_path / "r.json").stat().st_size < 1_000_000 and (tmp_path / "r.html").stat().st_size < 2_000_000
    assert len(run.stdout.splitlines()) < 60
