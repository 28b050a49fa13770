"""The one shape every analysis has (``Analysis``), what it reads (``Batch``, ``Worker``, contexts),
and shared pieces of results: JSON-safe numbers and the settings every analysis needs.

An analysis declares itself once (name, help line, JSON-schema fragment, template partial) and
implements up to four steps, each optional but ``finish``:

- ``accumulator(worker, planned)`` on every worker: a mergeable state that ``update``s from each
  batch of rows (both models' probabilities, the model inputs, the raw rows) and ``merge``s with
  the state of the next fragment, in fragment order — so results never depend on the engine;
- ``finish(state, context)`` on the driver: a frozen result with ``to_dict()``;
- ``candidates(result, policy)``: the policy checks it contributes (decided with every other check);
- ``notes(result, context)``: plain-words notes for the report.

This module stays light (no torch, pandas or analysis library): the CLI's help and ``ticketaudit schema``
read the registry without running anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from ..config import Policy
    from ..data import Groups
    from ..modalities.base import Modality
    from ..tickets.load import LoadedModel

    from .cells import CellTable
    from .predict import ModelRunner, Predictions


def number(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become None (JSON null = undefined)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def interval(low: Any, high: Any) -> list[float | None]:
    return [number(low), number(high)]


@dataclass(frozen=True)
class Estimate:
    """One estimated quantity: its value, its interval and, for a change, the p-value of 'no change'."""

    value: float
    ci: tuple[float, float]
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": number(self.value), "ci": interval(*self.ci)}
        if self.p_value is not None:
            out["p_value"] = number(self.p_value)
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class AnalysisSettings:
    """What every analysis needs besides the rows: classes, groups and the statistical settings."""

    class_names: tuple[str, ...]
    groups: Groups
    confidence: float
    min_group_size: int
    n_boot: int
    seed: int
    ece_bins: int


@dataclass(frozen=True, eq=False)
class AnalysisInputs(AnalysisSettings):
    """Settings plus per-row inputs: labels and both models' predictions (every row in memory; the
    sharded path feeds the same analyses from merged accumulators instead)."""

    labels: np.ndarray = field(kw_only=True)
    predictions: Predictions = field(kw_only=True)

    @property
    def settings(self) -> AnalysisSettings:
        return self


@dataclass(frozen=True, eq=False, kw_only=True)
class Batch:
    """Some rows of the audit data as every accumulator sees them (ids ascending, fixed by the data)."""

    rows: np.ndarray
    """Global row ids: the same whichever engine, worker or batch size read them."""
    frame: pd.DataFrame
    """The raw rows (every column of the table, as read)."""
    inputs: Any
    """The model inputs the modality built from ``frame`` (a float array, or tokens)."""
    labels: np.ndarray
    strata: np.ndarray
    """Each row's stratum: its combination of sensitive values (``Groups``)."""
    proba_dense: np.ndarray
    proba_ticket: np.ndarray
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-row values an accumulator read on the models' forward pass (``ForwardObserver``), by analysis name."""


