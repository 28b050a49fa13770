"""Orchestration in phases: options -> load -> plan -> run -> analyse -> gate -> assemble.

No phase knows any analysis or kind of input by name: analyses come from the registry
(``ticketaudit.analyses.registry``), inputs from the modality (``ticketaudit.modalities``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._version import __version__
from ._validation import as_list, check_fraction, describe, fail, recounted
from .analyses import registry
from .analyses.attributions import DEFAULT_METHOD, AttributionSettings, read_identity_terms
from .analyses.base import Analysis, AnalysisSettings, AuditContext, FinishContext
from .analyses.cost import row_cost
from .analyses.predict import ModelRunner, PrecisionChoice, choose_precision, own_precision, resolve_device
from ._io import check_outputs_not_among
from .choices import PRECISIONS, TRUNCATIONS
from .checks import (Candidate, Check, decide, group_findings, insufficient_check, not_evaluated_check,
                     rates_moved_together, verdict_of)
from .config import AuditConfig, EngineSettings, Policy
from .data import load_table
from .exceptions import RowsProblem
from .engine.rows import AuditRows, column_chunks, open_items_for_ray, open_rows, run_shards
from .engine.shard import AuditPlan, AuditState
from .images import ImageProcessor, absolute_images, image_reference, table_folder
from .inputs import check_classes, encode_target, text_limit
from .listing import bounded
from .llm.tasks import read_items, resolve_task, with_choice_count, with_pair_label
from .modalities import choose_modality
from .modalities.choice import ChoiceTask
from .modalities.base import Modality
from .preprocess import UnseenCategories
from .pruning.alternatives import AlternativesResult, PruneSettings, check_training_data, find_alternatives
from .tickets import LoadedModel, load_dense, load_ticket

SCHEMA_VERSION = "1.0"
Progress = Callable[[str, int, int], None]
"""progress(step description, done, total)"""


@dataclass(frozen=True, eq=False, kw_only=True)
class AuditResult:
    """Everything an audit found; ``to_dict()`` is the versioned JSON of the contract."""

    verdict: str
    checks: tuple[Check, ...]
    dense: LoadedModel
    ticket: LoadedModel
    data: dict[str, Any]
    policy: Policy
    config: AuditConfig
    results: Mapping[str, Any]
    """Each analysis's result, by name, in report order."""
    alternatives: AlternativesResult | None
    notes: tuple[str, ...]
    created: str | None
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per group: status, minimum detectable harm, rows to settle (``checks.group_findings``)."""
    rate_shifts: tuple[dict[str, Any], ...] = ()
    """Rates that moved the same way in most groups (``checks.rates_moved_together``)."""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def performance(self) -> Any:
        """The ``metrics`` analysis's result (a ``PerformanceResult``)."""
        return self.results["metrics"]

    @property
    def disagreement(self) -> Any:
        return self.results.get("disagreement")

    @property
    def compression(self) -> Any:
        return self.results.get("compression")

    @property
    def attributions(self) -> Any:
        return self.results.get("attributions")

    @property
    def attention(self) -> Any:
        return self.results.get("attention")

    @property
    def passed(self) -> bool:
        """Whether the verdict is ``pass`` (every check ruled out a harm as large as its tolerance)."""
        return self.verdict == "pass"

    @property
    def gate_failed(self) -> bool:
        """Whether the CLI exits 1: a check failed, or the verdict is inconclusive and the policy says
        ``on_inconclusive = "fail"``."""
        return any(self.policy.fails_gate(check.status) for check in self.checks)

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def inconclusive_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "inconclusive")

    @property
    def not_evaluated_checks(self) -> tuple[Check, ...]:
        """Gates the policy sets that this audit could not evaluate (each says why)."""
        return tuple(c for c in self.checks if c.status == "not_evaluated")

    def _model(self, loaded: LoadedModel) -> dict[str, Any]:
        return {"parameters": loaded.parameters, "nonzero": loaded.nonzero, "sparsity": loaded.sparsity,
                "sha256": loaded.sha256, "format": loaded.format, "same_shape": loaded.same_shape,
                "nonzero_weights_vs_dense": loaded.nonzero_weights / self.dense.weights,
                **({"quantization": loaded.quantization} if loaded.quantization is not None else {})}

    def to_dict(self, *, all_groups: bool = False) -> dict[str, Any]:
        """JSON-safe dict; byte-identical for the same inputs and seed (no paths or speed settings). Above
        ``listing.MAX_LISTED_GROUPS`` groups it lists those that matter and counts the rest, unless ``all_groups``."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "tool_version": __version__}
        if self.created is not None:
            out["created"] = self.created
        out.update({
            "verdict": self.verdict,
            "checks": [c.to_dict() for c in self.checks],
            "policy": self.policy.to_dict(),
            "settings": {"seed": self.config.seed, "n_boot": self.config.n_boot, "max_rows": self.config.max_rows,
                         "analyses": list(self.config.analyses), "ece_bins": self.config.ece_bins,
                         "max_unseen_share": self.config.max_unseen_share, "precision": self.config.precision,
                         "precision_reason": self.config.precision_reason},
            "models": {"dense": self._model(self.dense), "ticket": self._model(self.ticket)},
            "data": self.data,
            "notes": list(self.notes),
            "rate_shifts": list(self.rate_shifts),
        })
        for name, result in self.results.items():
            out.update(registry.get(name).document(result, self))
        if self.alternatives is not None:
            out["alternatives"] = self.alternatives.to_dict()
        return out if all_groups else bounded(out)


@dataclass(frozen=True, eq=False, kw_only=True)
class AuditOptions:
    """Every option of one audit, checked once (the API checks exactly what the CLI checks)."""

    target: str
    sensitive: tuple[str, ...]
    features: list[str] | None
    task: ChoiceTask | None
    """A language model's items (``--task choice`` or ``--benchmark``); None for classifiers."""
    items: pd.DataFrame | None
    """The rows a benchmark's reader (or the JSONL reader) made of ``data``; None: ``data`` is read as a table."""
    text: str | None
    image: str | None
    image_processor: ImageProcessor | None
    thumbnails: bool
    split: str | None
    policy: Policy
    seed: int
    created: str | None
    n_boot: int
    max_rows: int | None
    requested: tuple[str, ...] | None
    factory: str | None
    allow_pickle: bool
    max_unseen_share: float
    attribution: AttributionSettings
    engine: EngineSettings
    prune: PruneSettings | None
    train_data: pd.DataFrame | str | Path | None
    precision: str = "auto"
    truncation: str = "head"
    outputs: Mapping[str, Path] = field(default_factory=dict)
    """Files the caller writes afterwards: none may be a file the audit reads (each image of the data)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class _Loaded:
    dense: LoadedModel
    ticket: LoadedModel
    modality: type[Modality]
    analyses: tuple[Analysis, ...]
    notes: tuple[str, ...]
    """One per analysis skipped because the ticket's shapes differ from the dense model's."""


@dataclass(frozen=True, eq=False, kw_only=True)
class _Analysed:
    results: dict[str, Any]
    notes: list[str]
    unseen: list[dict[str, Any]]
    class_counts: np.ndarray
    truncation: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class _Planned:
    rows: AuditRows
    context: AuditContext
    class_names: tuple[str, ...]
    n_outputs: int
    train_frame: pd.DataFrame | None


def audit(
    *,
    dense: nn.Module | str | Path,
    ticket: nn.Module | str | Path | None = None,
    mask: str | Path | None = None,
    data: pd.DataFrame | str | Path,
    target: str | None = None,
    sensitive: str | Sequence[str] | None = None,
    features: str | Sequence[str] | None = None,
    text: str | None = None,
    tokenizer: Any = None,
    image: str | None = None,
    image_processor: str | Path | None = None,
    thumbnails: bool = True,
    split: str | None = None,
    policy: Policy | None = None,
    seed: int | None = 0,
    n_boot: int = 1000,
    confidence: float | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    max_rows: int | None = None,
    analyses: str | Sequence[str] | None = None,
    factory: str | None = None,
    allow_pickle: bool = False,
    attribution_method: str | None = None,
    attribution_target: str = "label",
    attribution_rows: int | None = None,
    proxies: str | Sequence[str] | None = None,
    identity_terms: str | Path | Sequence[str] | None = None,
    attribution_budget: float = 120.0,
    alternatives: bool | PruneSettings = False,
    train_data: pd.DataFrame | str | Path | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    num_workers: int = 2,
    gpus_per_worker: float = 0.0,
    max_unseen_share: float = 0.05,
    precision: str = "auto",
    truncation: str = "head",
    task: str | None = None,
    benchmark: str | None = None,
    prompt: str | None = None,
    choices: str | Sequence[str] | None = None,
    prompt_template: str | Path | None = None,
    bbq_choices: str = "harness",
    choice_score: str = "acc",
    limit: int | None = None,
    outputs: Mapping[str, str | Path] | None = None,
    progress: Progress | None = None,
) -> AuditResult:
    """Audit ``ticket`` (or ``dense`` x ``mask``) against ``dense`` on ``data``, per group of ``sensitive``.

    A given ``seed`` makes the result (and its JSON) byte-identical across runs, batch sizes and
    devices; ``seed=None`` uses seed 0 and records the creation time in the result. ``analyses=None``
    runs every analysis that applies to the model (``ticketaudit.analyses.registry``, plug-ins
    included); ``text`` names the text column of a Hugging Face model (``tokenizer`` gives its
    tokenizer when ``dense`` is a module rather than a directory).
    ``alternatives`` (True or ``PruneSettings``) adds fairness-aware pruning alternatives at the ticket's
    per-layer densities, chosen on ``train_data`` or, without it, on a calibration half of ``data``.
    ``engine="ray"`` audits ``data`` (Parquet/CSV files, a directory or a glob) on ``num_workers`` Ray
    workers (joining the cluster at ``ray_address``, else starting Ray here) with the same result as
    ``engine="local"``, which reads Parquet, directories and globs fragment by fragment in this process.
    Rows whose one-hot value the model has no category for are counted and noted per column and group;
    more than ``max_unseen_share`` of the rows in any column is refused (the audit would measure inputs
    the model never saw as "all categories off").
    ``batch_size``: rows per forward pass for tables (default 1,024) and images (default 64, decoded together), a
    budget in tokens (rows x padded length, default 16,384) for text; a row's inputs never depend on it.
    ``precision``: ``float64`` makes results independent of batch size and workers too; ``float32`` and
    ``bfloat16`` (the model's own speed) are reproducible for the same batch size and device; ``auto``
    picks float64 on the CPU when both forward passes over every row are cheap (multiply-adds counted), else the
    models' own precision. The JSON records it and why (``settings.precision_reason``).
    ``truncation``: text longer than the model's limit keeps its first tokens (``head``), its first quarter and
    last three quarters (``head+tail``), or is refused (``error``); truncated rows are counted per group.
    Language models (a causal LM directory or .gguf file): ``benchmark`` (``bbq`` or ``crows-pairs``, with ``data``
    the release's files and ``limit`` items at most) fills the items, the target and the groups; ``task="choice"``
    scores the user's items (``prompt`` or ``prompt_template``, ``choices`` columns, ``target`` the right choice's index);
    ``choice_score="acc_norm"`` picks the choice with the highest log-likelihood per character.
    ``outputs`` (option -> path): files the caller will write; one that is a file the audit reads (an image the
    data names) is refused before any model runs. On text models attributions are summed to words; ``identity_terms`` (a file with one term per line,
    or a list) adds words that name a group to those built from the sensitive values, and without
    ``attribution_rows`` the sample is sized to finish in about ``attribution_budget`` seconds on 2 cores.
    """
    options = _options(locals())
    step = progress or (lambda *_: None)
    if options.task is not None and options.task.kind == "likelihood":
        from .likelihood_audit import audit_texts

        return AuditResult(**audit_texts(options, dense=dense, ticket=ticket, mask=mask, tokenizer=tokenizer,
                                         data=options.items if options.items is not None else data, step=step))
    step("Loading models", 0, 1)
    loaded = _load(options, dense=dense, ticket=ticket, mask=mask, tokenizer=tokenizer)
    step("Loading data", 0, 1)
    with tempfile.TemporaryDirectory(prefix="ticketaudit-") as scratch:  # items spilled for Ray workers, if any
        planned = _plan(options, loaded, data=data, scratch=Path(scratch))
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            step("Running both models", done, 2 * planned.rows.total)

        state = _run(options, loaded, planned, progress=advance)
        step("Measuring groups and bootstrapping", 0, 1)
        analysed = _analyse(options, loaded, planned, state, progress=step)
        checks = _gate(options.policy, loaded, analysed.results)
        alternative_result = None
        if options.prune is not None and options.task is not None:
            alternative_result = _language_alternatives(options, loaded, planned, dense=dense, data=data, step=step)
        elif options.prune is not None:
            step("Pruning alternatives at the same sparsity", 0, 1)
            alternative_result = _alternatives(options, loaded, planned)
        step("Done", 1, 1)
        return _assemble(options, loaded, planned, analysed, checks, alternatives=alternative_result)


def _alternatives(options: AuditOptions, loaded: _Loaded, planned: _Planned) -> AlternativesResult:
    """``--alternatives``: candidates pruned from the dense model at the ticket's sparsity, audited alike."""
    assert options.prune is not None and planned.rows.frame is not None
    modality = planned.context.modality
    return find_alternatives(
        loaded.dense, frame=planned.rows.frame, target=options.target, sensitive=list(options.sensitive),
        features=options.features, settings=options.prune, policy=options.policy, seed=options.seed,
        n_boot=options.n_boot, train_frame=planned.train_frame, audited=loaded.ticket,
        batch_size=modality.matrix_batch_size(planned.context.batch_size), explicit_methods=False,
        inputs_of=modality.matrix)


def _language_alternatives(options: AuditOptions, loaded: _Loaded, planned: _Planned, *, dense: Any, data: Any,
                           step: Callable[[str, int, int], None]) -> AlternativesResult:
    """``--alternatives`` on a language model: candidates of each method at the ticket's decoder sparsity, compared on
    the evaluation half of the items (``pruning.language_alternatives``)."""
    from .pruning.language_alternatives import LanguageSetup, find_language_alternatives, split_items

    assert options.prune is not None and options.task is not None and planned.rows.frame is not None
    context, frame = planned.context, planned.rows.frame
    modality = context.modality
    calibration = split_items(frame, sensitive=options.sensitive[0], benchmark=modality.benchmark,
                              prompts=modality.prompts(frame) if modality.has_prompts else [], seed=options.seed)
    setup = LanguageSetup(dense=loaded.dense, audited=loaded.ticket, modality=modality, frame=frame,
                          calibration=calibration, target=options.target, sensitive=list(options.sensitive),
                          class_names=planned.class_names, n_outputs=planned.n_outputs, policy=options.policy,
                          n_boot=options.n_boot, seed=options.seed, device=context.device,
                          precision=context.precision, batch_size=context.batch_size)
    task = options.task
    source = {"dense": str(dense) if isinstance(dense, (str, Path)) else None,
              "data": str(data) if isinstance(data, (str, Path)) else None,
              "task_options": _task_options(task, target=options.target, sensitive=options.sensitive)}
    return find_language_alternatives(setup, budget_seconds=options.prune.budget_seconds,
                                      save_to=options.prune.save_to, source=source, progress=step)


def _task_options(task: ChoiceTask, *, target: str, sensitive: tuple[str, ...]) -> str:
    """The ``report`` options that name the user's items' columns (for the re-audit command of a saved candidate)."""
    prompt = f"--prompt {task.prompt}" if task.template is None and task.prompt else "--prompt-template TEMPLATE"
    return (f"--task {task.kind} {prompt} --choices {','.join(task.choices)} --target {target} "
            f"--sensitive {','.join(sensitive)}")


def _options(arguments: dict[str, Any]) -> AuditOptions:
    """Types, choices and combinations of every argument, before any work."""
    _check_arguments(arguments)
    policy = arguments["policy"] or Policy()
    if arguments["confidence"] is not None:
        policy = Policy.from_mapping({**policy.to_dict(), "confidence": arguments["confidence"]})
    analyses = arguments["analyses"]
    requested = None if analyses is None else tuple(as_list(analyses, option="--analyses") or ())
    seed, created = arguments["seed"], None
    if seed is None:
        seed = 0
        created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    AuditConfig(seed=seed, n_boot=arguments["n_boot"], max_rows=arguments["max_rows"],  # checks them before any work
                analyses=requested if requested is not None else ("metrics",))
    for name in requested or ():
        registry.get(name)  # an unknown name is exit 2, naming the known ones
    if requested is not None and not requested:
        fail("choose at least one analysis: " + ", ".join(registry.names()) + ".")
    task, target, sensitive, items = _items(arguments)
    features = as_list(arguments["features"], option="--features")
    if features is not None and not features:
        fail("--features names no column; list the model's input columns, or leave --features out.")
    attribution = AttributionSettings(
        method=arguments["attribution_method"] or DEFAULT_METHOD, method_named=arguments["attribution_method"] is not None,
        target=arguments["attribution_target"],
        rows=arguments["attribution_rows"], proxies=tuple(as_list(arguments["proxies"], option="--proxies") or ()),
        identity_terms=read_identity_terms(arguments["identity_terms"]), budget_seconds=arguments["attribution_budget"])
    engine = EngineSettings(engine=arguments["engine"], device=arguments["device"],
                            batch_size=arguments["batch_size"], num_workers=arguments["num_workers"],
                            ray_address=arguments["ray_address"], gpus_per_worker=arguments["gpus_per_worker"])
    if arguments["precision"] not in PRECISIONS:
        hint = " (lower case)" if str(arguments["precision"]).lower() in PRECISIONS else ""
        fail(f"precision (--precision) must be one of {', '.join(PRECISIONS)}{hint}; got {arguments['precision']!r}.")
    if engine.engine != "ray":  # with Ray each worker checks --device itself (workers may have GPUs the driver lacks)
        resolve_device(engine.device)
    check_fraction("max_unseen_share (--max-unseen-share)", arguments["max_unseen_share"], open_low=False,
                   open_high=False)
    if target in sensitive:
        fail(f"the target column '{target}' cannot also be a sensitive column.")
    chosen = arguments["alternatives"]
    prune = (chosen if isinstance(chosen, PruneSettings) else PruneSettings()) if chosen else None
    return AuditOptions(
        target=target, sensitive=tuple(sensitive), features=features, text=arguments["text"], task=task,
        items=items if isinstance(items, pd.DataFrame) else None,
        image=arguments["image"], image_processor=(ImageProcessor.from_file(arguments["image_processor"])
                                                   if arguments["image_processor"] is not None else None),
        thumbnails=arguments["thumbnails"],
        split=arguments["split"], policy=policy, seed=seed, created=created, n_boot=arguments["n_boot"],
        max_rows=arguments["max_rows"], requested=requested, factory=arguments["factory"],
        allow_pickle=arguments["allow_pickle"], max_unseen_share=float(arguments["max_unseen_share"]),
        attribution=attribution, engine=engine, prune=prune, train_data=arguments["train_data"],
        precision=arguments["precision"], truncation=_truncation(arguments["truncation"]),
        outputs={option: Path(path) for option, path in (arguments["outputs"] or {}).items()})


def _items(arguments: dict[str, Any]) -> tuple[ChoiceTask | None, str, tuple[str, ...], Any]:
    """A language model's task, the target and groups (a benchmark's own unless named), and the rows it read."""
    task, target, sensitive = resolve_task(
        task=arguments["task"], benchmark=arguments["benchmark"], prompt=arguments["prompt"],
        choices=as_list(arguments["choices"], option="--choices"), prompt_template=arguments["prompt_template"],
        bbq_choices=arguments["bbq_choices"], target=arguments["target"], score=arguments["choice_score"],
        sensitive=as_list(arguments["sensitive"], option="--sensitive") or [])
    if target is None or not sensitive:
        fail("name the label column with --target COL and the group columns with --sensitive COL[,COL...] (for a "
             "language model, --benchmark bbq|crows-pairs fills both).")
    items = None
    if task is not None and task.kind == "likelihood":
        if arguments["text"] is None:
            fail("--task likelihood needs the column of texts to score: --text COL.")
        items = read_items(task, arguments["data"], limit=arguments["limit"])
        return task, target, sensitive, items if isinstance(items, pd.DataFrame) else None
    if task is not None:
        items = read_items(task, arguments["data"], limit=arguments["limit"])
        task = with_choice_count(task, items, target=target)
        items = with_pair_label(task, items, target=target)
        if task.benchmark is not None and not arguments["sensitive"]:  # the benchmark's groups that vary here
            sensitive = tuple(c for c in sensitive if items[c].nunique() > 1) or sensitive
    return task, target, sensitive, items


def _truncation(value: str) -> str:
    if value not in TRUNCATIONS:
        fail(f"truncation (--truncation) must be one of {', '.join(TRUNCATIONS)}; got {value!r}.")
    return value


def _load(options: AuditOptions, *, dense: Any, ticket: Any, mask: Any, tokenizer: Any) -> _Loaded:
    """Both models, the modality they and the options call for, and the analyses to run on them."""
    dense_model = load_dense(dense, factory=options.factory, allow_pickle=options.allow_pickle)
    if tokenizer is not None:
        dense_model = dataclasses.replace(dense_model, tokenizer=tokenizer)
    ticket_model = load_ticket(ticket, dense=dense_model, mask=mask, factory=options.factory,
                               allow_pickle=options.allow_pickle)
    modality = choose_modality(dense_model, target=options.target, sensitive=options.sensitive,
                               features=options.features, text=options.text, image=options.image, task=options.task)
    if options.image_processor is not None and modality.name != "image":
        fail("--image-processor belongs to image models (with --image COL); leave it out for this model.")
    if options.prune is not None and not modality.prunable and options.task is None:
        fail(f"--alternatives does not work on models that read {modality.name}s.")
    if options.prune is not None and options.task is not None and (options.train_data is not None
                                                                   or options.prune.recover != "none"):
        fail("--train-data and --recover belong to the alternatives of classifiers; a language model's alternatives "
             "calibrate on half of its items and the shipped text: leave them out.")
    if options.prune is not None and options.task is not None and options.prune.save_to is not None:
        _check_new_directory(options.prune.save_to)
    if options.prune is not None and options.task is None and options.prune.save_to_named and options.prune.save_to:
        fail("--alternatives-out saves a language model's candidates; a classifier's alternatives are reported, not "
             "saved: leave it out.")
    analyses, skipped = _choose_analyses(options.requested, dense_model, ticket_model, modality)
    return _Loaded(dense=dense_model, ticket=ticket_model, modality=modality, analyses=analyses, notes=tuple(skipped))


def _check_new_directory(path: Path) -> None:
    """Where the alternatives are saved: a new (or empty) directory in a writable folder, checked before any work."""
    from ._io import check_writable

    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(f"--alternatives-out '{path}' already exists and is not an empty directory; the candidates are saved in "
             "a new one: name another, or remove it.")
    if not path.exists():
        check_writable(path, what="--alternatives-out")


def _plan(options: AuditOptions, loaded: _Loaded, *, data: Any, scratch: Path) -> _Planned:
    """Open the rows (first pass: groups and their sizes), fix the model inputs and the classes, and let
    every analysis plan its part before any model runs."""
    data = options.items if options.items is not None else data
    if options.items is not None and options.engine.engine == "ray":
        rows = open_items_for_ray(options.items, folder=scratch, split=options.split, max_rows=options.max_rows,
                                  sensitive=list(options.sensitive), target=options.target)
    else:
        rows = open_rows(data, engine=options.engine.engine, split=options.split, max_rows=options.max_rows,
                         sensitive=list(options.sensitive), target=options.target,
                         in_memory=loaded.modality.in_memory or options.prune is not None)
    train_frame = None
    if options.prune is not None and options.task is None:  # before any model runs: a bad training table fails fast
        assert rows.frame is not None
        train_frame = (load_table(options.train_data, text_columns=(*options.sensitive, options.target)).frame
                       if options.train_data is not None else None)
        if train_frame is not None and options.image is not None:
            train_frame = absolute_images(train_frame, column=options.image, root=table_folder(options.train_data))
        check_training_data(options.prune, frame=rows.frame, train_frame=train_frame)
    with _counted_over(rows, options):  # a problem the first row shows is counted over every row
        modality = loaded.modality.build(loaded.dense, probe=rows.probe, target=options.target,
                                         features=options.features, text=options.text, image=options.image,
                                         processor=options.image_processor, root=table_folder(data),
                                         truncation=options.truncation, task=options.task)
        modality = modality.prepare(lambda column: column_chunks(rows, column, split=options.split))
    if options.outputs and options.image is not None:
        check_outputs_not_among(options.outputs, _image_files(rows, options, root=table_folder(data)),
                                what="an image the data names in column '" + options.image + "':")
    with _counted_over(rows, options):
        probe_inputs = modality.inputs(rows.probe)
        n_outputs = _output_width(loaded, probe_inputs, device=options.engine)
        _, class_names = encode_target(rows.probe, options.target, n_outputs=n_outputs, labels=loaded.dense.labels,
                                       require_every_class=False)
    context = AuditContext(
        dense=loaded.dense, ticket=loaded.ticket, modality=modality, groups=rows.groups, population=rows.population,
        probe=rows.probe, total_rows=rows.total, sensitive=options.sensitive, target=options.target, seed=options.seed,
        n_boot=options.n_boot, batch_size=options.engine.batch_size or type(modality).default_batch_size,
        device=_driver_device(options.engine), attribution=options.attribution.for_modality(modality.name),
        thumbnails=options.thumbnails)
    choice = _precision(options, loaded, probe_inputs, rows=rows.total)
    context = dataclasses.replace(context, precision=choice.name, precision_reason=choice.reason)
    return _Planned(rows=rows, context=context, class_names=class_names, n_outputs=n_outputs, train_frame=train_frame)


def _precision(options: AuditOptions, loaded: _Loaded, probe: Any, *, rows: int) -> PrecisionChoice:
    """``--precision`` resolved; ``auto`` from the forward passes' cost (multiply-adds counted on the first row)."""
    models = (loaded.dense.module, loaded.ticket.module)
    if options.precision != "auto" or options.engine.device != "cpu":
        return choose_precision(options.precision, models=models, device=options.engine.device)
    per_row = row_cost(loaded.dense.module, probe).total
    per_row += per_row if loaded.ticket.same_shape else row_cost(loaded.ticket.module, probe).total
    return choose_precision("auto", models=models, device="cpu", macs_per_row=per_row, rows=rows)


def _image_files(rows: AuditRows, options: AuditOptions, *, root: Path) -> Iterator[str]:
    """Every image file the audited rows name (encoded bytes name none)."""
    assert options.image is not None
    for chunk in column_chunks(rows, options.image, split=options.split):
        for value in chunk.tolist():
            reference = image_reference(value, root=root)
            if isinstance(reference, str):
                yield reference


def _driver_device(engine: EngineSettings) -> torch.device:
    """Where the driver's own steps run: ``--device``; with Ray, whose workers may have GPUs the driver
    lacks, the CPU (the probe, and Captum on the merged sample)."""
    return resolve_device(engine.device) if engine.engine != "ray" else torch.device("cpu")


def _output_width(loaded: _Loaded, probe: Any, *, device: EngineSettings) -> int:
    """Values per row of the dense model's output; the ticket must score the same classes."""
    where = _driver_device(device)
    def runner(module: torch.nn.Module) -> ModelRunner:  # its own precision: no float64 copy of a large model
        return ModelRunner(module, device=where, precision=own_precision(module))

    n_outputs = runner(loaded.dense.module).output_width(probe)
    if not loaded.ticket.same_shape:
        ticket_outputs = runner(loaded.ticket.module).output_width(probe)
        if ticket_outputs != n_outputs:
            fail(f"the ticket outputs {ticket_outputs} value(s) per row but the dense model {n_outputs}; both must "
                 "score the same classes in the same order.")
    return n_outputs


def _run(options: AuditOptions, loaded: _Loaded, planned: _Planned, *,
         progress: Callable[[int], None]) -> AuditState:
    """Every row through both models into each analysis's merged accumulator, on the chosen engine."""
    context, engine = planned.context, options.engine
    plan = AuditPlan(
        dense=loaded.dense.module, ticket=loaded.ticket.module, modality=context.modality, target=options.target,
        labels=loaded.dense.labels, n_outputs=planned.n_outputs, groups=context.groups, analyses=loaded.analyses,
        planned=tuple(analysis.plan(context) for analysis in loaded.analyses), n_boot=options.n_boot,
        seed=options.seed, ece_bins=AuditConfig().ece_bins, batch_size=context.batch_size, device=engine.device,
        precision=context.precision)
    with _counted_over(planned.rows, options):
        return run_shards(plan, planned.rows, engine=engine.engine, split=options.split,
                          ray_address=engine.ray_address, num_workers=engine.num_workers,
                          gpus_per_worker=engine.gpus_per_worker, progress=progress)


@contextlib.contextmanager
def _counted_over(rows: AuditRows, options: AuditOptions) -> Iterator[None]:
    """Bad values found in part of the rows (the first row, one chunk) are reported as counted over all of them."""
    try:
        yield
    except RowsProblem as problem:
        raise recounted(problem, column_chunks(rows, problem.column, split=options.split)) from None


def _analyse(options: AuditOptions, loaded: _Loaded, planned: _Planned, state: AuditState, *,
             progress: Progress) -> _Analysed:
    """Each analysis's result from the merged state, in registry order, and the notes for the report."""
    cells = state.cells.table()
    class_names = planned.class_names
    class_counts = np.array([cells.layout.column(cells.sums, f"support:{k}").sum() for k in range(len(class_names))])
    check_classes(class_counts, class_names, target=options.target)
    unseen = _unseen_categories(state.unseen, planned.rows, limit=options.max_unseen_share)
    policy = options.policy
    settings = AnalysisSettings(
        class_names=class_names,
        groups=planned.rows.groups,
        confidence=policy.confidence,
        min_group_size=policy.min_group_size,
        n_boot=options.n_boot,
        seed=options.seed,
        ece_bins=AuditConfig().ece_bins,
    )
    finish = FinishContext(audit=planned.context, settings=settings, cells=cells, results={},
                           say=lambda text: progress(text, 0, 1))
    truncation = _truncation_summary(state.clipped, planned)
    notes: list[str] = [*loaded.notes, *(_unseen_note(entry) for entry in unseen),
                        *([_truncation_note(truncation)] if truncation and truncation["rows"] else [])]
    for analysis in loaded.analyses:
        progress(f"Analysing: {analysis.summary}", 0, 1)
        result = analysis.finish(state.parts.get(analysis.name), finish)
        finish.results[analysis.name] = result
        notes += analysis.notes(result, finish)
    return _Analysed(results=finish.results, notes=notes, unseen=unseen, class_counts=class_counts,
                     truncation=truncation)


def _gate(policy: Policy, loaded: _Loaded, results: dict[str, Any]) -> tuple[Check, ...]:
    """Every analysis's policy checks, decided together (Holm and Bonferroni over all of them), and a
    ``not_evaluated`` check for each gate the policy sets that no analysis could evaluate."""
    candidates = [c for analysis in loaded.analyses for c in analysis.candidates(results[analysis.name], policy)]
    checks = (*decide(candidates, confidence=policy.confidence), *_not_evaluated(policy, loaded, results, candidates))
    performance = results["metrics"]
    if policy.on_insufficient == "fail" and any(g.insufficient for g in performance.subgroups):
        checks = (*checks, insufficient_check(performance))
    return checks


def _not_evaluated(policy: Policy, loaded: _Loaded, results: dict[str, Any],
                   candidates: list[Candidate]) -> list[Check]:
    """The gates the policy sets that made no check, each with why: its analysis was not asked for, cannot run
    on these models, or ran without an estimate to gate."""
    made = {c.id.split(":", 1)[0] for c in candidates}
    out = []
    for analysis in registry.analyses():
        for key, family in analysis.gates.items():
            tolerance = getattr(policy, key, None)
            if tolerance is None or family in made:
                continue
            if analysis.name in results:
                reason = analysis.why_not_evaluated(results[analysis.name], key)
            else:
                why_not = analysis.unavailable(dense=loaded.dense, ticket=loaded.ticket, modality=loaded.modality)
                reason = (f"the {analysis.name} analysis {why_not}" if why_not is not None else
                          f"the {analysis.name} analysis did not run; add {analysis.name} to --analyses")
            out.append(not_evaluated_check(key, tolerance, family=family, reason=reason))
    return out


def _assemble(
    options: AuditOptions,
    loaded: _Loaded,
    planned: _Planned,
    analysed: _Analysed,
    checks: tuple[Check, ...],
    *,
    alternatives: AlternativesResult | None,
) -> AuditResult:
    """The result: verdict, checks, each analysis's result, the data summary and the provenance."""
    rows, policy, engine = planned.rows, options.policy, options.engine
    performance = analysed.results["metrics"]
    data_info = {
        "rows": int(rows.total),
        "sha256": rows.sha256,
        "target": options.target,
        "sensitive": list(options.sensitive),
        "features": list(planned.context.modality.feature_names),
        "modality": planned.context.modality.name,
        **({"task": dataclasses.asdict(options.task) | {"template": options.task.template is not None}}
           if options.task is not None else {}),
        "classes": list(planned.class_names),
        "class_counts": {name: int(c) for name, c in zip(planned.class_names, analysed.class_counts)},
        "split": options.split,
        "groups": [g.name for g in rows.groups.groups],
        "unseen_categories": analysed.unseen,
        **({"truncation": analysed.truncation} if analysed.truncation is not None else {}),
    }
    config = AuditConfig(
        seed=options.seed,
        n_boot=options.n_boot,
        batch_size=planned.context.batch_size,
        device=engine.device,
        max_rows=options.max_rows,  # type: ignore[arg-type]
        analyses=tuple(a.name for a in loaded.analyses),
        max_unseen_share=options.max_unseen_share,
        precision=planned.context.precision,
        precision_reason=planned.context.precision_reason,
    )
    return AuditResult(
        verdict=verdict_of(checks, policy=policy),
        checks=checks,
        dense=loaded.dense,
        ticket=loaded.ticket,
        data=data_info,
        policy=policy,
        config=config,
        results=analysed.results,
        alternatives=alternatives,
        notes=tuple(analysed.notes),
        created=options.created,
        findings=group_findings(performance, checks, confidence=policy.confidence),
        rate_shifts=rates_moved_together(performance),
        provenance={
            "dense_source": loaded.dense.source,
            "ticket_source": loaded.ticket.source,
            "data_source": rows.source,
            "batch_size": planned.context.batch_size,
            "device": engine.device,
            "engine": engine.engine,
            "workers": engine.num_workers if engine.engine == "ray" else None,
            "precision": f"{planned.context.precision} ({planned.context.precision_reason})",
            **planned.context.modality.provenance(),
        },
    )


_PATH = (str, Path)
_ARGUMENT_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "dense": ((nn.Module, *_PATH), "an nn.Module or a path (str or pathlib.Path)"),
    "ticket": ((nn.Module, *_PATH, type(None)), "an nn.Module, a path, or None (with mask=...)"),
    "mask": ((*_PATH, type(None)), "a path to a mask file, or None"),
    "data": ((pd.DataFrame, *_PATH), "a pandas DataFrame or a path (str or pathlib.Path)"),
    "target": ((str, type(None)), "a column name (str), or None with benchmark="),
    "sensitive": ((str, list, tuple, type(None)), "a column name or a list of column names"),
    "features": ((str, list, tuple, type(None)), "a list of column names, a comma-separated string, or None"),
    "text": ((str, type(None)), "a column name (str) or None"),
    "image": ((str, type(None)), "a column name (str) or None"),
    "image_processor": ((*_PATH, type(None)), "a path to preprocessor_config.json, or None"),
    "thumbnails": ((bool,), "True or False"),
    "split": ((str, type(None)), "'COL=VALUE' or None"),
    "policy": ((Policy, type(None)), "a ticketaudit.Policy (for a dict d: ta.Policy.from_mapping(d)) or None"),
    "seed": ((int, type(None)), "an integer or None"),
    "n_boot": ((int,), "an integer"),
    "confidence": ((float, int, type(None)), "a number in (0.5, 1) or None"),
    "device": ((str,), "'cpu', 'cuda' or 'mps'"),
    "batch_size": ((int, type(None)), "an integer or None"),
    "max_rows": ((int, type(None)), "an integer or None"),
    "analyses": ((str, list, tuple, type(None)), "a list of analysis names, a comma-separated string, or None"),
    "factory": ((str, type(None)), "'MODULE:FUNC' or None"),
    "allow_pickle": ((bool,), "True or False"),
    "identity_terms": ((*_PATH, list, tuple, type(None)), "a path to a file of terms, a list of words, or None"),
    "attribution_budget": ((float, int), "a number of seconds"),
    "alternatives": ((bool, PruneSettings), "True, False or a PruneSettings"),
    "train_data": ((pd.DataFrame, *_PATH, type(None)), "a DataFrame, a path, or None"),
    "engine": ((str,), "'local' or 'ray'"),
    "ray_address": ((str, type(None)), "'host:port' or None"),
    "num_workers": ((int,), "an integer"),
    "gpus_per_worker": ((float, int), "a number"),
    "max_unseen_share": ((float, int), "a share in [0, 1]"),
    "precision": ((str,), f"one of {', '.join(PRECISIONS)}"),
    "task": ((str, type(None)), "'choice', 'pair', 'likelihood' or None"),
    "benchmark": ((str, type(None)), "'bbq', 'crows-pairs' or None"),
    "prompt": ((str, type(None)), "a column name (str) or None"),
    "choices": ((str, list, tuple, type(None)), "a list of column names, a comma-separated string, or None"),
    "prompt_template": ((*_PATH, type(None)), "a path to a Jinja template, or None"),
    "bbq_choices": ((str,), "'harness' or 'original'"),
    "choice_score": ((str,), "'acc' or 'acc_norm'"),
    "limit": ((int, type(None)), "an integer or None"),
}


