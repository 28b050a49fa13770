"""Group values mean the same in every format and fragmentation (issue: no quietly wrong report).

Each generated cell carries its intended meaning (missing, or a text), so the expected groups are a
direct pandas computation on those meanings — never ticketaudit's own canonicalisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import FEATURES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ticketaudit as ta
from ticketaudit.data import build_groups, load_table
from ticketaudit.engine.rows import open_rows
from ticketaudit.values import MISSING

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])

SEPARATOR_TEXTS = ["Black|White", "Female|race=Black", "a=b", 'say "hi"', "back\\slash", "<missing>", " lead",
                   "trail ", "x|y=z"]
MISSING_LIKE = ["NA", "N/A", "None", "null", "NaN", "nan", "NULL", "#N/A", "-", "n/a"]
PLAIN = ["Female", "Male", "01234", "1e3x", "Ω"]

# (python value as stored, its meaning: None = missing, else the canonical text)
TEXT_CELLS = [(t, t) for t in SEPARATOR_TEXTS + MISSING_LIKE + PLAIN] + [(None, None)]
FLOAT_CELLS = [(1.0, "1"), (2.0, "2"), (2.5, "2.5"), (-0.5, "-0.5"), (0.1, "0.1"), (1e20, "100000000000000000000"),
               (np.nan, None)]
MIXED_CELLS = [(1, "1"), (1.0, "1"), ("1.0", "1"), ("1", "1"), (2.5, "2.5"), ("2.50", "2.5"), ("NA", "NA"),
               ("a|b", "a|b"), (None, None)]
CELLS = {"text": TEXT_CELLS, "float": FLOAT_CELLS, "mixed": MIXED_CELLS}


def unquote(label: str) -> str | None:
    """A group label back to its meaning (the test's own reading of the documented quoting)."""
    if label == MISSING:
        return None
    return json.loads(label) if label.startswith('"') else label


@st.composite
def tables(draw: st.DrawFn, kinds: tuple[str, ...] = ("text", "float", "mixed")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, meanings): two sensitive columns of a drawn kind, and the meaning of every cell."""
    n = draw(st.integers(min_value=12, max_value=60))
    table, meaning = {}, {}
    for column in ("a", "b"):
        pool = CELLS[draw(st.sampled_from(kinds))]
        picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
        picks[:2] = [0, next(i for i, cell in enumerate(pool) if cell[1] != pool[0][1])]  # two distinct values
        table[column] = pd.Series([pool[i][0] for i in picks], dtype=object)
        meaning[column] = [pool[i][1] for i in picks]
        if all(isinstance(pool[i][0], float) for i in picks):
            table[column] = table[column].astype(np.float64)
    table["y"] = np.arange(n) % 2
    return pd.DataFrame(table), pd.DataFrame(meaning)


def expected_counts(meaning: pd.DataFrame) -> dict[tuple, int]:
    sizes = meaning.groupby(["a", "b"], dropna=False).size()
    return {tuple(None if pd.isna(v) else v for v in key): int(c) for key, c in sizes.items()}


def found_counts(rows) -> dict[tuple, int]:  # type: ignore[no-untyped-def]
    out: dict[tuple, int] = {}
    for values, count in zip(rows.groups.strata_values, rows.population):
        key = tuple(unquote(v) for v in values)
        assert key not in out, f"two strata mean {key}"
        out[key] = int(count)
    return out


def write(frame: pd.DataFrame, fmt: str, root: Path, rng: np.random.Generator) -> str | pd.DataFrame:
    """The same rows as a DataFrame, CSV, Parquet with several row groups, or directories of files."""
    if fmt == "frame":
        return frame
    if fmt == "csv":
        frame.to_csv(root / "t.csv", index=False)
        return str(root / "t.csv")
    if fmt == "tsv":
        frame.to_csv(root / "t.tsv", index=False, sep="\t")
        return str(root / "t.tsv")
    table = pa.Table.from_pandas(frame, preserve_index=False) if fmt.startswith("parquet") else None
    if fmt == "parquet":
        pq.write_table(table, root / "t.parquet", row_group_size=int(rng.integers(3, 11)))
        return str(root / "t.parquet")
    parts = np.sort(rng.choice(np.arange(1, len(frame)), size=2, replace=False))
    folder = root / fmt
    folder.mkdir()
    for i, piece in enumerate(np.split(np.arange(len(frame)), parts)):
        part = frame.iloc[piece]
        if fmt == "parquet-dir":
            pq.write_table(table.slice(int(piece[0]), len(piece)), folder / f"p{i}.parquet", row_group_size=5)
        else:
            part.to_csv(folder / f"p{i}.csv", index=False)
    return str(folder)


@FAST
@given(drawn=tables(), seed=st.integers(0, 2**16))
def test_groups_equal_a_direct_computation_in_every_format(tmp_path_factory, drawn, seed: int) -> None:
    frame, meaning = drawn
    expected = expected_counts(meaning)
    rng = np.random.default_rng(seed)
    formats = ["frame", "csv", "tsv", "csv-dir"]
    try:
        pa.Table.from_pandas(frame, preserve_index=False)
        formats += ["parquet", "parquet-dir"]
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass  # Parquet stores one type per column: a mixed column cannot be written
    for fmt in formats:
        root = tmp_path_factory.mktemp(fmt)
        data = write(frame, fmt, root, rng)
        rows = open_rows(data, engine="local", split=None, max_rows=None, sensitive=["a", "b"], target="y",
                         in_memory=False)
        assert found_counts(rows) == expected, fmt
        names = [g.name for g in rows.groups.groups]
        assert len(set(names)) == len(names), f"{fmt}: duplicate group names {names}"


@FAST
@given(drawn=tables(kinds=("text",)))
def test_split_keeps_exactly_the_rows_with_that_value(tmp_path_factory, drawn) -> None:
    frame, meaning = drawn
    root = tmp_path_factory.mktemp("split")
    frame.to_csv(root / "t.csv", index=False)
    for wanted in pd.unique(meaning["a"].dropna()):
        if wanted != wanted.strip() or wanted in ("", MISSING):
            continue  # an option value cannot carry surrounding spaces through a shell reliably
        kept = load_table(root / "t.csv", split=f"a={wanted}").frame
        assert len(kept) == int((meaning["a"] == wanted).sum()), wanted


def test_missing_like_strings_are_values_in_csv_and_parquet(tmp_path) -> None:
    frame = pd.DataFrame({"region": ["NA", "EU", "N/A", None, "null", "NA"], "y": [0, 1, 0, 1, 0, 1]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for path in (tmp_path / "t.csv", tmp_path / "t.parquet"):
        groups = build_groups(load_table(path, text_columns=["region"]).frame, ["region"])
        sizes = dict(zip([v[0] for v in groups.strata_values], np.bincount(groups.stratum_of_row)))
        assert sizes == {"NA": 2, "EU": 1, "N/A": 1, "null": 1, MISSING: 1}, path


def test_separator_in_values_gives_each_row_its_own_group_accuracy(fx, tmp_path) -> None:
    """Values containing '|' and '=' land in their own groups with their own rows' accuracy."""
    frame = fx.frame.copy()
    rng = np.random.default_rng(1)
    frame["sex"] = rng.choice(["Female|race=Black", "Female", "Male"], size=len(frame))
    frame["race"] = rng.choice(["Black|White", "Black", "White"], size=len(frame))
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = ta.audit(dense=fx.dense_dir, ticket=fx.ticket_dir, data=tmp_path / "t.csv", target="y",
                      sensitive="sex,race", features=FEATURES, n_boot=100, analyses="metrics")
    with torch.no_grad():
        predicted = fx.dense(torch.tensor(frame[FEATURES].to_numpy(np.float32))).argmax(1).numpy()
    correct = pd.Series(predicted == frame["y"].to_numpy())
    by_name = {g.group: g for g in result.performance.subgroups}
    for (sex, race), rows in frame.groupby(["sex", "race"]).groups.items():
        name = f"sex={json.dumps(sex) if '|' in sex else sex}|race={json.dumps(race) if '|' in race else race}"
        group = by_name[name]
        assert group.n == len(rows)
        assert group.metrics["accuracy"].dense == pytest.approx(correct[rows].mean())
    for sex, rows in frame.groupby("sex").groups.items():
        assert by_name[f"sex={json.dumps(sex) if '|' in sex else sex}"].n == len(rows)


def _onehot_bundle(root: Path) -> Path:
    from ticketaudit.models import MLP
    from ticketaudit.preprocess import Preprocessor
    from ticketaudit.tickets.bundle import save_bundle

    spec = {"version": 1, "inputs": [{"column": "x", "kind": "numeric", "mean": 0.0, "std": 1.0},
                                     {"column": "cat", "kind": "onehot", "categories": ["A", "B", "1"]}]}
    torch.manual_seed(0)
    return save_bundle(root / "bundle", MLP(in_features=4, hidden=[4], out_features=2), architecture="mlp",
                       arguments={"in_features": 4, "hidden": [4], "out_features": 2},
                       preprocess=Preprocessor.from_dict(spec))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16))
