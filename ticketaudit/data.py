"""Reading the audit table and building groups (intersectional, marginal, ``<missing>``)."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import os
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._io import sha256_file
from ._validation import MSG_FILE_MISSING, MSG_UNKNOWN_EXTENSION, check_columns, check_unique, fail
from .values import MISSING, group_name, matches, quote_label, value_labels

MAX_VALUES_PER_SENSITIVE_COLUMN = 100
TABLE_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}


@dataclass(frozen=True)
class Table:
    """The audit rows and the sha256 of the bytes they were read from."""

    frame: pd.DataFrame
    sha256: str
    source: str


def _check_header(header_line: str, *, sep: str, source: str) -> None:
    try:
        header = next(csv.reader([header_line.rstrip("\r")], delimiter=sep), [])
    except csv.Error as error:
        fail(f"data '{source}' has an unreadable header row ({error}).")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            fail(f"data '{source}' has the column '{name}' twice. Column names must be unique; rename one.")
        seen.add(name)


def _read_text_table(handle: Any, *, sep: str, source: str, head: bytes,
                     text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Parse CSV/TSV from a path or buffer; ``head`` (the first bytes) is checked first.

    Only an empty cell is missing (``NA``, ``None``, ``null`` ... are values), and ``text_columns``
    (sensitive, target, split) are read as the text written, so type inference can neither merge
    ``01234`` with ``1234`` nor differ between the files of one dataset.
    """
    line = head.splitlines()[0] if head.strip() else b""
    try:
        first_line = line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if len(line) < len(head) or error.start < len(line) - 4:
            fail(f"data '{source}' is not UTF-8 text (byte {error.start}). Re-save it as UTF-8.")
        first_line = line[: error.start].decode("utf-8-sig", errors="replace")
    if not first_line.strip():
        fail(f"data '{source}' is empty. Give a table with a header row and at least one row.")
    _check_header(first_line, sep=sep, source=source)
    try:
        frame = pd.read_csv(handle, sep=sep, encoding="utf-8", low_memory=False, compression="infer",
                            keep_default_na=False, na_values=[""], dtype={c: str for c in text_columns})
    except UnicodeDecodeError as error:
        fail(f"data '{source}' is not UTF-8 text (byte {error.start}). Re-save it as UTF-8.")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError, EOFError) as error:
        kind = "TSV" if sep == "\t" else "CSV"
        fail(f"data '{source}' could not be parsed as {kind}: {str(error).strip()}.")
    _check_delimiter(frame, sep=sep, source=source)
    return frame


def _check_delimiter(frame: pd.DataFrame, *, sep: str, source: str) -> None:
    """A table read as one column whose name holds another delimiter was split on the wrong character."""
    if frame.shape[1] != 1:
        return
    header = str(frame.columns[0])
    tsv = sep == "\t"
    kind, expected = ("TSV (tab-separated)", "tabs") if tsv else ("CSV (comma-separated)", "commas")
    for other, name in ((";", "semicolons"), ("\t", "tabs"), (",", "commas"), ("|", "vertical bars")):
        if other != sep and other in header:
            rename = ", or give it a .tsv extension" if other == "\t" else ""
            fail(f"data '{source}' was read as {kind} but has a single column {header!r}; its fields seem to be "
                 f"separated by {name}. Re-save it with {expected} as the delimiter{rename}.")


def _head(path: Path, *, gz: bool) -> bytes:
    try:
        if gz:
            with gzip.open(path, "rb") as handle:
                return handle.read(65536)
        with open(path, "rb") as handle:
            return handle.read(65536)
    except (OSError, EOFError):
        fail(f"data file '{path}' cannot be read{' (not a valid gzip file)' if gz else ''}.")