def _check_arguments(arguments: dict[str, Any]) -> None:
    """The API checks what the CLI checks: the type of every argument, then the combinations."""
    for name, (types, accepted) in _ARGUMENT_TYPES.items():
        value = arguments[name]
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            fail(f"{name} must be {accepted}; got {describe(value)}.")
    if not arguments["alternatives"] and arguments["train_data"] is not None:
        fail("train_data (--train-data) belongs to alternatives (--alternatives); add it or drop train_data.")
    if arguments["progress"] is not None and not callable(arguments["progress"]):
        fail(f"progress must be a callable(step, done, total) or None; got {describe(arguments['progress'])}.")


def _unseen_categories(accumulated: UnseenCategories | None, rows: AuditRows, *, limit: float) -> list[dict[str, Any]]:
    """Where the model met one-hot values it has no category for; more than ``limit`` of a column is refused."""
    if accumulated is None:
        return []
    groups = tuple((g.name, g.strata, int(rows.population[list(g.strata)].sum())) for g in rows.groups.groups)
    unseen = accumulated.summary(groups, rows.total)
    for entry in unseen:
        if entry["share"] > limit:
            fail(
                f"{entry['rows']} of {rows.total} rows ({entry['share']:.1%}) have a value of column "
                f"'{entry['column']}' that the model has no category for ({_first_values(entry)}); they would be "
                f"audited as 'no category' (all zeros). Map the values to the model's categories (check letter case "
                f"and spelling against preprocess.json), or raise --max-unseen-share (now {limit:g}) to audit anyway."
            )
    return unseen


