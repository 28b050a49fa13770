"""Plug-in analyses: the README's toy example, installed from a temporary package through the
``ticketaudit.analyses`` entry point, runs from ``--analyses``, on both engines, and appears in the
schema, the JSON and the HTML; ``ta.register_analysis`` does the same at run time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import ticketaudit as ta
from ticketaudit.analyses import registry
from ticketaudit.exceptions import InvalidInputError

from conftest import FEATURES, Fixture

README = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"  # the documented plug-in example
EDGES, NAMES = (0, 25, 45, 65), ("<25", "25-44", "45-64", "65+")


def _readme_files() -> dict[str, str]:
    """The files of the README's plug-in example: each fenced block after ``<!-- plugin: PATH -->``."""
    text = README.read_text(encoding="utf-8")
    return {path: body for path, body in re.findall(r"<!-- plugin: (\S+) -->\n```\w*\n(.*?)\n```", text, flags=re.S)}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory, fx: Fixture) -> dict[str, Any]:
    """The README example pip-installed (offline) into a site folder, and data with an ``age`` column."""
    root = tmp_path_factory.mktemp("plugin")
    source = root / "age-bands-plugin"
    files = _readme_files()
    assert set(files) == {"age_bands_plugin/__init__.py", "age_bands_plugin/age_bands.html.j2", "pyproject.toml"}
    for path, body in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(body + "\n", encoding="utf-8")
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), str(source)], check=True, capture_output=True)
    frame = fx.frame.copy()
    frame["age"] = np.random.default_rng(5).integers(17, 91, size=len(frame))
    csv = root / "data.csv"
    frame.to_csv(csv, index=False)
    parts = root / "parts"
    parts.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[chunk].to_parquet(parts / f"part-{i}.parquet", index=False, row_group_size=150)
    return {"site": site, "frame": frame, "csv": csv, "parts": parts, "root": root}