def load_table(source: str | Path | pd.DataFrame, *, split: str | None = None, max_rows: int | None = None,
               text_columns: Sequence[str] = ()) -> Table:
    """Read CSV/TSV/Parquet (by extension), a FIFO or ``-`` (CSV on stdin); apply ``COL=VALUE`` and
    ``max_rows``. ``text_columns`` of a CSV/TSV are read as written (see ``_read_text_table``)."""
    text_columns = [*text_columns, *([split.partition("=")[0]] if split else [])]
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        digest = _hash_frame(frame)
        name = "<DataFrame>"
    elif str(source) == "-":
        frame, digest, name = _table_from_bytes(sys.stdin.buffer.read(), name="<stdin>", text_columns=text_columns)
    elif not isinstance(source, (str, Path)):
        fail(f"data must be a pandas DataFrame or a path (str or pathlib.Path), got {type(source).__name__}.")
    elif _is_stream(Path(source)):
        frame, digest, name = _read_stream(Path(source), text_columns=text_columns)
    else:
        path = Path(source)
        if path.is_dir():
            fail(f"data '{path}' is a directory; this step needs one table file (.csv, .tsv or .parquet).")
        if not path.is_file():
            fail(MSG_FILE_MISSING.format(what="data file", path=path))
        suffixes = [s.lower() for s in path.suffixes]
        gz = bool(suffixes) and suffixes[-1] == ".gz"
        ext = (suffixes[-2] if len(suffixes) > 1 else "") if gz else (suffixes[-1] if suffixes else "")
        if ext not in TABLE_EXTENSIONS or (gz and ext in (".parquet", ".pq")):
            fail(MSG_UNKNOWN_EXTENSION.format(what="data file", path=path, ext=ext or "(none)",
                                              allowed=".csv, .tsv, .parquet (optionally .gz for text), or - for stdin"))
        if not os.access(path, os.R_OK):
            fail(f"data file '{path}' cannot be read (permission denied).")
        if ext in (".parquet", ".pq"):
            try:
                frame = pd.read_parquet(path)
            except Exception as error:  # pyarrow raises many types for corrupt files
                fail(f"data file '{path}' is not a readable Parquet file ({type(error).__name__}). Re-export it.")
        else:
            frame = _read_text_table(path, sep=TABLE_EXTENSIONS[ext] or ",", source=str(path), head=_head(path, gz=gz),
                                     text_columns=text_columns)
        digest, name = sha256_file(path), str(path)
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        fail(f"data '{name}' has the column '{frame.columns[frame.columns.duplicated()][0]}' twice; rename one.")
    if split is not None:
        column, sep, value = split.partition("=")
        if not sep:
            fail(f"--split must look like COL=VALUE, got {split!r}.")
        check_columns("split", [column], list(frame.columns))
        frame = frame[matches(frame[column], value)].reset_index(drop=True)
        if frame.empty:
            fail(f"--split {split}: no row has {column} = {value!r}.")
    if max_rows is not None:
        frame = frame.iloc[:max_rows].reset_index(drop=True)
    if frame.empty:
        fail(f"data '{name}' has no rows (a header alone is not enough).")
    return Table(frame, digest, name)


def _is_stream(path: Path) -> bool:
    """A named pipe or character device (``/dev/stdin`` from a pipe, ``<(...)`` in a shell)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _read_stream(path: Path, *, text_columns: Sequence[str]) -> tuple[pd.DataFrame, str, str]:
    """Read a pipe or device once into memory (see ``_table_from_bytes``)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        fail(f"data '{path}' is a pipe or device that cannot be read ({error.strerror}).")
    return _table_from_bytes(raw, name=str(path), suffix=path.suffix.lower(), text_columns=text_columns)


def _table_from_bytes(raw: bytes, *, name: str, text_columns: Sequence[str],
                      suffix: str = "") -> tuple[pd.DataFrame, str, str]:
    """A table read whole from memory (stdin, a pipe): Parquet by its extension or magic bytes, else CSV
    (TSV by extension); with the bytes' sha256 and the source's name."""
    digest = hashlib.sha256(raw).hexdigest()
    if raw.startswith(b"PAR1") or suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(io.BytesIO(raw)), digest, name
        except Exception as error:  # pyarrow raises many types for corrupt input
            fail(f"data '{name}' is not a readable Parquet stream ({type(error).__name__}).")
    sep = "\t" if suffix == ".tsv" else ","
    return _read_text_table(io.BytesIO(raw), sep=sep, source=name, head=raw[:65536], text_columns=text_columns), \
        digest, name