def _first_values(entry: dict[str, Any]) -> str:
    shown = ", ".join(repr(v) for v in entry["values"])
    return f"e.g. {shown}" + (", ..." if len(entry["values"]) < entry["rows"] else "")


def _truncation_summary(clipped: np.ndarray, planned: _Planned) -> dict[str, Any] | None:
    """Texts cut to the model's limit: how many, the rule, and per group (the most affected first)."""
    modality, rows = planned.context.modality, planned.rows
    strategy = getattr(modality, "truncation", None)
    if strategy is None:
        return None
    groups = []
    for group in rows.groups.groups:
        cut, size = int(clipped[list(group.strata)].sum()), int(rows.population[list(group.strata)].sum())
        if cut:
            groups.append({"group": group.name, "rows": cut, "share": cut / size})
    total = int(clipped.sum())
    return {"strategy": strategy, "limit": text_limit(getattr(modality, "max_length", None)), "rows": total,
            "share": total / rows.total, "groups": sorted(groups, key=lambda g: (-g["share"], g["group"]))}


def _truncation_note(summary: dict[str, Any]) -> str:
    worst = summary["groups"][0]
    kept = {"head": "their first", "head+tail": "their first quarter and last three quarters of"}[summary["strategy"]]
    return (f"{summary['rows']:,} text(s) ({summary['share']:.1%}) were longer than the model's {summary['limit']} "
            f"tokens; the models saw {kept} {summary['limit']} tokens (--truncation {summary['strategy']}). Most "
            f"affected group: {worst['group']} ({worst['share']:.1%} of its rows).")


