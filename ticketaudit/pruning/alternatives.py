"""Fairness-aware alternatives at the same sparsity: find candidate tickets with each method (and
recovery), compare them with the dense model on the same held-out rows, recommend one.

Rows that choose masks or fine-tune (training data, or the calibration half of the audit data) are
never the rows that compare the candidates.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._validation import check_int, fail
from ..analyses import stats
from ..analyses.base import AnalysisInputs, Estimate, interval, number
from ..analyses.cost import row_cost
from ..analyses.performance import PerformanceResult, analyse_performance
from ..analyses.predict import ModelRunner, Predictions
from ..checks import Check, evaluate_policy, verdict_of
from ..config import AuditConfig, Policy
from ..data import build_groups
from ..inputs import build_features, encode_target
from ..tickets.load import LoadedModel
from ..tickets.mask import Mask, prunable_parameters
from .methods import (METHODS, MSG_NO_CHAIN, SALIENCY_ROWS, Calibration, attention_heads, check_methods, choose_mask,
                      conv_chain, linear_chain)
from .budget import BudgetPlan, Job, Workload, plan
from .recover import RECOVERY, RecoverySettings, recover
from .tokens import wrapped

AUDITED = "audited ticket"
DEFAULT_BUDGET_SECONDS = 600.0
"""``--alternatives-budget``: ten minutes of estimated work on 2 CPU cores."""
SEEDS_JOB = "more seeds of every method and the compute-fair comparison"


@dataclass(frozen=True, kw_only=True)
class PruneSettings:
    """What to search: methods at ``sparsity`` (None: the audited ticket's per-layer densities),
    recovery, iterative ``rounds`` (rewinding to the dense weights or not), ``seeds`` per method,
    and an optional ``sweep`` of sparsities for critical-sparsity curves."""

    methods: tuple[str, ...] = METHODS
    sparsity: float | None = None
    recover: str = "none"
    rounds: int = 1
    rewind_to: str = "dense"
    seeds: int = 1
    sweep: tuple[float, ...] = ()
    data_fractions: tuple[float, ...] = ()
    epochs: int = 3
    budget_seconds: float | None = DEFAULT_BUDGET_SECONDS
    """Estimated seconds the alternatives may take (``pruning.budget``; None: no budget)."""
    save_to: Path | None = None
    """Language models: the directory the candidates are saved in (Hugging Face directories, the evaluation items
    and each one's re-audit command); None: not saved."""
    save_to_named: bool = True
    """Whether the user named ``save_to`` (a classifier's alternatives are not saved: naming a directory for them
    is an error) or the command line filled its default."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", check_methods(list(self.methods)))
        if self.sparsity is not None and not (isinstance(self.sparsity, (int, float)) and 0 < self.sparsity < 1):
            fail(f"--sparsity must be in (0, 1), got {self.sparsity}: the share of prunable weights to remove, "
                 "e.g. 0.9.")
        if self.recover not in RECOVERY:
            fail(f"--recover '{self.recover}' is unknown. Choose from: {', '.join(RECOVERY)}.")
        check_int("--rounds", self.rounds, low=1, high=20)
        check_int("--seeds", self.seeds, low=1, high=20)
        check_int("--epochs", self.epochs, low=1, high=1000)
        if self.budget_seconds is not None and not (isinstance(self.budget_seconds, (int, float))
                                                    and self.budget_seconds > 0):
            fail(f"--alternatives-budget (prune: --budget) must be a positive number of seconds, got {self.budget_seconds}: "
                 "the estimated time the alternatives may take, e.g. 600.")
        if self.rewind_to not in ("dense", "none"):
            fail(f"--rewind-to must be 'dense' or 'none', got {self.rewind_to!r}.")
        for value in self.sweep:
            if not 0.0 < value < 1.0:
                fail(f"--sweep values must be sparsities in (0, 1), got {value}.")
        if any(b <= a for a, b in zip(self.sweep, self.sweep[1:])):
            fail("--sweep must be strictly increasing, e.g. 0.5,0.7,0.8,0.9,0.95.")
        if self.data_fractions and not self.sweep:
            fail("--data-fractions repeats the sparsity sweep on subsets of the training data: give --sweep too.")
        for value in self.data_fractions:
            if not 0.0 < value <= 1.0:
                fail(f"--data-fractions values must be shares of the training rows in (0, 1], got {value}.")


@dataclass(frozen=True, eq=False, kw_only=True)
class Candidate:
    """One candidate ticket, measured against the dense model on the evaluation rows."""

    name: str
    method: str
    recover: str
    seed: int | None
    sparsity: float
    accuracy: float
    accuracy_delta: Estimate
    worst_group: str
    worst_group_accuracy: Estimate
    gap_widening: Estimate
    max_excess_drop: tuple[str, Estimate] | None
    group_accuracy: dict[str, float]
    verdict: str
    """The policy's verdict on the evaluation rows: pass (every check shown within tolerance), fail, or inconclusive
    (no check fails, but the rows cannot show that all pass)."""
    failed_checks: tuple[str, ...]
    saved_to: str | None = None
    language: dict[str, Any] | None = None
    """Language models: the policy verdict, loss per token, the benchmark's scores and the paired accuracy change
    against the audited ticket (``pruning.language_alternatives``)."""
    mask: Mask | None = field(default=None, repr=False)
    module: nn.Module | None = field(default=None, repr=False)

    @property
    def passes(self) -> bool:
        """Shown to pass: an inconclusive candidate does not."""
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, "recover": self.recover, "seed": self.seed,
               "sparsity": number(self.sparsity), "accuracy": number(self.accuracy),
               "accuracy_delta": self.accuracy_delta.to_dict(), "worst_group": self.worst_group,
               "worst_group_accuracy": self.worst_group_accuracy.to_dict(),
               "gap_widening": self.gap_widening.to_dict(),
               "group_accuracy": {g: number(v) for g, v in self.group_accuracy.items()},
               "passes_policy": self.passes, "verdict": self.verdict, "failed_checks": list(self.failed_checks),
               "saved_to": self.saved_to}
        if self.language is not None:
            out["language"] = self.language
        if self.max_excess_drop is not None:
            out["max_excess_drop"] = {"group": self.max_excess_drop[0], **self.max_excess_drop[1].to_dict()}
        return out


@dataclass(frozen=True)
class SweepPoint:
    method: str
    sparsity: float
    accuracy: float
    group_drop: dict[str, tuple[float, float, float]]
    """Per group: accuracy drop (dense - candidate) and its interval."""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "sparsity": self.sparsity, "accuracy": number(self.accuracy),
                "group_drop": {g: {"value": number(v), "ci": interval(lo, hi)} for g, (v, lo, hi) in
                               self.group_drop.items()}}


@dataclass(frozen=True, eq=False, kw_only=True)
class AlternativesResult:
    """Candidates compared on the same evaluation rows, the sweep, and the recommendation."""

    split: str
    calibration_rows: int
    evaluation_rows: int
    dense_accuracy: float
    candidates: tuple[Candidate, ...]
    sweep: tuple[SweepPoint, ...]
    critical: dict[str, dict[str, dict[str, float | None]]]
    critical_by_fraction: dict[str, dict[str, dict[str, dict[str, float | None]]]]
    """Per share of the calibration rows: critical sparsity per method and group (``--data-fractions``)."""
    recommendation: str
    recommended: str | None
    tolerance: float
    notes: tuple[str, ...]
    compute_fair: dict[str, Any] | None = None
    """With ``seeds`` > 1: the dense ensemble of equal compute (K = round(M (1 - s)), at least 1) against each
    method's M-ticket ensemble, per group."""
    budget: BudgetPlan | None = None
    """What ran within ``--alternatives-budget`` and what was skipped."""

    def to_dict(self) -> dict[str, Any]:
        return {**({"compute_fair": self.compute_fair} if self.compute_fair is not None else {}),
                **({"budget": self.budget.to_dict()} if self.budget is not None else {}),
                "split": self.split, "calibration_rows": self.calibration_rows,
                "evaluation_rows": self.evaluation_rows, "dense_accuracy": number(self.dense_accuracy),
                "candidates": [c.to_dict() for c in self.candidates], "sweep": [p.to_dict() for p in self.sweep],
                "critical_sparsity": self.critical, "critical_sparsity_by_data_fraction": self.critical_by_fraction,
                "recommendation": self.recommendation,
                "recommended": self.recommended, "tolerance": self.tolerance, "notes": list(self.notes)}


@dataclass(frozen=True, eq=False)
class _Rows:
    """Model inputs, labels and groups of one table (calibration or evaluation)."""

    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    frame: pd.DataFrame


def split_by_group(frame: pd.DataFrame, sensitive: list[str], *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calibration, evaluation) halves, each intersectional group split in two at random."""
    strata = build_groups(frame, sensitive).stratum_of_row
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1]))
    calibration = np.zeros(len(frame), dtype=bool)
    for stratum in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == stratum))
        calibration[rows[: len(rows) // 2]] = True
    return frame[calibration].reset_index(drop=True), frame[~calibration].reset_index(drop=True)


InputsOf = Callable[[pd.DataFrame], np.ndarray]
"""A table's rows as one model-input array (tabular features; decoded images)."""


def _rows(frame: pd.DataFrame, *, dense: LoadedModel, target: str, inputs_of: InputsOf, n_outputs: int) -> _Rows:
    matrix = inputs_of(frame)
    labels, class_names = encode_target(frame, target, n_outputs=n_outputs, labels=dense.labels)
    return _Rows(matrix, labels, class_names, frame)


def _summarise(name: str, method: str, recover_name: str, seed: int | None, sparsity: float,
               performance: PerformanceResult, policy: Policy, *, mask: Mask | None,
               module: nn.Module | None, checks: tuple[Check, ...] | None = None) -> Candidate:
    """One candidate's summary; ``checks``: the policy's decisions when the caller made them with other analyses'
    checks too (a language model's benchmark bias checks), else the performance checks alone."""
    overall = performance.overall.metrics["accuracy"]
    sufficient = [g for g in performance.subgroups if not g.insufficient]
    worst = min(sufficient or performance.subgroups, key=lambda g: (g.metrics["accuracy"].ticket, g.group))
    gaps = [g for g in performance.gaps if g.metric == "accuracy"]
    widest = max(gaps, key=lambda g: g.widening if np.isfinite(g.widening) else -np.inf) if gaps else None
    drops = [(g.group, g.excess_drop) for g in sufficient if g.excess_drop is not None]
    largest = max(drops, key=lambda d: d[1].estimate) if drops else None
    checks = checks if checks is not None else evaluate_policy(policy, performance)
    w = worst.metrics["accuracy"]
    return Candidate(
        name=name,
        method=method,
        recover=recover_name,
        seed=seed,
        sparsity=sparsity,
        accuracy=float(overall.ticket),
        accuracy_delta=Estimate(float(overall.delta), tuple(map(float, overall.ci))),
        worst_group=worst.group,  # type: ignore[arg-type]
        worst_group_accuracy=Estimate(float(w.ticket), tuple(map(float, w.ticket_ci))),  # type: ignore[arg-type]
        gap_widening=Estimate(float(widest.widening), widest.ci)
        if widest is not None
        else Estimate(float("nan"), (np.nan, np.nan)),
        max_excess_drop=(
            largest[0],
            Estimate(float(largest[1].estimate), (float(largest[1].low), float(largest[1].high))),
        )
        if largest is not None
        else None,
        group_accuracy={g.group: float(g.metrics["accuracy"].ticket) for g in performance.subgroups},
        verdict=verdict_of(checks, policy=policy) if checks else "inconclusive",
        failed_checks=tuple(c.id for c in checks if not c.passed),
        saved_to=None,
        mask=mask,
        module=module,
    )


class _Evaluator:
    """Runs the dense model once on the evaluation rows; measures any candidate against it."""

    def __init__(
        self,
        dense: ModelRunner,
        rows: _Rows,
        *,
        sensitive: list[str],
        policy: Policy,
        n_boot: int,
        seed: int,
        batch_size: int,
    ) -> None:
        self.rows, self.policy, self.batch_size = rows, policy, batch_size
        self.device = dense.device
        self.dense_proba = dense.probabilities(rows.features, batch_size=batch_size)
        self.groups = build_groups(rows.frame, sensitive)
        self.n_boot, self.seed = n_boot, seed

    def probabilities(self, module: nn.Module) -> np.ndarray:
        return ModelRunner(module, device=self.device).probabilities(self.rows.features, batch_size=self.batch_size)

    def performance(self, proba: np.ndarray, *, reference: np.ndarray | None = None) -> PerformanceResult:
        """``proba`` against the dense model's probabilities (or ``reference``'s), paired on the same rows."""
        inputs = AnalysisInputs(
            class_names=self.rows.class_names,
            groups=self.groups,
            confidence=self.policy.confidence,
            min_group_size=self.policy.min_group_size,
            n_boot=self.n_boot,
            seed=self.seed,
            ece_bins=AuditConfig().ece_bins,
            labels=self.rows.labels,
            predictions=Predictions(self.dense_proba if reference is None else reference, proba),
        )
        return analyse_performance(inputs)


def _zeros_share(module: nn.Module) -> float:
    """The contract's sparsity of a candidate: the share of exact zeros among its prunable weights (a weight the
    dense model already held at zero, such as an embedding's padding row, counts though its mask keeps it)."""
    params = list(prunable_parameters(module).values())
    total = sum(p.numel() for p in params)
    return sum(int((p == 0).sum()) for p in params) / total if total else 0.0


def _sparsity_of(mask: Mask) -> float:
    return 1 - mask.kept / mask.total


def _schedule(target: float | dict[str, float], rounds: int, r: int) -> float | dict[str, float]:
    """Sparsity after round r of ``rounds``: density shrinks geometrically to the target."""
    if isinstance(target, dict):
        return {n: 1 - (1 - s) ** (r / rounds) for n, s in target.items()}
    return 1 - (1 - target) ** (r / rounds)


def find_ticket(
    method: str,
    dense: nn.Module,
    *,
    sparsity: float | dict[str, float],
    calibration: Calibration,
    settings: PruneSettings,
    seed: int,
    min_group_rows: int,
) -> tuple[nn.Module, Mask]:
    """``settings.rounds`` rounds of: choose the mask, rewind (to the dense weights, or not), recover."""
    mask: Mask | None = None
    current = dense
    recovery = RecoverySettings(epochs=settings.epochs, seed=seed)
    for r in range(1, settings.rounds + 1):
        start = dense if settings.rewind_to == "dense" else current
        recoveries: dict[bytes, nn.Module] = {}  # the chosen mask was already recovered when it was judged

        def recovered(candidate: Mask, start: nn.Module = start,
                      recoveries: dict[bytes, nn.Module] = recoveries) -> nn.Module:
            key = b"".join(tensor.numpy().tobytes() for tensor in candidate.values())
            if key not in recoveries:
                recoveries[key] = recover(candidate.apply(start), candidate, dense=dense, data=calibration,
                                          method=settings.recover, settings=recovery)
            return recoveries[key]

        mask = choose_mask(
            method,
            current,
            sparsity=_schedule(sparsity, settings.rounds, r),
            calibration=calibration,
            min_group_rows=min_group_rows,
            previous=mask if method != "structured" else None,
            recovered=recovered if settings.recover != "none" else None,
        )
        current = recovered(mask)
    assert mask is not None
    return mask.apply(current), mask


def check_training_data(settings: PruneSettings, *, frame: pd.DataFrame, train_frame: pd.DataFrame | None) -> None:
    """Recovery needs training data, and training data must have the audit data's columns."""
    if settings.recover != "none" and train_frame is None:
        fail(
            f"--recover {settings.recover} fine-tunes, which needs training data: pass --train-data TABLE "
            "(rows not used to compare the candidates), or use --recover none for mask-only methods."
        )
    if train_frame is not None:
        missing = [c for c in list(frame.columns) if c not in train_frame.columns]
        if missing:
            fail(
                f"the training data has different columns from the audit data: '{missing[0]}' is missing. "
                "Give training data with the same columns."
            )


@dataclass(frozen=True, eq=False)
class _Setup:
    """What every candidate is made from and measured on: the models, the rows of each half, the evaluator."""

    dense: LoadedModel
    audited: LoadedModel | None
    dense_ensemble: list[LoadedModel]
    methods: list[str]
    split: str
    calibration_frame: pd.DataFrame
    evaluation_frame: pd.DataFrame
    evaluation: Any
    calibration: Calibration
    evaluator: _Evaluator
    notes: list[str]
    workload: Workload


def find_alternatives(
    dense: LoadedModel,
    *,
    frame: pd.DataFrame,
    target: str,
    sensitive: list[str],
    features: list[str] | None,
    settings: PruneSettings,
    policy: Policy,
    seed: int,
    n_boot: int,
    train_frame: pd.DataFrame | None = None,
    audited: LoadedModel | None = None,
    batch_size: int = 1024,
    explicit_methods: bool = True,
    inputs_of: InputsOf | None = None,
    dense_ensemble: Sequence[LoadedModel] = (),
) -> AlternativesResult:
    """Every method's candidate(s) and the audited ticket, compared on the same evaluation rows. ``inputs_of``
    maps a table to the model's inputs (default: the tabular features of ``features`` / preprocess.json).
    ``dense_ensemble``: more dense models for the compute-fair comparison of ``settings.seeds`` > 1 (without
    them, and with ``train_frame``, the missing ones are trained here from scratch)."""
    if inputs_of is None:
        def inputs_of(table: pd.DataFrame) -> np.ndarray:
            return build_features(table, target=target, features=features, preprocess=dense.preprocess)[0]

    setup = _setup(dense, frame=frame, target=target, sensitive=sensitive, settings=settings, policy=policy, seed=seed,
                   n_boot=n_boot, train_frame=train_frame, audited=audited, batch_size=batch_size,
                   explicit_methods=explicit_methods, inputs_of=inputs_of, dense_ensemble=dense_ensemble)
    sparsity, overall = _target_sparsity(settings, setup)
    budget = _budget_plan(setup, settings, overall=overall)
    settings = _within(settings, budget)
    if note := budget.note():
        setup.notes.append(note)
    candidates = _audited_candidate(setup, overall, policy)
    ensembles: list[tuple[Candidate, np.ndarray]] = []  # each method's ensemble of its seeds' tickets (seeds > 1)
    for method in [m for m in setup.methods if budget.runs(m)]:
        made, ensemble = _method_candidates(setup, method, sparsity=sparsity, overall=overall, settings=settings,
                                            policy=policy, seed=seed)
        candidates += made
        if ensemble is not None:
            ensembles.append(ensemble)
            candidates.append(ensemble[0])
    compute_fair = None
    if settings.seeds > 1:
        reference, compute_fair = _compute_fair(setup, ensembles, settings=settings, policy=policy, seed=seed,
                                                trained_here=train_frame is not None)
        candidates.append(reference)
    return _result(setup, candidates, settings=settings, policy=policy, seed=seed, compute_fair=compute_fair,
                   budget=budget)


def _budget_plan(setup: _Setup, settings: PruneSettings, *, overall: float) -> BudgetPlan:
    """The alternatives' jobs in priority order, each priced by ``pruning.budget``: the audited ticket, one candidate
    per method, more seeds, each method's sweep, the sweeps on shares of the training rows."""
    work = setup.workload

    def candidate(method: str, fraction: float = 1.0) -> float:
        return work.candidate_seconds(method, recover=settings.recover, epochs=settings.epochs,
                                      rounds=settings.rounds, fraction=fraction)

    jobs = [Job(AUDITED, work.evaluation_seconds(), required=True)] if setup.audited is not None else []
    jobs += [Job(method, candidate(method), required=i == 0) for i, method in enumerate(setup.methods)]
    if settings.seeds > 1:
        dense_models = compute_equivalent(settings.seeds, overall) - 1  # at most this many trained for compute-fair
        jobs.append(Job(SEEDS_JOB, sum((settings.seeds - 1) * candidate(m) for m in setup.methods)
                        + dense_models * work.recovery_seconds("finetune", settings.epochs)
                        + (len(setup.methods) + 1) * work.evaluation_seconds()))
    jobs += [Job(_sweep_job(method), len(settings.sweep) * candidate(method))
             for method in setup.methods if settings.sweep]
    jobs += [Job(_fraction_job(fraction), sum(len(settings.sweep) * candidate(m, fraction) for m in setup.methods))
             for fraction in settings.data_fractions]
    return plan(jobs, budget_seconds=settings.budget_seconds)


def _sweep_job(method: str) -> str:
    return f"sparsity sweep of {method}"


def _fraction_job(fraction: float) -> str:
    return f"sparsity sweep on {fraction:g} of the training rows"


def _within(settings: PruneSettings, budget: BudgetPlan) -> PruneSettings:
    """The settings with what the budget skipped taken out: one seed, fewer shares of the training rows."""
    sweep = settings.sweep if any(budget.runs(_sweep_job(m)) for m in settings.methods) else ()
    return dataclasses.replace(
        settings, seeds=settings.seeds if budget.runs(SEEDS_JOB) else 1, sweep=sweep,
        data_fractions=tuple(f for f in settings.data_fractions if sweep and budget.runs(_fraction_job(f))))


def _setup(dense: LoadedModel, *, frame: pd.DataFrame, target: str, sensitive: list[str], settings: PruneSettings,
           policy: Policy, seed: int, n_boot: int, train_frame: pd.DataFrame | None, audited: LoadedModel | None,
           batch_size: int, explicit_methods: bool, inputs_of: InputsOf,
           dense_ensemble: Sequence[LoadedModel]) -> _Setup:
    """The halves (training data, or the audit data split by group), the methods that apply, both halves' rows."""
    notes: list[str] = []
    dense, audited = wrapped(dense), (wrapped(audited) if audited is not None else None)
    ensemble = [wrapped(model) for model in dense_ensemble]
    check_training_data(settings, frame=frame, train_frame=train_frame)
    if train_frame is not None:
        calibration_frame, evaluation_frame = train_frame, frame
        split = "training data chose masks and fine-tuned; the audit data compares the candidates"
    else:
        calibration_frame, evaluation_frame = split_by_group(frame, sensitive, seed=seed)
        split = (
            "no training data given: the audit data was split by group into a calibration half (masks, "
            "fine-tuning) and an evaluation half (this comparison)"
        )
    methods = list(settings.methods)
    if "structured" in methods and not (linear_chain(dense.module) or conv_chain(dense.module)
                                        or attention_heads(dense.module)):
        if explicit_methods and list(settings.methods) != list(METHODS):
            fail(MSG_NO_CHAIN)
        methods.remove("structured")
        notes.append("structured pruning was skipped: the model's weights form no chain of nn.Linear layers, no chain "
                     "of convolutions ending in a linear layer, and it has no BERT-style attention heads.")
    dense_runner = ModelRunner(dense.module, device=torch.device("cpu"))
    probe = inputs_of(evaluation_frame.iloc[:1])
    n_outputs = dense_runner.output_width(probe)
    if n_outputs < 2:
        fail(
            "pruning alternatives need a model with one logit per class (2 or more outputs); this model has a "
            "single output (a sigmoid head). Audit it without --alternatives, or prune a model with a softmax head."
        )
    _check_dense_ensemble(ensemble, dense=dense, settings=settings, n_outputs=n_outputs, probe=probe)
    evaluation = _rows(evaluation_frame, dense=dense, target=target, inputs_of=inputs_of, n_outputs=n_outputs)
    calibration_rows = _rows(calibration_frame, dense=dense, target=target, inputs_of=inputs_of, n_outputs=n_outputs)
    calibration_groups = build_groups(calibration_frame, sensitive)
    calibration = Calibration(torch.tensor(calibration_rows.features, dtype=torch.float32),
                              torch.tensor(calibration_rows.labels), calibration_groups.stratum_of_row,
                              calibration_groups.strata_names)
    evaluator = _Evaluator(dense_runner, evaluation, sensitive=sensitive, policy=policy, n_boot=n_boot, seed=seed,
                           batch_size=batch_size)
    workload = Workload(row=row_cost(dense.module, probe), calibration_rows=len(calibration_rows.labels),
                        evaluation_rows=len(evaluation.labels),
                        saliency_rows=int(np.minimum(np.bincount(calibration.groups), SALIENCY_ROWS).sum()),
                        weights=sum(p.numel() for p in prunable_parameters(dense.module).values()),
                        per_row_gradients=bool(linear_chain(dense.module)))
    return _Setup(dense=dense, audited=audited, dense_ensemble=ensemble, methods=methods, split=split,
                  calibration_frame=calibration_frame, evaluation_frame=evaluation_frame, evaluation=evaluation,
                  calibration=calibration, evaluator=evaluator, notes=notes, workload=workload)


def _target_sparsity(settings: PruneSettings, setup: _Setup) -> tuple[float | dict[str, float], float]:
    """The sparsity every candidate prunes to (per layer when matching the audited ticket), and its overall share."""
    audited, dense = setup.audited, setup.dense
    if settings.sparsity is not None:
        return settings.sparsity, settings.sparsity
    if audited is not None and not audited.same_shape:
        overall = 1 - audited.nonzero_weights / dense.weights
        if not 0 < overall < 1:
            fail(
                f"the audited ticket keeps {audited.nonzero_weights} non-zero weights against the dense model's "
                f"{dense.weights}; alternatives at the same sparsity need a ticket smaller than the dense model."
            )
        setup.notes.append(
            "The audited ticket has its own, smaller architecture; candidates keep as many non-zero weights "
            "of the dense model as it has (overall sparsity {:.1%}).".format(overall)
        )
        return overall, overall
    if audited is not None:
        setup.notes.append(
            "Candidates match the audited ticket's density layer by layer (so global and layer-wise "
            "magnitude coincide); structured pruning matches its overall sparsity."
        )
        return {n: 1 - d for n, d in audited.mask.density().items()}, _sparsity_of(audited.mask)
    fail("give --sparsity (the share of weights to prune, in (0, 1)).")


def _audited_candidate(setup: _Setup, overall: float, policy: Policy) -> list[Candidate]:
    audited = setup.audited
    if audited is None:
        return []
    performance = setup.evaluator.performance(setup.evaluator.probabilities(audited.module))
    sparsity = _sparsity_of(audited.mask) if audited.same_shape else overall
    return [_summarise(AUDITED, "audited", "-", None, sparsity, performance, policy, mask=None, module=None)]


def _method_candidates(setup: _Setup, method: str, *, sparsity: float | dict[str, float], overall: float,
                       settings: PruneSettings, policy: Policy, seed: int
                       ) -> tuple[list[Candidate], tuple[Candidate, np.ndarray] | None]:
    """One method's ticket per seed (each seed but the first on resampled calibration rows) and, with several
    seeds, their ensemble (mean probabilities)."""
    made, probabilities = [], []
    for s in range(settings.seeds):
        rows = setup.calibration if s == 0 else _resampled(setup.calibration, seed=seed + s)
        method_sparsity = overall if method == "structured" else sparsity  # whole neurons: one overall share
        module, mask = find_ticket(method, setup.dense.module, sparsity=method_sparsity, calibration=rows,
                                   settings=settings, seed=seed + s, min_group_rows=policy.min_group_size)
        proba = setup.evaluator.probabilities(module)
        probabilities.append(proba)
        reached = _sparsity_of(mask)
        if method == "structured" and attention_heads(setup.dense.module) and s == 0 and reached < overall - 0.005:
            setup.notes.append(f"structured pruning removes whole attention heads, which hold part of the weights: it "
                               f"reached {reached:.1%} sparsity of the {overall:.1%} asked (one head is kept per "
                               "layer), so compare it with the others on accuracy per weight, not at equal sparsity.")
        name = method if settings.seeds == 1 else f"{method} #{s + 1}"
        if settings.recover != "none":
            name += f" + {settings.recover}"
        made.append(_summarise(name, method, settings.recover, seed + s, _zeros_share(module),
                               setup.evaluator.performance(proba), policy, mask=mask, module=module))
    if settings.seeds == 1:
        return made, None
    mean = np.mean(probabilities, axis=0)
    ensemble = _summarise(f"{method} ensemble of {settings.seeds}", method, settings.recover, None,
                          float(np.mean([c.sparsity for c in made])), setup.evaluator.performance(mean), policy,
                          mask=None, module=None)
    return made, (ensemble, mean)


def _compute_fair(setup: _Setup, ensembles: list[tuple[Candidate, np.ndarray]], *, settings: PruneSettings,
                  policy: Policy, seed: int, trained_here: bool) -> tuple[Candidate, dict[str, Any]]:
    """The K-model dense ensemble of equal compute, and each method's ensemble compared with it per group."""
    reference, reference_proba, compute_fair, note = _dense_ensemble(
        setup.dense, setup.dense_ensemble, evaluator=setup.evaluator,
        calibration=setup.calibration if trained_here else None, tickets=settings.seeds,
        sparsity=float(np.mean([c.sparsity for c, _ in ensembles])), settings=settings, seed=seed, policy=policy)
    compute_fair["comparisons"] = [
        compare_ensembles(setup.evaluator.performance(proba, reference=reference_proba), tickets=c.name,
                          dense=reference.name, confidence=policy.confidence)
        for c, proba in ensembles]
    setup.notes.append(note)
    return reference, compute_fair


def _result(setup: _Setup, candidates: list[Candidate], *, settings: PruneSettings, policy: Policy, seed: int,
            compute_fair: dict[str, Any] | None, budget: BudgetPlan) -> AlternativesResult:
    """The comparison with its sparsity sweeps (critical sparsity, per share of the training rows) and the
    recommendation."""
    evaluator, calibration = setup.evaluator, setup.calibration
    swept = [m for m in setup.methods if budget.runs(_sweep_job(m))]
    sweep = _sweep(swept, setup.dense.module, calibration, evaluator, settings, seed=seed,
                   min_rows=policy.min_group_size)
    tolerance = policy.max_overall_accuracy_drop
    by_fraction = {}
    for fraction in settings.data_fractions:
        subset = _subset(calibration, fraction, seed=seed)
        points = _sweep(setup.methods, setup.dense.module, subset, evaluator, settings, seed=seed,
                        min_rows=policy.min_group_size)
        by_fraction[f"{fraction:g}"] = critical_sparsity(points, tolerance)
    text, best = recommend(candidates, policy)
    return AlternativesResult(
        split=setup.split, calibration_rows=len(setup.calibration_frame), evaluation_rows=len(setup.evaluation_frame),
        dense_accuracy=float(np.mean(evaluator.dense_proba.argmax(1) == setup.evaluation.labels)),
        candidates=tuple(candidates), sweep=tuple(sweep), critical=critical_sparsity(sweep, tolerance),
        critical_by_fraction=by_fraction, recommendation=text, recommended=best, tolerance=tolerance,
        notes=tuple(setup.notes), compute_fair=compute_fair, budget=budget)


DENSE_ENSEMBLE = "dense-ensemble"


def _check_dense_ensemble(models: Sequence[LoadedModel], *, dense: LoadedModel, settings: PruneSettings,
                          n_outputs: int, probe: np.ndarray) -> None:
    """More dense models belong to ``--seeds`` > 1 and must score the dense model's classes, in its order."""
    if models and settings.seeds < 2:
        fail("--dense-ensemble is for the compute-fair comparison of a ticket ensemble: add --seeds M (M >= 2).")
    for other in models:
        if other.labels != dense.labels:
            fail(f"--dense-ensemble model '{other.source}' has labels {other.labels} but the dense model has "
                 f"{dense.labels}; every member must score the same classes in the same order.")
        width = ModelRunner(other.module, device=torch.device("cpu")).output_width(probe)
        if width != n_outputs:
            fail(f"--dense-ensemble model '{other.source}' outputs {width} value(s) per row but the dense model "
                 f"{n_outputs}; every member must score the same classes.")


def compute_equivalent(tickets: int, sparsity: float) -> int:
    """Dense models with the compute of ``tickets`` tickets at ``sparsity``: K = round(M (1 - s)), at least 1."""
    return max(1, int(np.floor(tickets * (1 - sparsity) + 0.5)))


def _dense_ensemble(dense: LoadedModel, given: Sequence[LoadedModel], *, evaluator: _Evaluator,
                    calibration: Calibration | None, tickets: int, sparsity: float, settings: PruneSettings,
                    seed: int, policy: Policy) -> tuple[Candidate, np.ndarray, dict[str, Any], str]:
    """The K-dense-model ensemble of equal compute: the dense model, then the given ones, then (with training
    rows) models trained here from scratch; its candidate, the JSON block and a note saying where it came from."""
    from .imp import TrainSettings, train

    k = compute_equivalent(tickets, sparsity)
    probabilities = [evaluator.dense_proba]
    members = [dense.sha256]
    for other in list(given)[: k - 1]:
        probabilities.append(evaluator.probabilities(other.module))
        members.append(other.sha256)
    trained = 0
    while len(probabilities) < k and calibration is not None:
        torch.manual_seed(seed + 1000 + trained)
        fresh = copy.deepcopy(dense.module)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        model, _ = train(fresh, calibration.features, calibration.labels,
                         settings=TrainSettings(epochs=settings.epochs, seed=seed + 1000 + trained))
        probabilities.append(evaluator.probabilities(model))
        trained += 1
        members.append(f"trained here #{trained}")
    name = f"{DENSE_ENSEMBLE} of {len(probabilities)}" + (f" (K = {k})" if len(probabilities) < k else "")
    mean = np.mean(probabilities, axis=0)
    candidate = _summarise(name, DENSE_ENSEMBLE, "-", None, 0.0, evaluator.performance(mean), policy, mask=None,
                           module=None)
    block = {"tickets": tickets, "sparsity": number(sparsity), "dense_models": k, "dense_members_sha256": members,
             "trained_here": trained, "epochs_if_trained": settings.epochs if trained else None}
    note = (f"Compute-fair comparison: {tickets} tickets at {sparsity:.0%} sparsity cost about as much as K = "
            f"round({tickets} x (1 - {sparsity:.2f})) = {k} dense model(s); '{name}' averages "
            f"{len(probabilities)}: the dense model"
            + (f", {len(probabilities) - 1 - trained} given with --dense-ensemble" if len(probabilities) - 1 - trained else "")
            + (f", {trained} trained here from scratch on the training rows ({settings.epochs} epochs, Adam)"
               if trained else "")
            + ("" if len(probabilities) == k else
               f". Only {len(probabilities)} of {k} were available: give --dense-ensemble DIR,... or --train-data")
            + ".")
    return candidate, mean, block, note


def compare_ensembles(paired: PerformanceResult, *, tickets: str, dense: str, confidence: float) -> dict[str, Any]:
    """The M-ticket ensemble against the K-dense-model ensemble, overall and per group, from their paired
    comparison on the same rows (``paired``: the dense ensemble as reference): accuracies, the difference
    (tickets - dense) with its interval and p-value, Holm-adjusted across groups, and what it shows."""
    alpha = 1 - confidence

    def entry(group: Any, p_holm: float) -> dict[str, Any]:
        accuracy = group.metrics["accuracy"]
        if group.insufficient:
            finding = "too few rows"
        elif p_holm < alpha:
            finding = "tickets better" if accuracy.delta > 0 else "dense better"
        else:
            finding = "no detectable difference"
        return {"n": group.n, "insufficient": group.insufficient, "tickets": number(accuracy.ticket),
                "dense": number(accuracy.dense), "difference": number(accuracy.delta), "ci": interval(*accuracy.ci),
                "ci_method": accuracy.ci_method, "p_value": number(accuracy.p_value), "p_holm": number(p_holm),
                "finding": finding}

    adjusted = stats.holm(np.array([g.metrics["accuracy"].p_value if not g.insufficient else np.nan
                                    for g in paired.subgroups]))
    overall = paired.overall.metrics["accuracy"]
    return {"tickets": tickets, "dense": dense, "confidence": confidence,
            "accuracy": entry(paired.overall, float(overall.p_value)),
            "groups": {g.group: entry(g, float(p)) for g, p in zip(paired.subgroups, adjusted)}}


def _subset(calibration: Calibration, fraction: float, *, seed: int) -> Calibration:
    """``fraction`` of each group's calibration rows, drawn at random (seeded)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF4AC]))
    keep = np.zeros(len(calibration.groups), dtype=bool)
    for group in np.unique(calibration.groups):
        rows = rng.permutation(np.flatnonzero(calibration.groups == group))
        keep[rows[: max(1, int(round(fraction * len(rows))))]] = True
    index = torch.as_tensor(np.flatnonzero(keep))
    return Calibration(
        calibration.features[index], calibration.labels[index], calibration.groups[keep], calibration.group_names
    )


def _resampled(calibration: Calibration, *, seed: int) -> Calibration:
    """A bootstrap resample of the calibration rows (another seed of a mask-finding method)."""
    rows = np.random.default_rng(seed).integers(0, len(calibration.labels), size=len(calibration.labels))
    index = torch.as_tensor(rows)
    return Calibration(
        calibration.features[index], calibration.labels[index], calibration.groups[rows], calibration.group_names
    )


def _sweep(
    methods: Sequence[str],
    dense: nn.Module,
    calibration: Calibration,
    evaluator: _Evaluator,
    settings: PruneSettings,
    *,
    seed: int,
    min_rows: int,
) -> list[SweepPoint]:
    points = []
    for method in methods:
        for sparsity in settings.sweep:
            module, _ = find_ticket(
                method,
                dense,
                sparsity=sparsity,
                calibration=calibration,
                settings=settings,
                seed=seed,
                min_group_rows=min_rows,
            )
            performance = evaluator.performance(evaluator.probabilities(module))
            drops = {}
            for group in (performance.overall, *performance.subgroups):
                m = group.metrics["accuracy"]
                drops[group.group] = (-float(m.delta), -float(m.ci[1]), -float(m.ci[0]))
            points.append(SweepPoint(method, sparsity, float(performance.overall.metrics["accuracy"].ticket), drops))
    return points


def critical_sparsity(points: Sequence[SweepPoint], tolerance: float) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per method and group: the highest swept sparsity at which the group's accuracy drop stays within
    ``tolerance`` — by the point estimate, and by the interval's upper (conservative) and lower
    (optimistic) ends; counted only up to the first sparsity where it fails."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for method in dict.fromkeys(p.method for p in points):
        curve = [p for p in points if p.method == method]
        out[method] = {}
        for group in curve[0].group_drop:
            found: dict[str, float | None] = {}
            for key, index in (("estimate", 0), ("conservative", 2), ("optimistic", 1)):
                best = None
                for point in curve:
                    if point.group_drop[group][index] <= tolerance:
                        best = point.sparsity
                    else:
                        break
                found[key] = best
            out[method][group] = found
    return out


def recommend(candidates: Sequence[Candidate], policy: Policy) -> tuple[str, str | None]:
    """The most accurate candidate shown to pass the policy (the audited ticket included), and its cost; none
    when no candidate is shown to pass (an inconclusive one fails nothing, but the rows cannot show it passes)."""
    audited = next((c for c in candidates if c.name == AUDITED), None)
    shippable = [c for c in candidates if c.mask is not None or c.name == AUDITED]
    passing = [c for c in shippable if c.passes]
    if not passing:
        return _nothing_passes(candidates, unfailed=[c for c in shippable if c.verdict == "inconclusive"]), None
    best = max(passing, key=lambda c: (c.accuracy, -c.gap_widening.value, c.name))
    if best.name == AUDITED:
        return (
            "Keep the audited ticket: it passes the policy and no alternative at the same sparsity is more "
            "accurate on the evaluation rows."
        ), best.name
    cost = ""
    if audited is not None:
        cost = (
            f" Against the audited ticket: accuracy {(best.accuracy - audited.accuracy) * 100:+.1f} pts, "
            f"gap widening {best.gap_widening.value * 100:+.1f} instead of {audited.gap_widening.value * 100:+.1f} pts"
            f"{'' if audited.passes else f' (the audited ticket {_verdict_words(audited.verdict)})'}."
        )
        if audited.passes and abs(best.accuracy - audited.accuracy) < 0.005:
            cost += " The difference is within half a point: keeping the audited ticket is equally defensible."
    return (
        f"Ship {best.name}: it passes the policy with overall accuracy {best.accuracy * 100:.1f}% at sparsity "
        f"{best.sparsity * 100:.1f}%, worst group {best.worst_group} at {best.worst_group_accuracy.value * 100:.1f}%."
        + cost
    ), best.name


def _verdict_words(verdict: str) -> str:
    return {"fail": "fails the policy", "inconclusive": "is inconclusive: the rows cannot show it passes"}.get(
        verdict, "passes the policy")


def _nothing_passes(candidates: Sequence[Candidate], *, unfailed: Sequence[Candidate]) -> str:
    """What to say when no candidate is shown to pass: the inconclusive ones named (never recommended), else the
    candidate whose gap widened least."""
    if unfailed:
        best = max(unfailed, key=lambda c: (c.accuracy, -c.gap_widening.value, c.name))
        fail, pass_ = ("fails", "it passes") if len(unfailed) == 1 else ("fail", "they pass")
        who = ("Every candidate, the audited ticket included, fails" if len(unfailed) == len(candidates) > 1
               else f"{_names(unfailed)} {fail}")
        return (f"No candidate is shown to pass the policy on the evaluation rows. {who} no check, but the rows "
                f"cannot show {pass_} (inconclusive); the most accurate of them is {_named(best)} "
                f"({best.accuracy * 100:.1f}%, gap widening {best.gap_widening.value * 100:+.1f} pts). Audit on more "
                "rows before choosing one.")
    least = min([c for c in candidates if c.method != DENSE_ENSEMBLE],
                key=lambda c: (c.gap_widening.value if np.isfinite(c.gap_widening.value) else 9, c.name))
    return (f"No candidate passes the policy on the evaluation rows. The smallest accuracy-gap widening is "
            f"{least.name}'s ({least.gap_widening.value * 100:+.1f} pts, overall accuracy "
            f"{least.accuracy * 100:.1f}%); consider a lower sparsity, more --rounds, or another --recover.")


def _named(candidate: Candidate) -> str:
    return "the audited ticket" if candidate.name == AUDITED else candidate.name


def _names(candidates: Sequence[Candidate]) -> str:
    names = [_named(c) for c in candidates]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
