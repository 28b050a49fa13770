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
from ..analyses.attention import ATTENTION_STREAM, AttentionStream
from ..analyses.attention_capture import AttentionRecorder
from ..analyses.attributions import ProxyMoments, RowSample
from ..analyses.cells import CellAccumulator
from ..analyses.disagreement import FlipExamples
from ..analyses.predict import Features, ModelRunner, resolve_device
from ..analyses.streaming import BootstrapSums
from ..data import Groups, distinct_strata
from ..exceptions import InvalidInputError
from ..inputs import build_features, build_text_inputs, encode_target
from ..preprocess import Preprocessor, UnseenCategories
from ..values import matches
from .sources import FileSource, Fragment, read_fragment

CHUNK_ROWS = 65_536
"""Rows turned into model inputs at a time (memory bound per worker; fixed, so results never depend on it)."""


@dataclass(frozen=True, eq=False)
class AuditPlan:
    """Everything a worker needs to audit any fragment: both models, how to read inputs, the groups."""

    dense: nn.Module
    ticket: nn.Module
    target: str
    features: list[str] | None
    preprocess: Preprocessor | None
    text: str | None
    tokenizer: Any
    labels: tuple[str, ...] | None
    n_outputs: int
    groups: Groups
    analyses: tuple[str, ...]
    n_boot: int
    seed: int
    ece_bins: int
    batch_size: int
    device: str
    width: int
    sample_take: np.ndarray | None
    attribution_target: str


class AuditState:
    """Every analysis's accumulator for some rows; ``merge`` adds another shard's."""

    def __init__(self, plan: AuditPlan, *, n_classes: int, heads_per_layer: list[int] | None) -> None:
        n_strata = plan.groups.n_strata
        self.rows = 0
        self.cells = CellAccumulator(n_classes=n_classes, bins=plan.ece_bins)
        self.examples = FlipExamples()
        onehot = plan.preprocess.onehot_columns if plan.preprocess is not None else []
        self.unseen = UnseenCategories(columns=onehot, n_strata=n_strata) if onehot else None
        self.sample = self.moments = None
        if "attributions" in plan.analyses and plan.sample_take is not None:
            self.sample = RowSample(take=plan.sample_take, seed=plan.seed, width=plan.width)
            self.moments = ProxyMoments(n_strata=n_strata, width=plan.width)
        self.attention = None
        self.heads_per_layer = heads_per_layer
        if heads_per_layer is not None:
            self.attention = BootstrapSums(n_strata=n_strata, width=3 * sum(heads_per_layer), n_boot=plan.n_boot,
                                           seed=plan.seed, stream=ATTENTION_STREAM)

    def merge(self, other: AuditState) -> AuditState:
        self.rows += other.rows
        self.cells.merge(other.cells)
        self.examples.merge(other.examples)
        if self.unseen is not None and other.unseen is not None:
            self.unseen.merge(other.unseen)
        if self.sample is not None and other.sample is not None:
            self.sample.merge(other.sample)
        if self.moments is not None and other.moments is not None:
            self.moments.merge(other.moments)
        if other.attention is not None:
            if self.attention is None:  # this shard had no rows, so no attention layout yet
                self.attention, self.heads_per_layer = other.attention, other.heads_per_layer
            else:
                self.attention.merge(other.attention)
        return self


class ShardAuditor:
    """Both models on this worker's device, ready to audit fragments (built once per worker)."""

    def __init__(self, plan: AuditPlan) -> None:
        self.plan = plan
        device = resolve_device(plan.device)
        self.dense = ModelRunner(plan.dense, device=device)
        self.ticket = ModelRunner(plan.ticket, device=device)
        self.recorders = None
        if "attention" in plan.analyses:
            self.recorders = (AttentionRecorder(self.dense.module, device=device),
                              AttentionRecorder(self.ticket.module, device=device))
        self.heads_per_layer: list[int] | None = None

    def new_state(self) -> AuditState:
        n_classes = 2 if self.plan.n_outputs == 1 else self.plan.n_outputs
        return AuditState(self.plan, n_classes=n_classes, heads_per_layer=self.heads_per_layer)

    def model_inputs(self, frame: pd.DataFrame) -> Features:
        plan = self.plan
        if plan.text is not None:
            return build_text_inputs(frame, column=plan.text, tokenizer=plan.tokenizer,
                                     max_length=getattr(plan.tokenizer, "model_max_length", None))
        return build_features(frame, target=plan.target, features=plan.features, preprocess=plan.preprocess)[0]

    def audit_frame(self, frame: pd.DataFrame, *, first_row: int,
                    progress: Callable[[int], None] | None = None) -> AuditState:
        """The state of ``frame``'s rows, whose ids are ``first_row``, ``first_row + 1``, ..."""
        plan = self.plan
        streams: AttentionStream | None = None
        state: AuditState | None = None
        for start in range(0, len(frame), CHUNK_ROWS):
            chunk = frame.iloc[start:start + CHUNK_ROWS]
            features = self.model_inputs(chunk)
            labels, _ = encode_target(chunk, plan.target, n_outputs=plan.n_outputs, labels=plan.labels,
                                      require_every_class=False)
            strata = plan.groups.stratum_of(chunk)
            if (strata < 0).any():
                fail("a row has a combination of sensitive values the first pass did not see; the data changed "
                     "while it was read. Audit a stable copy.")
            rows = np.arange(first_row + start, first_row + start + len(chunk))
            if self.recorders is not None and streams is None:
                streams = AttentionStream(*self.recorders, probe=features, n_strata=plan.groups.n_strata,
                                          n_boot=plan.n_boot, seed=plan.seed, batch_size=plan.batch_size)
                self.heads_per_layer = streams.heads_per_layer
            if state is None:
                state = self.new_state()
                if streams is not None:
                    state.attention = streams.sums
            proba_dense = self.dense.probabilities(features, batch_size=plan.batch_size, progress=progress)
            proba_ticket = self.ticket.probabilities(features, batch_size=plan.batch_size, progress=progress)
            state.rows += len(chunk)
            state.cells.update(labels=labels, proba_dense=proba_dense, proba_ticket=proba_ticket, stratum=strata)
            state.examples.update(rows=rows, labels=labels, proba_dense=proba_dense, proba_ticket=proba_ticket,
                                  stratum=strata)
            if state.unseen is not None and plan.preprocess is not None:
                state.unseen.update(plan.preprocess.unseen(chunk), strata)
            if state.sample is not None and state.moments is not None:
                assert isinstance(features, np.ndarray)
                targets = labels if plan.attribution_target == "label" else np.argmax(proba_dense, 1)
                state.sample.update(rows=rows, strata=strata, features=features, targets=targets)
                state.moments.update(features, strata)
            if streams is not None:
                streams.update(features, strata, rows)
        if state is None:
            state = self.new_state()
        if state.attention is not None:
            state.attention.finish()
        return state

    def audit_fragment(self, source: FileSource, fragment: Fragment, *, first_row: int, limit: int,
                       split: str | None) -> AuditState:
        """The state of one fragment's rows (after ``split``, at most ``limit``); errors name the file."""
        try:
            frame = select_rows(read_fragment(source, fragment), split=split)
            return self.audit_frame(frame.iloc[:limit], first_row=first_row)
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