def _unseen_note(entry: dict[str, Any]) -> str:
    worst = entry["groups"][0]
    return (
        f"{entry['rows']} row(s) ({entry['share']:.1%}) have a value of '{entry['column']}' the model has no "
        f"category for ({_first_values(entry)}); the model saw them as 'no category' (all zeros). Most affected "
        f"group: {worst['group']} ({worst['share']:.1%} of its rows)."
    )


def _choose_analyses(
    requested: tuple[str, ...] | None, dense: LoadedModel, ticket: LoadedModel, modality: type[Modality]
) -> tuple[tuple[Analysis, ...], list[str]]:
    """The analyses to run (those requested, checked against the models, or every default one that
    applies; required ones always) and a note for each skipped because the ticket's shapes differ."""
    chosen = []
    for analysis in registry.analyses():
        asked = requested is not None and analysis.name in requested
        if not (analysis.required or asked or (requested is None and analysis.runs_by_default(modality))):
            continue
        why_not = analysis.unavailable(dense=dense, ticket=ticket, modality=modality)
        if why_not is not None:
            if asked:
                fail(f"--analyses {analysis.name} {why_not}. Leave {analysis.name} out of --analyses.")
            continue
        chosen.append(analysis)
    if ticket.same_shape:
        return tuple(chosen), []
    skipped = [
        f"{a.name} was skipped: {a.weight_wise}, and this ticket's shapes differ from the dense model's "
        "(structured pruning or another architecture); the analyses of predictions ran."
        for a in chosen
        if a.weight_wise
    ]
    kept = tuple(a for a in chosen if not a.weight_wise)
    if requested is not None and not [a for a in kept if a.name in requested]:
        fail(
            "the ticket's shapes differ from the dense model's, so only analyses of predictions can run ("
            + ", ".join(a.name for a in registry.analyses() if not a.weight_wise)
            + "); add one of them to --analyses."
        )
    return kept, skipped
