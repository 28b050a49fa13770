"""Sharded audits: mergeable accumulators, Parquet datasets, and --engine ray with the same result as
one process (1, 2 and 3 workers), plus the bad-input cases of the Ray engine."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FEATURES, Fixture, make_table
from helpers import run_cli

import ticketaudit as ta
from ticketaudit.analyses.attributions import ProxyMoments, RowSample, row_keys, sample_sizes
from ticketaudit.analyses.cells import CellAccumulator, build_cells
from ticketaudit.analyses.disagreement import FlipExamples
from ticketaudit.models.ft_transformer import FTTransformer
from ticketaudit.pruning.imp import global_magnitude_mask

CUTS = [0, 700, 1900, 2000, 4100, 5000]
"""Uneven files; each also has its own row-group size, so fragments never align with bootstrap blocks."""


def _splits(n: int, rng: np.random.Generator, pieces: int) -> list[tuple[int, int]]:
    cuts = np.sort(np.concatenate([[0, n], rng.choice(np.arange(1, n), size=pieces - 1, replace=False)]))
    return list(zip(cuts[:-1], cuts[1:]))


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    proba = [rng.dirichlet(np.ones(3), size=n).astype(np.float32).astype(np.float64) for _ in range(2)]
    return labels, proba[0], proba[1], rng.integers(0, 5, size=n)


@pytest.mark.parametrize("seed", range(5))
def test_cells_merge_exactly_whatever_the_split(seed: int) -> None:
    labels, dense, ticket, strata = _rows(3000, seed)
    whole = build_cells(labels=labels, proba_dense=dense, proba_ticket=ticket, stratum=strata, n_strata=5, bins=10)
    shards = []
    for start, end in _splits(3000, np.random.default_rng(seed), 7):
        shard = CellAccumulator(n_classes=3, bins=10)
        shard.update(labels=labels[start:end], proba_dense=dense[start:end], proba_ticket=ticket[start:end],
                     stratum=strata[start:end])
        shards.append(shard)
    merged = shards.pop()  # merged in a scrambled order: addition of exact integers does not care
    for shard in shards[::-1]:
        merged.merge(shard)
    table = merged.table()
    np.testing.assert_array_equal(table.keys, whole.keys)
    np.testing.assert_array_equal(table.sums, whole.sums)
    np.testing.assert_array_equal(table.stratum, whole.stratum)


def test_row_sample_and_examples_keep_the_same_rows_whatever_the_split() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    labels, dense, ticket, strata = _rows(n, 3)
    features = rng.normal(size=(n, 4))
    take = sample_sizes(np.bincount(strata, minlength=5), 300)

    def sampled(splits: list[tuple[int, int]]) -> tuple[RowSample, FlipExamples]:
        sample, examples = RowSample(take=take, seed=9, width=4), FlipExamples()
        for start, end in splits:
            part, flips = RowSample(take=take, seed=9, width=4), FlipExamples()
            part.update(rows=np.arange(start, end), strata=strata[start:end], features=features[start:end],
                        targets=labels[start:end])
            flips.update(rows=np.arange(start, end), labels=labels[start:end], proba_dense=dense[start:end],
                         proba_ticket=ticket[start:end], stratum=strata[start:end])
            sample.merge(part)
            examples.merge(flips)
        return sample, examples

    whole, whole_examples = sampled([(0, n)])
    split, split_examples = sampled(_splits(n, rng, 9))
    np.testing.assert_array_equal(whole.rows, split.rows)
    np.testing.assert_array_equal(whole.features, split.features)
    np.testing.assert_array_equal(whole_examples.table, split_examples.table)
    assert np.array_equal(np.bincount(whole.strata, minlength=5), take) and take.sum() == 300
    # Known truth: the kept rows are exactly the smallest keys of each stratum.
    keys = row_keys(9, np.arange(n))
    for s in range(5):
        members = np.flatnonzero(strata == s)
        expected = np.sort(members[np.argsort(keys[members], kind="stable")[:take[s]]])
        np.testing.assert_array_equal(whole.rows[whole.strata == s], expected)


def test_proxy_moments_give_pearson_correlation() -> None:
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 4, size=2000)
    features = np.stack([strata * 1.0 + rng.normal(size=2000), rng.normal(size=2000), np.full(2000, 3.0)], axis=1)
    indicators = np.eye(4)[:, :2]  # stratum 0, stratum 1
    moments = ProxyMoments(n_strata=4, width=3)
    for start, end in _splits(2000, rng, 5):
        part = ProxyMoments(n_strata=4, width=3)
        part.update(features[start:end], strata[start:end])
        moments.merge(part)
    got = moments.correlations(indicators)
    for j in range(2):
        for d in range(2):
            expected = abs(np.corrcoef(features[:, j], strata == d)[0, 1])
            assert got[j, d] == pytest.approx(expected, abs=1e-9)
    assert np.all(got[2] == 0)  # a constant input correlates with nothing


# --- whole audits over a sharded Parquet dataset ---------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """5,000 generated rows written as one CSV and as five uneven Parquet files; an FT-Transformer and
    its 50% ticket (attention, attributions and every other analysis apply)."""
    root = tmp_path_factory.mktemp("sharded")
    frame = make_table(5000, seed=4)
    frame["site"] = np.random.default_rng(5).choice(["north", "south"], size=len(frame))
    (root / "parts").mkdir()
    for i in range(len(CUTS) - 1):
        frame.iloc[CUTS[i]:CUTS[i + 1]].to_parquet(root / "parts" / f"part-{i}.parquet", row_group_size=333 + 100 * i)
    frame.to_csv(root / "all.csv", index=False)
    torch.manual_seed(0)
    dense = FTTransformer(in_features=4, column_sizes=[1, 1, 1, 1], out_features=2, d_token=8, heads=2, layers=2)
    ticket = global_magnitude_mask(dense, keep=0.5).apply(dense)
    return {"root": root, "dense": dense, "ticket": ticket, "frame": frame}


def _audit(dataset: dict[str, Any], data: Any, **options: Any) -> dict[str, Any]:
    result = ta.audit(dense=dataset["dense"], ticket=dataset["ticket"], data=data, target="y", sensitive="sex,race",
                      features=FEATURES, n_boot=200, seed=3, attribution_rows=300, **options).to_dict()
    result["data"].pop("sha256")
    return result


def _assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal structure; numbers equal within 1e-9 relative (floating-point addition order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _without_attention(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "attention"}


def test_parquet_dataset_audit_equals_the_in_memory_audit(dataset: dict[str, Any]) -> None:
    in_memory = _audit(dataset, dataset["frame"])
    sharded = _audit(dataset, str(dataset["root"] / "parts"))
    globbed = _audit(dataset, str(dataset["root"] / "parts" / "part-*.parquet"))
    assert sharded == globbed
    assert {"performance", "disagreement", "attributions", "attention", "compression"} <= sharded.keys()
    # Counts-based metrics, intervals, p-values, samples and the verdict: exactly equal.
    assert json.dumps(_without_attention(sharded), sort_keys=True) == json.dumps(_without_attention(in_memory),
                                                                                 sort_keys=True)
    # Attention sums: a bootstrap block split between files adds in another order (within 1e-9).
    _assert_close(sharded["attention"], in_memory["attention"])


def test_split_and_max_rows_keep_the_same_rows_when_sharded(dataset: dict[str, Any]) -> None:
    for options in ({"split": "site=north"}, {"max_rows": 2100}, {"split": "site=south", "max_rows": 1500}):
        frame = dataset["frame"]
        reference = _audit(dataset, frame, analyses="metrics,disagreement", **options)
        sharded = _audit(dataset, str(dataset["root"] / "parts"), analyses="metrics,disagreement", **options)
        assert sharded == reference, options


@pytest.mark.slow
def test_ray_engine_gives_the_same_report_with_1_2_and_3_workers(dataset: dict[str, Any]) -> None:
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    local = _audit(dataset, str(dataset["root"] / "parts"))
    for workers in (1, 2, 3):
        remote = _audit(dataset, str(dataset["root"] / "parts"), engine="ray", num_workers=workers)
        assert json.dumps(remote, sort_keys=True) == json.dumps(local, sort_keys=True), workers
    csv_local = _audit(dataset, str(dataset["root"] / "all.csv"))
    csv_remote = _audit(dataset, str(dataset["root"] / "all.csv"), engine="ray", num_workers=2)
    assert csv_remote == csv_local


# --- bad input ---------------------------------------------------------------------------------------

def _report(fx: Fixture, tmp_path: Path, data: Path | str, *extra: str) -> list[str]:
    return ["report", "--dense", str(fx.dense_dir), "--ticket", str(fx.ticket_dir), "--data", str(data),
            "--target", "y", "--sensitive", "sex,race", "--features", ",".join(FEATURES), "--seed", "0",
            "--n-boot", "100", "--quiet", "--out", str(tmp_path / "out" / "r.html"),
            "--json", str(tmp_path / "out" / "r.json"), *extra]


def _parts(fx: Fixture, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    fx.frame.iloc[:500].to_parquet(root / "a.parquet")
    fx.frame.iloc[500:].to_parquet(root / "b.parquet")
    return root


def _expect_exit_2(args: list[str], tmp_path: Path, *needles: str) -> None:
    (tmp_path / "out").mkdir(exist_ok=True)
    run = run_cli(args)
    output = run.stdout + run.stderr
    assert run.code == 2, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output
    assert not any((tmp_path / "out").iterdir()), "no partial report"


def test_ray_missing_is_a_clear_exit_2(fx: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    data = _parts(fx, tmp_path / "d")
    _expect_exit_2(_report(fx, tmp_path, data, "--engine", "ray"), tmp_path, "pip install 'ticketaudit[ray]'")


def test_unreachable_ray_address_is_a_clear_exit_2(fx: Fixture, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    data = _parts(fx, tmp_path / "d")
    _expect_exit_2(_report(fx, tmp_path, data, "--engine", "ray", "--ray-address", "127.0.0.1:9"), tmp_path,
                   "cannot reach the Ray cluster", "127.0.0.1:9")


def test_corrupt_parquet_file_is_named(fx: Fixture, tmp_path: Path) -> None:
    data = _parts(fx, tmp_path / "d")
    (data / "c.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    _expect_exit_2(_report(fx, tmp_path, data), tmp_path, "c.parquet", "not a readable Parquet file")


def _garble(raw: bytearray, start: int, stop: int) -> None:
    """Overwrite raw[start:stop] with bytes derived from them (deterministic garbage)."""
    for i in range(start, stop):
        raw[i] = (raw[i] * 31 + 7) % 256


def _corrupt_data_pages(path: Path) -> None:
    """Garbage over the data pages, footer intact: the file opens but its rows cannot be read."""
    raw = bytearray(path.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little") + 8
    _garble(raw, 8, len(raw) - footer - 8)
    path.write_bytes(bytes(raw))


def test_unreadable_rows_in_a_parquet_file_are_named(fx: Fixture, tmp_path: Path) -> None:
    data = _parts(fx, tmp_path / "d")
    _corrupt_data_pages(data / "b.parquet")
    _expect_exit_2(_report(fx, tmp_path, data), tmp_path, "b.parquet")


def _corrupt_column(path: Path, column: str) -> None:
    """Garbage over one column's pages alone: the first pass (sensitive columns) still reads the file,
    so the failure happens where that column is read — on a worker."""
    raw = bytearray(path.read_bytes())
    metadata = pq.ParquetFile(path).metadata
    for g in range(metadata.num_row_groups):
        chunk = next(metadata.row_group(g).column(j) for j in range(metadata.num_columns)
                     if metadata.row_group(g).column(j).path_in_schema == column)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        _garble(raw, start, start + chunk.total_compressed_size)
    path.write_bytes(bytes(raw))


def _corrupt_feature_pages(fx: Fixture, tmp_path: Path) -> Path:
    """Two Parquet files, the second with one feature column unreadable but its sensitive columns intact."""
    data = _parts(fx, tmp_path / "d")
    _corrupt_column(data / "b.parquet", "x2")
    assert pq.ParquetFile(data / "b.parquet").read_row_group(0, columns=["sex", "race"]).num_rows == len(fx.frame) - 500
    return data


def test_a_fragment_that_fails_on_a_corrupt_column_names_the_file(fx: Fixture, tmp_path: Path) -> None:
    data = _corrupt_feature_pages(fx, tmp_path)
    _expect_exit_2(_report(fx, tmp_path, data), tmp_path, "b.parquet", "is corrupt", "row group 0")


def _ray_error_line(fx: Fixture, tmp_path: Path, data: Path, *extra: str) -> str:
    """Run ``report --engine ray`` in a real process (Ray's own C++ and Python logs would reach its stderr)
    and return the one line it printed: exit 2, nothing else on stderr or stdout, no partial report."""
    pytest.importorskip("ray")
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, "-m", "ticketaudit", *_report(fx, tmp_path, data, "--engine", "ray", *extra)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "\x1b" not in lines[0], lines
    assert done.stdout == ""
    assert not any((tmp_path / "out").iterdir()), "no partial report"
    return lines[0]


@pytest.mark.slow
def test_a_failing_ray_worker_names_the_file_in_one_message(fx: Fixture, tmp_path: Path) -> None:
    line = _ray_error_line(fx, tmp_path, _corrupt_feature_pages(fx, tmp_path))
    assert line.startswith("error: data file '") and "b.parquet' is corrupt" in line and "row group 0" in line


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_ray_workers_without_the_requested_device_say_so(fx: Fixture, tmp_path: Path) -> None:
    line = _ray_error_line(fx, tmp_path, _parts(fx, tmp_path / "d"), "--device", "cuda")
    assert line == ("error: on a Ray worker: --device cuda was requested but no CUDA GPU is available here. "
                    "Use --device cpu. Ray gives a worker a GPU only with --gpus-per-worker (e.g. 1).")


def test_parquet_files_with_different_schemas_exit_2(fx: Fixture, tmp_path: Path) -> None:
    data = _parts(fx, tmp_path / "d")
    fx.frame.iloc[:100].assign(x1=fx.frame.x1.iloc[:100].astype(str)).to_parquet(data / "c.parquet")
    _expect_exit_2(_report(fx, tmp_path, data), tmp_path, "different schemas", "c.parquet", "x1")
    other = _parts(fx, tmp_path / "e")
    fx.frame.iloc[:100].drop(columns=["x4"]).to_parquet(other / "c.parquet")
    _expect_exit_2(_report(fx, tmp_path, other), tmp_path, "different schemas", "missing x4")


@pytest.mark.parametrize("case", ["empty directory", "no match", "mixed types", "stdin", "flags without ray"])
def test_dataset_bad_input(fx: Fixture, tmp_path: Path, case: str) -> None:
    data = _parts(fx, tmp_path / "d")
    if case == "empty directory":
        (tmp_path / "empty").mkdir()
        _expect_exit_2(_report(fx, tmp_path, tmp_path / "empty"), tmp_path, "holds no .parquet")
    elif case == "no match":
        _expect_exit_2(_report(fx, tmp_path, str(tmp_path / "nothing-*.parquet")), tmp_path, "no file matches")
    elif case == "mixed types":
        fx.frame.to_csv(data / "c.csv", index=False)
        _expect_exit_2(_report(fx, tmp_path, data), tmp_path, "mixes file types")
    elif case == "stdin":
        _expect_exit_2(_report(fx, tmp_path, "-", "--engine", "ray"), tmp_path, "cannot read a DataFrame or stdin")
    else:
        _expect_exit_2(_report(fx, tmp_path, data, "--num-workers", "0"), tmp_path, "--num-workers")
        _expect_exit_2(_report(fx, tmp_path, data, "--ray-address", "h:1"), tmp_path, "belong to engine='ray' (--engine ray)")
