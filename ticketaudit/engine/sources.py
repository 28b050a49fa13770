"""Audit data stored as files: one Parquet/CSV/TSV file, a directory of them, or a glob, split into
fragments (a Parquet row group, or a whole text file) that any worker can read on its own.

Fragments are fixed by the data, not by the number of workers, and their rows get global ids in
fragment order: the ids that make sampling and bootstrap weights independent of the split.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .._io import sha256_file
from .._validation import MSG_FILE_MISSING, fail, first_line
from ..data import TABLE_EXTENSIONS, _head, _read_text_table

PARQUET = (".parquet", ".pq")
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class Fragment:
    """One unit of work: a Parquet row group, or a whole CSV/TSV file."""

    index: int
    path: str
    row_group: int | None


@dataclass(frozen=True, kw_only=True)
class FileSource:
    """The files of an audit table, checked to share one schema, and their fragments."""

    name: str
    kind: str  # "parquet", "csv" or "tsv"
    files: tuple[str, ...]
    columns: tuple[str, ...]
    fragments: tuple[Fragment, ...]
    text_columns: tuple[str, ...] = ()
    """Columns a CSV/TSV fragment reads as written text (sensitive, target, split): see ``data._read_text_table``."""

    def sha256(self) -> str:
        """The file's sha256 for one file; for several, sha256 over (relative name, file sha256) lines,
        sorted by name — independent of the order the files are listed in."""
        if len(self.files) == 1:
            return sha256_file(Path(self.files[0]))
        root = os.path.commonpath(self.files)
        lines = sorted(f"{os.path.relpath(f, root)}\0{sha256_file(Path(f))}\n" for f in self.files)
        return hashlib.sha256("".join(lines).encode()).hexdigest()


def is_file_table(source: object) -> bool:
    """Whether ``source`` names Parquet data, a directory or a glob (read in fragments, not whole)."""
    if not isinstance(source, (str, Path)) or str(source) == "-":
        return False
    text = str(source)
    return Path(text).is_dir() or bool(GLOB_CHARACTERS & set(text)) or Path(text).suffix.lower() in PARQUET


def _kind(path: str) -> str | None:
    suffix = Path(path).suffix.lower()
    if suffix in PARQUET:
        return "parquet"
    return {".csv": "csv", ".tsv": "tsv"}.get(suffix)


def _list_files(source: str) -> list[str]:
    path = Path(source)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                       and _kind(str(p)) is not None)
        if not found:
            fail(f"data directory '{source}' holds no .parquet, .csv or .tsv files. Point --data at the files.")
        return found
    if GLOB_CHARACTERS & set(source):
        found = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
        if not found:
            fail(f"no file matches the data pattern '{source}'. Check the pattern (quote it in the shell).")
        return found
    if not path.is_file():
        fail(MSG_FILE_MISSING.format(what="data file", path=path))
    return [source]


def open_source(source: str | Path, *, text_columns: tuple[str, ...] = ()) -> FileSource:
    """List, check and fragment the files of ``source``; every problem names the file at fault."""
    files = _list_files(str(source))
    kinds = {_kind(f) for f in files}
    if None in kinds or len(kinds) > 1:
        shown = ", ".join(sorted({Path(f).suffix or "(none)" for f in files}))
        fail(f"data '{source}' mixes file types ({shown}). Give only Parquet files, or only CSV/TSV files "
             f"({', '.join(TABLE_EXTENSIONS)}).")
    kind = kinds.pop()
    assert kind is not None
    for f in files:
        if not os.access(f, os.R_OK):
            fail(f"data file '{f}' cannot be read (permission denied).")
    if kind == "parquet":
        columns, fragments = _parquet_fragments(files)
    else:
        columns, fragments = _text_fragments(files, sep="," if kind == "csv" else "\t")
    return FileSource(
        name=str(source),
        kind=kind,
        files=tuple(files),
        columns=columns,
        fragments=tuple(fragments),
        text_columns=text_columns,
    )


def _parquet_fragments(files: list[str]) -> tuple[tuple[str, ...], list[Fragment]]:
    import pyarrow.parquet as pq

    first_schema = None
    fragments: list[Fragment] = []
    for f in files:
        try:
            metadata = pq.ParquetFile(f).metadata
            schema = metadata.schema.to_arrow_schema()
        except Exception as error:  # pyarrow raises many types for corrupt files
            fail(
                f"data file '{f}' is not a readable Parquet file ({type(error).__name__}). Re-export it or "
                "remove it from the dataset."
            )
        schema = schema.remove_metadata()
        if first_schema is None:
            first_schema, first_file = schema, f
        elif not schema.equals(first_schema):
            fail(
                f"Parquet files '{first_file}' and '{f}' have different schemas ({_schema_difference(first_schema, schema)}). "
                "Write every file of the dataset with the same columns and types."
            )
        fragments += [Fragment(len(fragments) + i, f, i) for i in range(metadata.num_row_groups)]
    assert first_schema is not None
    columns = tuple(first_schema.names)
    if len(set(columns)) != len(columns):
        fail(f"data '{files[0]}' has a column twice; rename one.")
    return columns, fragments


def _schema_difference(first: object, second: object) -> str:
    a = {field.name: str(field.type) for field in first}  # type: ignore[attr-defined]
    b = {field.name: str(field.type) for field in second}  # type: ignore[attr-defined]
    missing, extra = [c for c in a if c not in b], [c for c in b if c not in a]
    if missing or extra:
        return "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"extra {', '.join(extra)}" if extra else "",
            )
            if part
        )
    changed = [f"{c}: {a[c]} vs {b[c]}" for c in a if a[c] != b[c]]
    return ", ".join(changed) if changed else "column order differs"


def _text_fragments(files: list[str], *, sep: str) -> tuple[tuple[str, ...], list[Fragment]]:
    header = None
    for f in files:
        head = _head(Path(f), gz=False)
        line = head.splitlines()[0].decode("utf-8-sig", errors="replace") if head.strip() else ""
        columns = tuple(c.strip('"') for c in line.rstrip("\r").split(sep))
        if header is None:
            header, first_file = columns, f
        elif columns != header:
            fail(
                f"files '{first_file}' and '{f}' have different header rows. Write every file of the dataset "
                "with the same columns."
            )
    assert header is not None
    return header, [Fragment(i, f, None) for i, f in enumerate(files)]


def read_fragment(source: FileSource, fragment: Fragment, *, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of one fragment as a DataFrame (``columns``: only those); a read error names the file."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(fragment.path).read_row_group(fragment.row_group or 0, columns=columns)
            frame = table.to_pandas()
        except Exception as error:  # pyarrow raises many types for corrupt pages
            fail(
                f"data file '{fragment.path}' is corrupt: row group {fragment.row_group} cannot be read "
                f"({type(error).__name__}: {first_line(error, 200)}). "
                "Re-export it or remove it from the dataset."
            )
    else:
        path = Path(fragment.path)
        frame = _read_text_table(
            path,
            sep="," if source.kind == "csv" else "\t",
            source=str(path),
            head=_head(path, gz=False),
            text_columns=source.text_columns,
        )
        if columns is not None:
            frame = frame[columns]
    frame.columns = [str(c) for c in frame.columns]
    return frame