def _hash_frame(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(_hashable(frame), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _hashable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with list cells (a language model's list column of choices) as their JSON text, which pandas
    can hash; other frames as they are."""
    import json

    def text(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        return json.dumps(value, default=str) if isinstance(value, (list, tuple, dict)) else value

    listed = [c for c in frame.columns if frame[c].dtype == object
              and frame[c].map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray))).any()]
    if not listed:
        return frame
    out = frame.copy()
    for column in listed:
        out[column] = out[column].map(text)
    return out


@dataclass(frozen=True)
class Group:
    """A reported group: its display name, its family (``attribute``: the column's name, quoted like a
    group label when it could be misread, or the intersection ``a|b``) and its strata."""

    name: str
    attribute: str
    strata: tuple[int, ...]


@dataclass(frozen=True)
class Groups:
    """Rows partitioned into strata (the finest, intersectional cells) and the groups built from them.

    Every group is a union of strata, so a stratified bootstrap over strata serves every group,
    and the whole data (``overall``) at once. ``stratum_of_row`` is empty where the rows are
    streamed rather than held (``stratum_of`` maps any batch of rows).
    """

    attributes: tuple[str, ...]
    strata_names: tuple[str, ...]
    stratum_of_row: np.ndarray
    groups: tuple[Group, ...]
    strata_values: tuple[tuple[str, ...], ...] = ()
    """Per stratum, the label of each sensitive column's value (``values.value_labels``): the key of the
    stratum. Names are built from these, never parsed back."""

    @property
    def n_strata(self) -> int:
        return len(self.strata_names)

    def rows(self, group: Group) -> np.ndarray:
        return np.isin(self.stratum_of_row, np.asarray(group.strata))

    def stratum_of(self, frame: pd.DataFrame) -> np.ndarray:
        """The stratum of each row of ``frame`` (-1 for a combination of values no stratum has)."""
        return self.stratum_of_labels(pd.DataFrame({c: sensitive_labels(frame, c) for c in self.attributes}))

    def stratum_of_labels(self, keys: pd.DataFrame) -> np.ndarray:
        """The stratum of each row of group labels (as ``distinct_strata`` gives them; -1 if unknown)."""
        index = pd.MultiIndex.from_tuples(self.strata_values, names=self.attributes) if len(self.attributes) > 1 \
            else pd.Index([v[0] for v in self.strata_values])
        lookup = keys.set_index(list(self.attributes)).index if len(self.attributes) > 1 \
            else pd.Index(keys[self.attributes[0]])
        return index.get_indexer(lookup).astype(np.int64)


def sensitive_labels(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Group labels of a sensitive column's values (``values.value_labels``; missing -> ``<missing>``)."""
    return value_labels(frame[column])


def distinct_strata(frame: pd.DataFrame, sensitive: list[str], *, keep_duplicates: bool = False) -> pd.DataFrame:
    """The distinct combinations of sensitive labels in ``frame`` (one row each; every row's with
    ``keep_duplicates``)."""
    check_columns("sensitive", sensitive, list(frame.columns))
    keys = pd.DataFrame({c: sensitive_labels(frame, c) for c in sensitive})
    return keys if keep_duplicates else keys.drop_duplicates().reset_index(drop=True)


def groups_from_strata(strata: pd.DataFrame, sensitive: list[str]) -> Groups:
    """Groups from the distinct sensitive combinations of all rows (any order, duplicates allowed):
    intersectional strata, then each column's marginal groups."""
    if not sensitive:
        fail("give at least one sensitive column (--sensitive COL[,COL...]).")
    check_unique("--sensitive", sensitive)
    for column in sensitive:
        distinct = pd.unique(strata[column])
        if len(distinct) < 2:
            what = "only missing values" if distinct[0] == MISSING else f"a single value ({distinct[0]!r})"
            fail(f"sensitive column '{column}' has {what}; there are no groups to compare. Choose another column.")
        if len(distinct) > MAX_VALUES_PER_SENSITIVE_COLUMN:
            fail(f"sensitive column '{column}' has {len(distinct)} distinct values (limit "
                 f"{MAX_VALUES_PER_SENSITIVE_COLUMN}); it looks like an identifier or a continuous value. "
                 "Bin it into groups first.")
    strata_frame = strata[sensitive].drop_duplicates().sort_values(sensitive, kind="stable").reset_index(drop=True)
    values = tuple(tuple(str(v) for v in row) for row in strata_frame.itertuples(index=False))
    strata_names = tuple("|".join(group_name(c, v) for c, v in zip(sensitive, row)) for row in values)
    groups: list[Group] = []
    for column in sensitive:
        for value in sorted(pd.unique(strata_frame[column])):
            members = tuple(int(i) for i in np.flatnonzero(strata_frame[column].to_numpy() == value))
            groups.append(Group(group_name(column, value), quote_label(column), members))
    if len(sensitive) > 1:
        attribute = "|".join(quote_label(c) for c in sensitive)
        groups += [Group(name, attribute, (i,)) for i, name in enumerate(strata_names)]
    return Groups(tuple(sensitive), strata_names, np.zeros(0, dtype=np.int64), tuple(groups), values)


def build_groups(frame: pd.DataFrame, sensitive: list[str]) -> Groups:
    """Intersectional strata of the sensitive columns, then each column's marginal groups."""
    if not sensitive:
        fail("give at least one sensitive column (--sensitive COL[,COL...]).")
    groups = groups_from_strata(distinct_strata(frame, sensitive), sensitive)
    return dataclasses.replace(groups, stratum_of_row=groups.stratum_of(frame))