@dataclass(eq=False, kw_only=True)
class Worker:
    """One worker's view of the audit: both models on its device and a cache for what an analysis
    builds once per worker (hooks, recorders); accumulators must not keep it (they travel between processes)."""

    dense: ModelRunner
    ticket: ModelRunner
    device: torch.device
    batch_size: int
    n_boot: int
    seed: int
    n_strata: int
    n_classes: int
    modality: Modality
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False, kw_only=True)
class AuditContext:
    """What the driver knows before the rows run: both models, the modality, the groups and the options."""

    dense: LoadedModel
    ticket: LoadedModel
    modality: Modality
    groups: Groups
    population: np.ndarray
    """Rows per stratum."""
    probe: pd.DataFrame
    """The first audit row, every column (to check the columns an analysis reads before any model runs)."""
    total_rows: int
    sensitive: tuple[str, ...]
    target: str
    seed: int
    n_boot: int
    batch_size: int
    device: torch.device
    attribution: Any
    """The ``analyses.attributions.AttributionSettings`` (by name only: this layer sits below the analyses)."""
    precision: str = "float64"
    """What the models run in (resolved from ``--precision``): float64, float32 or bfloat16."""
    precision_reason: str = "requested"
    """Why: requested, or ``auto``'s rule with the audit's estimated cost."""
    thumbnails: bool = True
    """Whether image reports may embed small copies of audited images (``--no-thumbnails``: never)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class FinishContext:
    """What ``finish`` reads on the driver: the audit, the statistical settings and the merged cells."""

    audit: AuditContext
    settings: AnalysisSettings
    cells: CellTable
    """Per-stratum counts of label x dense x ticket prediction (and calibration sums), merged."""
    results: dict[str, Any]
    """Results of the analyses finished before this one (in registry order)."""
    say: Callable[[str], None] = field(default=lambda _: None)
    """Tell the user what a long step is about to do (shown as progress; never in the report)."""


class Accumulator(Protocol):
    """A mergeable per-shard state: ``update`` from each batch, ``merge`` the next fragment's state.

    One that reads the models' internals also has ``observer(inputs)``: a ``predict.ForwardObserver`` that
    runs both models on each batch of the predictions' own forward pass (so the models run once); what it
    returns per row reaches ``update`` as ``batch.observed[name]``."""

    def update(self, batch: Batch) -> None: ...

    def merge(self, other: Any) -> Any: ...


class Result(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class Analysis:
    """Base of every analysis, built-in or plug-in; subclass it and set the class attributes.

    ``name`` is what ``--analyses`` takes and the key of the analysis's section in the JSON report;
    ``template`` is its HTML partial (a file name under ticketaudit's templates, or a ``Path`` to a
    plug-in's own file) rendered with ``r`` (the whole JSON document) and ``section`` (its part).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    """One line for ``--help`` and error messages."""
    order: ClassVar[int] = 100
    """Its place in the report (lower first)."""
    default: ClassVar[bool] = True
    """Runs when ``--analyses`` is left out and it applies to the models."""
    required: ClassVar[bool] = False
    """Runs in every audit (the gate needs it)."""
    weight_wise: ClassVar[str | None] = None
    """Why it compares weights one by one (so it is skipped on a ticket of other shapes), if it does."""
    template: ClassVar[str | Path | None] = None
    schema: ClassVar[dict[str, Any]] = {"type": "object"}
    """The JSON-schema fragment of its section (the report schema includes it under ``name``)."""
    gates: ClassVar[dict[str, str]] = {}
    """Optional policy keys it evaluates, each with the id (family) of the checks it makes: a key the policy sets
    that yields no check becomes a ``not_evaluated`` check, so no gate a user asked for disappears."""

    def runs_by_default(self, modality: Any) -> bool:
        """Whether it runs when ``--analyses`` is left out, on this modality (``default``; an analysis whose cost on
        some model kind is out of proportion may ask to be named there)."""
        return self.default

    def unavailable(self, *, dense: LoadedModel, ticket: LoadedModel, modality: Modality) -> str | None:
        """Why it cannot run on these models, as words that follow "--analyses NAME" (e.g. "needs a model with
        attention layers"); None: it can. ``modality`` is the modality's class."""
        return None

    def plan(self, context: AuditContext) -> Any:
        """Driver-side preparation before the rows run (e.g. how many rows to sample per stratum);
        given to every worker's ``accumulator``, so it must pickle."""
        return None

    def accumulator(self, worker: Worker, planned: Any) -> Accumulator | None:
        """A fresh, empty state for one fragment (None: the analysis reads only the merged cells)."""
        return None

    def finish(self, state: Any, context: FinishContext) -> Result:
        """The result from the merged state of every row."""
        raise NotImplementedError(f"analysis {self.name!r} does not implement finish()")

    def candidates(self, result: Any, policy: Policy) -> list[Any]:
        """The policy checks it contributes (``analyses.candidates.Candidate``; decided with every other analysis's)."""
        return []

    def notes(self, result: Any, context: FinishContext) -> list[str]:
        """Plain-words notes about its result for the report."""
        return []

    def why_not_evaluated(self, result: Any, key: str) -> str:
        """Why its gate ``key`` made no check on this result (it ran): words that end a sentence."""
        return f"the {self.name} analysis ran but had no estimate to gate {key} on (see the report's notes)"

    def schema_properties(self) -> dict[str, Any]:
        """Its entries of the report schema's top-level properties (by default ``{name: schema}``)."""
        return {self.name: self.schema}

    def document(self, result: Any, audit: Any) -> dict[str, Any]:
        """Its top-level entries of the JSON report (by default ``{name: result.to_dict()}``)."""
        return {self.name: result.to_dict()}
