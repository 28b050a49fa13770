"""One code path for every driver: rows of a fragment -> both models -> mergeable accumulators.

``ShardAuditor`` holds both models (loaded once per worker) and turns any batch of rows with known
row ids into an ``AuditState``; states of fragments merge (in fragment order) into the state of
the whole table, from which every analysis and all statistics are computed on the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from .._validation import fail
from ..analyses.base import Analysis, Batch, Worker
from ..analyses.cells import CellAccumulator
from ..analyses.predict import ModelRunner, forward_both, resolve_device
from ..data import Groups, distinct_strata
from ..exceptions import InvalidInputError, RowsProblem
from ..inputs import encode_target
from ..modalities.base import Modality
from ..preprocess import UnseenCategories
from ..values import matches
from .sources import FileSource, Fragment, read_fragment

CHUNK_ROWS = 65_536
"""Rows turned into model inputs at a time (memory bound per worker; fixed, so results never depend on it)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class AuditPlan:
    """Everything a worker needs to audit any fragment: both models, the modality, the groups, and each
    analysis with what the driver planned for it."""

    dense: nn.Module
    ticket: nn.Module
    modality: Modality
    target: str
    labels: tuple[str, ...] | None
    n_outputs: int
    groups: Groups
    analyses: tuple[Analysis, ...]
    planned: tuple[Any, ...]
    """``analysis.plan(...)`` of each analysis, in the same order."""
    n_boot: int
    seed: int
    ece_bins: int
    batch_size: int
    device: str
    precision: str = "float64"
    """``float64``, ``float32`` or ``bfloat16`` (resolved: never ``auto``)."""


class AuditState:
    """Every analysis's accumulator for some rows; ``merge`` adds the next shard's."""

    def __init__(self, plan: AuditPlan, worker: Worker) -> None:
        self.rows = 0
        self.cells = CellAccumulator(n_classes=worker.n_classes, bins=plan.ece_bins)
        onehot = plan.modality.onehot_columns
        self.unseen = UnseenCategories(columns=onehot, n_strata=plan.groups.n_strata) if onehot else None
        self.clipped = np.zeros(plan.groups.n_strata, dtype=np.int64)
        """Rows per stratum whose input the model saw only in part (text cut to its limit)."""
        self.parts: dict[str, Any] = {analysis.name: analysis.accumulator(worker, planned)
                                      for analysis, planned in zip(plan.analyses, plan.planned)}

    def observer(self, inputs: Any) -> tuple[str, Any] | None:
        """The first accumulator that reads the models' forward pass (its name and observer), if any."""
        for name, part in self.parts.items():
            if part is not None and hasattr(part, "observer"):
                return name, part.observer(inputs)
        return None

    def update(self, batch: Batch) -> None:
        self.rows += len(batch.rows)
        self.cells.update(labels=batch.labels, proba_dense=batch.proba_dense, proba_ticket=batch.proba_ticket,
                          stratum=batch.strata)
        for part in self.parts.values():
            if part is not None:
                part.update(batch)

    def close(self) -> None:
        """The end of a fragment: accumulators flush what they buffer before the state travels."""
        for part in self.parts.values():
            if part is not None and hasattr(part, "close"):
                part.close()

    def merge(self, other: AuditState) -> AuditState:
        self.rows += other.rows
        self.cells.merge(other.cells)
        if self.unseen is not None and other.unseen is not None:
            self.unseen.merge(other.unseen)
        self.clipped += other.clipped
        for name, part in self.parts.items():
            if part is not None:
                self.parts[name] = part.merge(other.parts[name])
        return self


