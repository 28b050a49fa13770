"""Where the audit rows live — a table in memory, or files read fragment by fragment — and the first
pass over them (row count, groups, group sizes) that every driver needs before the models run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import check_columns, fail
from ..data import Groups, groups_from_strata, load_table
from .drivers import WorkItem, plan_work, run_local, run_ray
from .shard import AuditPlan, AuditState, FragmentScan, ShardAuditor, scan_fragment, scan_frame, select_rows
from .sources import FileSource, is_file_table, open_source, read_fragment



@dataclass(frozen=True, eq=False, kw_only=True)
class AuditRows:
    """The audit rows (a frame in memory, or files and their work items) and what the first pass found."""

    total: int
    groups: Groups
    population: np.ndarray
    """Rows per stratum."""
    probe: pd.DataFrame
    """The first row: sizes the model's inputs and output."""
    sha256: str
    source: str
    frame: pd.DataFrame | None = None
    files: FileSource | None = None
    items: tuple[WorkItem, ...] = ()


def _groups(scans: list[FragmentScan], sensitive: list[str]) -> tuple[Groups, np.ndarray]:
    strata = pd.concat([scan.strata for scan in scans], ignore_index=True)
    counts = np.concatenate([scan.counts for scan in scans])
    groups = groups_from_strata(strata, sensitive)
    population = np.bincount(groups.stratum_of_labels(strata), weights=counts, minlength=groups.n_strata)
    return groups, population.astype(np.int64)


ITEMS_PER_FRAGMENT = 64
"""Items per Parquet row group when a language model's items go to Ray workers: fixed by the items, never by the
number of workers, so rows keep their ids and the report is the local one."""


def open_items_for_ray(items: pd.DataFrame, *, folder: Path, split: str | None, max_rows: int | None,
                       sensitive: list[str], target: str) -> AuditRows:
    """A language model's items (read by a benchmark's or the item file's reader) for Ray workers: written to one
    Parquet file in ``folder`` (row groups of ``ITEMS_PER_FRAGMENT``) that the workers read as any Parquet table
    (a cluster's workers must see ``folder``); the provenance keeps the items' own hash and name."""
    import dataclasses

    frame = items.reset_index(drop=True)
    path = folder / "items.parquet"
    frame.to_parquet(path, index=False, row_group_size=ITEMS_PER_FRAGMENT)
    rows = open_rows(path, engine="ray", split=split, max_rows=max_rows, sensitive=sensitive, target=target,
                     in_memory=False)
    table = load_table(frame)
    return dataclasses.replace(rows, sha256=table.sha256, source=table.source)


def open_rows(data: pd.DataFrame | str | Path, *, engine: str, split: str | None, max_rows: int | None,
              sensitive: list[str], target: str, in_memory: bool) -> AuditRows:
    """Open the audit data for ``engine``; Parquet, directories and globs are read in fragments."""
    text_columns = (*sensitive, target)
    if engine == "ray" and (isinstance(data, pd.DataFrame) or str(data) == "-"):
        fail("--engine ray reads data files (Parquet or CSV, a directory or a glob) that every worker can open; "
             "it cannot read a DataFrame or stdin. Save the table to Parquet first.")
    from_files = engine == "ray" or is_file_table(data)
    if from_files and in_memory:
        single = isinstance(data, (str, Path)) and Path(data).is_file()
        if engine == "ray" or not single:
            fail("--alternatives needs the audit table in one process: give a single data file and "
                 "leave --engine ray out.")
        from_files = False
    if not from_files:
        table = load_table(data, split=split, max_rows=max_rows, text_columns=text_columns)
        scan = scan_frame(table.frame, sensitive)
        groups, population = _groups([scan], sensitive)
        return AuditRows(
            total=len(table.frame),
            groups=groups,
            population=population,
            probe=table.frame.iloc[:1],
            sha256=table.sha256,
            source=table.source,
            frame=table.frame,
        )
    assert isinstance(data, (str, Path))
    source = open_source(data, text_columns=(*text_columns, *([split.partition("=")[0]] if split else [])))
    check_columns("sensitive", sensitive, list(source.columns))
    if split is not None:
        column, sep, value = split.partition("=")
        if not sep:
            fail(f"--split must look like COL=VALUE, got {split!r}.")
        check_columns("split", [column], list(source.columns))
    scans = [scan_fragment(source, fragment, sensitive=sensitive, split=split) for fragment in source.fragments]
    items = plan_work(source.fragments, [scan.rows for scan in scans], max_rows=max_rows)
    if not items:
        fail(
            f"--split {split}: no row has {split.replace('=', ' = ', 1)}."
            if split and sum(s.rows for s in scans) == 0
            else f"data '{source.name}' has no rows (a header alone is not enough)."
        )
    kept = []
    for item in items:
        scan = scans[item.fragment.index]
        kept.append(
            scan
            if item.limit == scan.rows
            else scan_fragment(source, item.fragment, sensitive=sensitive, split=split, limit=item.limit)
        )
    groups, population = _groups(kept, sensitive)
    probe = select_rows(read_fragment(source, items[0].fragment), split=split).iloc[:1]
    return AuditRows(
        total=sum(item.limit for item in items),
        groups=groups,
        population=population,
        probe=probe,
        sha256=source.sha256(),
        source=source.name,
        files=source,
        items=tuple(items),
    )


def column_chunks(rows: AuditRows, column: str, *, split: str | None) -> Iterator[pd.Series]:
    """The values of ``column`` for every audited row, a fragment (or the whole table) at a time."""
    if rows.frame is not None:
        check_columns("text", [column], list(rows.frame.columns))
        yield rows.frame[column]
        return
    assert rows.files is not None
    check_columns("text", [column], list(rows.files.columns))
    columns = list(dict.fromkeys([column, *([split.partition("=")[0]] if split else [])]))
    for item in rows.items:
        frame = select_rows(read_fragment(rows.files, item.fragment, columns=columns), split=split)
        yield frame[column].iloc[:item.limit]


def run_shards(
    plan: AuditPlan,
    rows: AuditRows,
    *,
    engine: str,
    split: str | None,
    ray_address: str | None,
    num_workers: int,
    gpus_per_worker: float,
    progress: Callable[[int], None] | None = None,
) -> AuditState:
    """Every row through both models into merged accumulators: in this process or on Ray workers."""
    if rows.frame is not None:
        return ShardAuditor(plan).audit_frame(rows.frame, first_row=0, progress=progress)
    assert rows.files is not None
    items = list(rows.items)
    if engine == "ray":
        state = run_ray(
            plan,
            rows.files,
            items,
            split=split,
            address=ray_address,
            num_workers=num_workers,
            gpus_per_worker=gpus_per_worker,
            progress=progress,
        )
    else:
        state = run_local(plan, rows.files, items, split=split, progress=progress)
    assert state is not None
    return state