def _cli(plugin: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ticketaudit ...`` in a fresh process that sees the installed plug-in."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin["site"]), *sys.path])}
    return subprocess.run([sys.executable, "-m", "ticketaudit", *args], capture_output=True, text=True, env=env,
                          timeout=600, stdin=subprocess.DEVNULL)


def _report(fx: Fixture, data: Path, out: Path, *extra: str) -> list[str]:
    return ["report", "--dense", str(fx.dense_dir), "--ticket", str(fx.ticket_dir), "--data", str(data),
            "--target", "y", "--sensitive", "sex,race", "--features", ",".join(FEATURES), "--seed", "0",
            "--n-boot", "200", "--quiet", "--out", str(out / "r.html"), "--json", str(out / "r.json"), *extra]


def _expected_bands(fx: Fixture, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows and accuracy per band computed directly: both models on the rows, pandas per band."""
    x = torch.tensor(frame[FEATURES].to_numpy(dtype=np.float32))
    with torch.no_grad():
        right = {name: (model(x).argmax(1).numpy() == frame["y"].to_numpy()) for name, model in
                 (("dense", fx.dense), ("ticket", fx.ticket))}
    band = pd.cut(frame["age"], bins=[*EDGES, np.inf], right=False, labels=NAMES)
    out = []
    for name in NAMES:
        member = (band == name).to_numpy()
        rows = int(member.sum())
        out.append({"band": name, "rows": rows,
                    "dense_accuracy": float(right["dense"][member].mean()) if rows else None,
                    "ticket_accuracy": float(right["ticket"][member].mean()) if rows else None})
    return out


def test_the_readme_plugin_is_in_help_schema_json_and_html(plugin: dict[str, Any], fx: Fixture, tmp_path: Path) -> None:
    help_text = _cli(plugin, "report", "--help").stdout
    assert "age_bands" in " ".join(help_text.split())
    schema = json.loads(_cli(plugin, "schema").stdout)
    assert schema["properties"]["age_bands"] == {"type": "object", "required": ["bands"]}

    run = _cli(plugin, *_report(fx, plugin["csv"], tmp_path, "--analyses", "metrics,disagreement,age_bands"))
    assert run.returncode in (0, 1), run.stderr
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["settings"]["analyses"] == ["metrics", "disagreement", "age_bands"]
    bands = document["age_bands"]["bands"]
    expected = _expected_bands(fx, plugin["frame"])
    assert [b["rows"] for b in bands] == [b["rows"] for b in expected] and sum(b["rows"] for b in bands) == len(fx.frame)
    for got, want in zip(bands, expected):
        for key in ("dense_accuracy", "ticket_accuracy"):
            assert got[key] == pytest.approx(want[key], abs=1e-12)
    html = (tmp_path / "r.html").read_text()
    assert "Accuracy per age band" in html
    assert html.index("Accuracy per age band") > html.index('id="groups-heading"')
    for b in bands:
        assert f"<td>{b['band'].replace('<', '&lt;')}</td><td>{b['rows']}</td>" in html


def test_without_the_age_column_the_plugin_refuses_with_exit_2(plugin: dict[str, Any], fx: Fixture,
                                                               tmp_path: Path) -> None:
    run = _cli(plugin, *_report(fx, fx.csv, tmp_path, "--analyses", "metrics,age_bands"))
    assert run.returncode == 2, run.stderr
    assert "age_bands needs an 'age' column" in run.stderr and "Traceback" not in run.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_plugin_gives_the_same_json_on_ray_as_locally(plugin: dict[str, Any], fx: Fixture, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    documents = []
    for engine in ("local", "ray"):
        out = tmp_path / engine
        out.mkdir()
        run = _cli(plugin, *_report(fx, plugin["parts"], out, "--analyses", "metrics,disagreement,age_bands",
                                    "--engine", engine, *(["--num-workers", "2"] if engine == "ray" else [])))
        assert run.returncode in (0, 1), run.stderr
        documents.append((out / "r.json").read_bytes())
    assert documents[0] == documents[1]
    bands = json.loads(documents[1])["age_bands"]["bands"]
    assert [b["rows"] for b in bands] == [b["rows"] for b in _expected_bands(fx, plugin["frame"])]


def test_a_broken_plugin_is_refused_naming_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "broken_plugin").mkdir(parents=True)
    (site / "broken_plugin" / "__init__.py").write_text("raise ImportError('no module named numpyy')\n")
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ticketaudit.analyses]\nbroken = broken_plugin:Broken\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    run = subprocess.run([sys.executable, "-m", "ticketaudit", "schema"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 2, run.stderr
    assert "analysis plug-in 'broken' (broken_plugin:Broken) could not be imported" in run.stderr
    assert "Traceback" not in run.stderr


class _RowsPerGroup(ta.Analysis):
    """A run-time analysis that reads only the merged cells: rows per group (stratum)."""

    name = "rows_per_stratum"
    summary = "rows per stratum, from the cells"
    default = False

    def finish(self, state: Any, context: Any) -> Any:
        class Result:
            def __init__(self, counts: list[int]) -> None:
                self.counts = counts

            def to_dict(self) -> dict[str, Any]:
                return {"rows": self.counts}

        cells = context.cells
        counts = np.bincount(cells.stratum, weights=cells.counts, minlength=context.settings.groups.n_strata)
        return Result([int(v) for v in counts])


def test_register_analysis_at_run_time_reads_the_cells(fx: Fixture) -> None:
    try:
        ta.register_analysis(_RowsPerGroup)
        assert "rows_per_stratum" in registry.help_line()
        result = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, target="y", sensitive=["sex", "race"],
                          features=FEATURES, n_boot=200, analyses=["rows_per_stratum"])
        rows = result.to_dict()["rows_per_stratum"]["rows"]
        strata = fx.frame.groupby(["sex", "race"], sort=False).size()
        assert sorted(rows) == sorted(strata.tolist()) and sum(rows) == len(fx.frame)
        assert result.config.analyses == ("metrics", "rows_per_stratum")
        with pytest.raises(InvalidInputError, match="already registered"):
            ta.register_analysis(_RowsPerGroup)
    finally:
        registry._REGISTERED.pop("rows_per_stratum", None)
    assert "rows_per_stratum" not in registry.names()


@pytest.mark.parametrize(("thing", "message"), [
    (object(), "must be a ticketaudit.Analysis subclass or instance"),
    (type("Bad", (ta.Analysis,), {"name": "Not A Name"}), "lower-case identifier"),
    (type("Clash", (ta.Analysis,), {"name": "metrics"}), "already registered"),
])
def test_register_analysis_refuses_bad_plugins(thing: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ta.register_analysis(thing, replace=True)
    assert registry.get("metrics").__class__.__module__ == "ticketaudit.analyses.builtin.metrics"