class ShardAuditor:
    """Both models on this worker's device, ready to audit fragments (built once per worker)."""

    def __init__(self, plan: AuditPlan) -> None:
        self.plan = plan
        device = resolve_device(plan.device)
        self.dense = ModelRunner(plan.dense, device=device, precision=plan.precision)
        self.ticket = ModelRunner(plan.ticket, device=device, precision=plan.precision)
        self.worker = Worker(dense=self.dense, ticket=self.ticket, device=device, batch_size=plan.batch_size,
                             n_boot=plan.n_boot, seed=plan.seed, n_strata=plan.groups.n_strata,
                             n_classes=2 if plan.n_outputs == 1 else plan.n_outputs, modality=plan.modality)

    def audit_frame(self, frame: pd.DataFrame, *, first_row: int,
                    progress: Callable[[int], None] | None = None) -> AuditState:
        """The state of ``frame``'s rows, whose ids are ``first_row``, ``first_row + 1``, ..."""
        plan = self.plan
        state = AuditState(plan, self.worker)
        for start in range(0, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start:start + CHUNK_ROWS]
            inputs = plan.modality.inputs(chunk)
            labels, _ = encode_target(chunk, plan.target, n_outputs=plan.n_outputs, labels=plan.labels,
                                      require_every_class=False)
            strata = plan.groups.stratum_of(chunk)
            if (strata < 0).any():
                fail("a row has a combination of sensitive values the first pass did not see; the data changed "
                     "while it was read. Audit a stable copy.")
            rows = np.arange(first_row + start, first_row + start + len(chunk))
            observing = state.observer(inputs)
            passed = forward_both(self.dense, self.ticket, inputs, batch_size=plan.batch_size,
                                  observer=observing[1] if observing else None, progress=progress)
            if state.unseen is not None:
                state.unseen.update(plan.modality.unseen(chunk), strata)
            clipped = plan.modality.clipped(inputs)
            if clipped is not None and clipped.any():
                state.clipped += np.bincount(strata[clipped], minlength=len(state.clipped))
            observed = {observing[0]: passed.observed} if observing and passed.observed is not None else {}
            state.update(Batch(rows=rows, frame=chunk, inputs=inputs, labels=labels, strata=strata,
                               proba_dense=passed.proba_dense, proba_ticket=passed.proba_ticket, observed=observed))
        state.close()
        return state

    def audit_fragment(self, source: FileSource, fragment: Fragment, *, first_row: int, limit: int,
                       split: str | None) -> AuditState:
        """The state of one fragment's rows (after ``split``, at most ``limit``); errors name the file."""
        try:
            frame = select_rows(read_fragment(source, fragment), split=split)
            return self.audit_frame(frame.iloc[:limit], first_row=first_row)
        except RowsProblem:  # counted again over every row by the driver, with row numbers of the whole data
            raise
        except InvalidInputError as error:
            if fragment.path in str(error):
                raise
            where = f"row group {fragment.row_group} of " if fragment.row_group is not None else ""
            raise InvalidInputError(f"in {where}'{fragment.path}': {error}") from None


def select_rows(frame: pd.DataFrame, *, split: str | None) -> pd.DataFrame:
    """The rows ``--split COL=VALUE`` keeps (all rows without it)."""
    if split is None:
        return frame
    column, _, value = split.partition("=")
    return frame[matches(frame[column], value)].reset_index(drop=True)


@dataclass(frozen=True)
class FragmentScan:
    """What the first pass learns from some rows: how many, and each sensitive combination's count."""

    rows: int
    strata: pd.DataFrame
    """One row per distinct combination of sensitive labels (columns named as the sensitive columns)."""
    counts: np.ndarray
    """Rows per combination (kept apart from ``strata``, so no column name can collide with it)."""


def scan_frame(frame: pd.DataFrame, sensitive: list[str]) -> FragmentScan:
    keys = distinct_strata(frame, sensitive, keep_duplicates=True)
    sizes = keys.groupby(sensitive, sort=False, dropna=False).size()
    strata = sizes.index.to_frame(index=False)  # columns named as the sensitive columns, whatever they are
    return FragmentScan(len(frame), strata, sizes.to_numpy(dtype=np.int64))


def scan_fragment(source: FileSource, fragment: Fragment, *, sensitive: list[str], split: str | None,
                  limit: int | None = None) -> FragmentScan:
    """Read only the sensitive (and split) columns of a fragment (its first ``limit`` kept rows)."""
    columns = list(dict.fromkeys([*sensitive, *([split.partition("=")[0]] if split else [])]))
    frame = select_rows(read_fragment(source, fragment, columns=columns), split=split)
    return scan_frame(frame.iloc[:limit], sensitive)