def test_unseen_categories_are_counted_per_group_in_every_format(tmp_path_factory, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    pool = np.array(["A", "B", "1", "a", "b ", "C", "NA", None], dtype=object)
    frame = pd.DataFrame({"x": rng.normal(size=n), "cat": rng.choice(pool, size=n, p=[.3, .3, .2, .05, .05, .04, .03, .03]),
                          "g": rng.choice(["u", "v|w"], size=n), "y": rng.integers(0, 2, size=n)})
    root = tmp_path_factory.mktemp("unseen")
    bundle = _onehot_bundle(root)
    unknown = ~frame["cat"].isin(["A", "B", "1"])  # the direct computation (missing counts as unknown too)
    expected_by_group = {f"g={json.dumps(v) if '|' in v else v}": int(unknown[frame["g"] == v].sum())
                         for v in frame["g"].unique()}
    for fmt in ("frame", "csv", "parquet", "parquet-dir"):
        data = write(frame, fmt, tmp_path_factory.mktemp(fmt), rng)
        result = ta.audit(dense=bundle, ticket=bundle, data=data, target="y", sensitive="g", n_boot=100,
                          analyses="metrics", max_unseen_share=1.0)
        (entry,) = result.data["unseen_categories"]
        assert entry["column"] == "cat" and entry["rows"] == int(unknown.sum()), fmt
        assert {g["group"]: g["rows"] for g in entry["groups"]} == {k: v for k, v in expected_by_group.items() if v}
        assert entry["values"] == sorted({MISSING if pd.isna(v) else v for v in frame.loc[unknown, "cat"]})[:5]
        assert any("no category" in note for note in result.notes)


def test_too_many_unseen_categories_are_refused_naming_the_option(tmp_path) -> None:
    bundle = _onehot_bundle(tmp_path)
    frame = pd.DataFrame({"x": np.zeros(40), "cat": ["a"] * 10 + ["A"] * 30, "g": ["u", "v"] * 20, "y": [0, 1] * 20})
    with pytest.raises(ta.InvalidInputError, match=r"10 of 40 rows \(25.0%\).*'cat'.*--max-unseen-share"):
        ta.audit(dense=bundle, ticket=bundle, data=frame, target="y", sensitive="g", n_boot=100, analyses="metrics")
    result = ta.audit(dense=bundle, ticket=bundle, data=frame, target="y", sensitive="g", n_boot=100,
                      analyses="metrics", max_unseen_share=0.3)
    assert result.data["unseen_categories"][0]["rows"] == 10


@settings(max_examples=30, deadline=None)
@given(names=st.lists(st.sampled_from(["x1", "x2", "x3", "x4", "sex", "race"]), min_size=2, max_size=6),
       option=st.sampled_from(["--features", "--sensitive", "--proxies", "--analyses"]))
def test_an_option_naming_a_column_twice_is_refused_naming_it(names: list[str], option: str) -> None:
    from ticketaudit._validation import as_list

    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is None:
        assert as_list(",".join(names), option=option) == names
    else:
        with pytest.raises(ta.InvalidInputError, match=f"{option} names '{repeated}' twice"):
            as_list(",".join(names), option=option)
        with pytest.raises(ta.InvalidInputError, match=f"{option} names '{repeated}' twice"):
            as_list(names, option=option)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(["<=50K", ">50K", "unknown"]))
def test_a_ticket_is_scored_with_its_own_label_order_or_refused(tmp_path_factory, order: list[str]) -> None:
    from ticketaudit.models import MLP
    from ticketaudit.tickets import load_dense, load_ticket
    from ticketaudit.tickets.bundle import save_bundle

    root = tmp_path_factory.mktemp("labels")
    arguments = {"in_features": 2, "hidden": [3], "out_features": 3}
    model = MLP(**arguments)
    dense = load_dense(save_bundle(root / "d", model, architecture="mlp", arguments=arguments,
                                   labels=("<=50K", ">50K", "unknown")))
    ticket = save_bundle(root / "t", model, architecture="mlp", arguments=arguments, labels=tuple(order))
    if tuple(order) == dense.labels:
        assert load_ticket(ticket, dense=dense).labels == dense.labels
    else:
        with pytest.raises(ta.InvalidInputError, match="in another order"):
            load_ticket(ticket, dense=dense)
