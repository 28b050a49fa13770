"""Orchestration: load -> predict once -> analyses -> policy checks -> ``AuditResult``."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__
from ._validation import as_list, check_fraction, check_int, describe, fail
from .analyses.attention import AttentionResult, attention_from_sums
from .analyses.attention_capture import attention_source
from .analyses.attributions import AttributionResult, AttributionSettings, attributions_from_sample, sample_sizes
from .analyses.base import AnalysisSettings
from .analyses.compression import CompressionResult, analyse_compression
from .analyses.disagreement import DisagreementResult, disagreement_from_cells
from .analyses.performance import PerformanceResult, performance_from_cells
from .analyses.predict import ModelRunner, resolve_device
from .checks import Check, evaluate_policy, group_findings, insufficient_check, rates_moved_together, verdict_of
from .config import ANALYSES, DEVICES, AuditConfig, Policy
from .data import load_table
from .engine.rows import AuditRows, open_rows, run_shards
from .engine.shard import AuditPlan
from .inputs import build_features, build_text_inputs, check_classes, encode_target
from .preprocess import UnseenCategories
from .pruning.alternatives import AlternativesResult, PruneSettings, check_training_data, find_alternatives
from .tickets import LoadedModel, load_dense, load_ticket
from .tickets.huggingface import is_huggingface_module

SCHEMA_VERSION = "1.0"
Progress = Callable[[str, int, int], None]
"""progress(step description, done, total)"""


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything an audit found; ``to_dict()`` is the versioned JSON of the contract."""

    verdict: str
    checks: tuple[Check, ...]
    dense: LoadedModel
    ticket: LoadedModel
    data: dict[str, Any]
    policy: Policy
    config: AuditConfig
    performance: PerformanceResult | None
    disagreement: DisagreementResult | None
    compression: CompressionResult | None
    attributions: AttributionResult | None
    attention: AttentionResult | None
    alternatives: AlternativesResult | None
    notes: tuple[str, ...]
    created: str | None
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per group: status, minimum detectable harm, rows to settle (``checks.group_findings``)."""
    rate_shifts: tuple[dict[str, Any], ...] = ()
    """Rates that moved the same way in most groups (``checks.rates_moved_together``)."""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the verdict is ``pass`` (every check ruled out a harm as large as its tolerance)."""
        return self.verdict == "pass"

    @property
    def gate_failed(self) -> bool:
        """Whether the CLI exits 1: a check failed, or the verdict is inconclusive and the policy says
        ``on_inconclusive = "fail"``."""
        return self.verdict == "fail" or (self.verdict == "inconclusive" and self.policy.on_inconclusive == "fail")

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    @property
    def inconclusive_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "inconclusive")

    def _model(self, loaded: LoadedModel) -> dict[str, Any]:
        return {"parameters": loaded.parameters, "nonzero": loaded.nonzero, "sparsity": loaded.sparsity,
                "sha256": loaded.sha256, "format": loaded.format, "same_shape": loaded.same_shape,
                "nonzero_weights_vs_dense": loaded.nonzero_weights / self.dense.weights}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; byte-identical for the same inputs and seed (no paths or speed settings)."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "tool_version": __version__}
        if self.created is not None:
            out["created"] = self.created
        out.update({
            "verdict": self.verdict,
            "checks": [c.to_dict() for c in self.checks],
            "policy": self.policy.to_dict(),
            "settings": {"seed": self.config.seed, "n_boot": self.config.n_boot, "max_rows": self.config.max_rows,
                         "analyses": list(self.config.analyses), "ece_bins": self.config.ece_bins,
                         "max_unseen_share": self.config.max_unseen_share},
            "models": {"dense": self._model(self.dense), "ticket": self._model(self.ticket)},
            "data": self.data,
            "notes": list(self.notes),
            "rate_shifts": list(self.rate_shifts),
        })
        if self.performance is not None:
            out["performance"] = self.performance.to_dict()
            unseen: dict[str, dict[str, int]] = {}  # group -> {column: rows with a value the model cannot encode}
            for entry in self.data.get("unseen_categories", []):
                for g in entry["groups"]:
                    unseen.setdefault(g["group"], {})[entry["column"]] = g["rows"]
            out["subgroups"] = [{**group.to_dict(), **self.findings.get(group.group, {}),
                                 **({"unseen_category_rows": unseen[group.group]} if group.group in unseen else {})}
                                for group in self.performance.subgroups]
        if self.disagreement is not None:
            out["disagreement"] = self.disagreement.to_dict()
        if self.compression is not None:
            out["compression"] = self.compression.to_dict()
        if self.attributions is not None:
            out["attributions"] = self.attributions.to_dict()
        if self.attention is not None:
            out["attention"] = self.attention.to_dict()
        if self.alternatives is not None:
            out["alternatives"] = self.alternatives.to_dict()
        return out


def audit(
    *,
    dense: nn.Module | str | Path,
    ticket: nn.Module | str | Path | None = None,
    mask: str | Path | None = None,
    data: pd.DataFrame | str | Path,
    target: str,
    sensitive: str | Sequence[str],
    features: str | Sequence[str] | None = None,
    text: str | None = None,
    tokenizer: Any = None,
    split: str | None = None,
    policy: Policy | None = None,
    seed: int | None = 0,
    n_boot: int = 1000,
    confidence: float | None = None,
    device: str = "cpu",
    batch_size: int = 1024,
    max_rows: int | None = None,
    analyses: str | Sequence[str] | None = None,
    factory: str | None = None,
    allow_pickle: bool = False,
    attribution_method: str = "integrated-gradients",
    attribution_target: str = "label",
    attribution_rows: int | None = None,
    proxies: str | Sequence[str] | None = None,
    alternatives: bool | PruneSettings = False,
    train_data: pd.DataFrame | str | Path | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    num_workers: int = 2,
    gpus_per_worker: float = 0.0,
    max_unseen_share: float = 0.05,
    progress: Progress | None = None,
) -> AuditResult:
    """Audit ``ticket`` (or ``dense`` x ``mask``) against ``dense`` on ``data``, per group of ``sensitive``.

    A given ``seed`` makes the result (and its JSON) byte-identical across runs, batch sizes and
    devices; ``seed=None`` uses seed 0 and records the creation time in the result. ``analyses=None``
    runs every analysis that applies to the model; ``text`` names the text column of a Hugging Face model
    (``tokenizer`` gives its tokenizer when ``dense`` is a module rather than a directory).
    ``alternatives`` (True or ``PruneSettings``) adds fairness-aware pruning alternatives at the ticket's
    per-layer densities, chosen on ``train_data`` or, without it, on a calibration half of ``data``.
    ``engine="ray"`` audits ``data`` (Parquet/CSV files, a directory or a glob) on ``num_workers`` Ray
    workers (joining the cluster at ``ray_address``, else starting Ray here) with the same result as
    ``engine="local"``, which reads Parquet, directories and globs fragment by fragment in this process.
    Rows whose one-hot value the model has no category for are counted and noted per column and group;
    more than ``max_unseen_share`` of the rows in any column is refused (the audit would measure inputs
    the model never saw as "all categories off").
    """
    _check_arguments(locals())
    policy = policy or Policy()
    if confidence is not None:
        policy = Policy.from_mapping({**policy.to_dict(), "confidence": confidence})
    requested = None if analyses is None else tuple(as_list(analyses, option="--analyses") or ())
    created = None
    if seed is None:
        seed = 0
        created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    if requested is not None:
        AuditConfig(analyses=requested)  # validates the names before any work
    sensitive_columns = as_list(sensitive, option="--sensitive") or []
    feature_columns = as_list(features, option="--features")
    if feature_columns is not None and not feature_columns:
        fail("--features names no column; list the model's input columns, or leave --features out.")
    attribution_settings = AttributionSettings(
        method=attribution_method, target=attribution_target,  # type: ignore[arg-type]
        rows=attribution_rows if attribution_rows is not None else 2000, proxies=tuple(as_list(proxies, option="--proxies") or ()))
    # With Ray the models run on the workers, which may have GPUs the driver lacks: each worker
    # checks --device itself; the driver's own small steps (probe, Captum on the sample) use the CPU.
    target_device = resolve_device(device) if engine != "ray" else torch.device("cpu")
    check_int("--num-workers", num_workers, low=1, high=10_000)
    check_fraction("max_unseen_share (--max-unseen-share)", max_unseen_share, open_low=False, open_high=False)
    if not 0 <= gpus_per_worker <= 64:
        fail(f"--gpus-per-worker must be in [0, 64], got {gpus_per_worker}.")
    step = progress or (lambda *_: None)

    step("Loading models", 0, 1)
    dense_model = load_dense(dense, factory=factory, allow_pickle=allow_pickle)
    if tokenizer is not None:
        dense_model = dataclasses.replace(dense_model, tokenizer=tokenizer)
    ticket_model = load_ticket(ticket, dense=dense_model, mask=mask, factory=factory, allow_pickle=allow_pickle)
    is_text = _check_text_model(dense_model, text=text, features=features)
    chosen, skipped = _choose_analyses(requested, dense_model, ticket_model, is_text=is_text)
    config = AuditConfig(seed=seed, n_boot=n_boot, batch_size=batch_size, device=device, max_rows=max_rows,  # type: ignore[arg-type]
                         analyses=chosen, max_unseen_share=float(max_unseen_share))
    prune_settings = None
    if alternatives:
        if is_text:
            fail("--alternatives works on tabular models; this is a text model.")
        prune_settings = alternatives if isinstance(alternatives, PruneSettings) else PruneSettings()
    step("Loading data", 0, 1)
    if target in sensitive_columns:
        fail(f"the target column '{target}' cannot also be a sensitive column.")
    rows = open_rows(data, engine=engine, split=split, max_rows=max_rows, sensitive=sensitive_columns, target=target,
                      in_memory=is_text or prune_settings is not None)
    train_frame = None
    if prune_settings is not None:  # before any model runs: a bad training table fails fast
        assert rows.frame is not None
        train_frame = (load_table(train_data, text_columns=(*sensitive_columns, target)).frame
                       if train_data is not None else None)
        check_training_data(prune_settings, frame=rows.frame, train_frame=train_frame)
    if "attributions" in chosen and attribution_rows is not None and attribution_rows > rows.total:
        fail(f"--attribution-rows {attribution_rows} is more than the {rows.total} rows of the data. "
             "Ask for fewer rows (or leave it out: 2,000 or all rows, whichever is smaller).")
    groups = rows.groups
    if is_text:
        assert text is not None
        if text in sensitive_columns or text == target:
            fail(f"the text column '{text}' cannot also be the target or a sensitive column.")
        probe: Any = build_text_inputs(rows.probe, column=text, tokenizer=dense_model.tokenizer,
                                       max_length=getattr(dense_model.tokenizer, "model_max_length", None))
        feature_names: tuple[str, ...] = (text,)
    else:
        probe, feature_names = build_features(rows.probe, target=target, features=feature_columns,
                                              preprocess=dense_model.preprocess)
    n_outputs = ModelRunner(dense_model.module, device=target_device).output_width(probe)
    if not ticket_model.same_shape:
        ticket_outputs = ModelRunner(ticket_model.module, device=target_device).output_width(probe)
        if ticket_outputs != n_outputs:
            fail(f"the ticket outputs {ticket_outputs} value(s) per row but the dense model {n_outputs}; both must "
                 "score the same classes in the same order.")
    _, class_names = encode_target(rows.probe, target, n_outputs=n_outputs, labels=dense_model.labels,
                                   require_every_class=False)
    population = rows.population
    plan = AuditPlan(
        dense_model.module, ticket_model.module, target, feature_columns, dense_model.preprocess, text,
        dense_model.tokenizer, dense_model.labels, n_outputs, groups, chosen, n_boot, seed, config.ece_bins,
        batch_size, device, 0 if is_text else int(probe.shape[1]),
        sample_sizes(population, attribution_settings.rows) if "attributions" in chosen else None,
        attribution_settings.target)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        step("Running both models", done, 2 * rows.total)

    state = run_shards(plan, rows, engine=engine, split=split, ray_address=ray_address, num_workers=num_workers,
                        gpus_per_worker=gpus_per_worker, progress=advance)
    cells = state.cells.table()
    class_counts = np.array([cells.layout.column(cells.sums, f"support:{k}").sum() for k in range(len(class_names))])
    check_classes(class_counts, class_names, target=target)
    unseen = _unseen_categories(state.unseen, rows, limit=max_unseen_share)
    settings = AnalysisSettings(class_names, groups, policy.confidence, policy.min_group_size, n_boot, seed,
                                config.ece_bins)
    notes: list[str] = [*skipped, *(_unseen_note(entry) for entry in unseen)]
    step("Measuring groups and bootstrapping", 0, 1)
    performance = performance_from_cells(settings, cells)
    disagreement = disagreement_from_cells(settings, cells, state.examples) if "disagreement" in chosen else None
    compression = analyse_compression(ticket_model.mask, ticket_model.module) if "compression" in chosen else None
    attributions = None
    if "attributions" in chosen:
        step("Attributing both models (Captum)", 0, 1)
        column_of_input = (dense_model.preprocess.column_of_input if dense_model.preprocess is not None
                           else list(feature_names))
        assert state.sample is not None and state.moments is not None
        attributions = attributions_from_sample(
            settings, state.sample, state.moments, dense=dense_model.module, ticket=ticket_model.module,
            column_of_input=column_of_input, sensitive=sensitive_columns, settings=attribution_settings,
            batch_size=batch_size, device=target_device)
        if not any(c in column_of_input for c in sensitive_columns):
            notes.append("No sensitive column is a model input, so reliance on sensitive columns is not defined; "
                         "the attribution section reports proxies instead.")
    attention = None
    if "attention" in chosen:
        found = attention_source(dense_model.module)
        assert found is not None and state.attention is not None and state.heads_per_layer is not None
        attention = attention_from_sums(settings, state.attention, ticket=ticket_model.module,
                                        ticket_mask=ticket_model.mask, source=found[0], recorded_names=found[1],
                                        heads_per_layer=state.heads_per_layer)
        if attention.pruned_heads:
            notes.append(f"The ticket pruned {attention.pruned_heads} attention head(s) entirely; they are reported "
                         "as pruned, not as entropy 0.")
    checks = evaluate_policy(policy, performance, attributions=attributions, attention=attention)
    small = [g.group for g in performance.subgroups if g.insufficient]
    if small:
        notes.append(f"{len(small)} group(s) have fewer than {policy.min_group_size} rows and are reported but "
                     f"not gated: {', '.join(small)}.")
        if policy.on_insufficient == "fail":
            checks = (*checks, insufficient_check(performance))
    if compression is not None and not compression.smaller:
        notes.append(compression.statement)
    alternative_result = None
    if prune_settings is not None:
        step("Pruning alternatives at the same sparsity", 0, 1)
        alternative_result = find_alternatives(
            dense_model, frame=rows.frame, target=target, sensitive=sensitive_columns, features=feature_columns,
            settings=prune_settings, policy=policy, seed=seed, n_boot=n_boot, train_frame=train_frame,
            audited=ticket_model, batch_size=batch_size, explicit_methods=False)
    verdict = verdict_of(checks)
    findings = group_findings(performance, checks, confidence=policy.confidence)
    data_info = {
        "rows": int(rows.total), "sha256": rows.sha256, "target": target, "sensitive": sensitive_columns,
        "features": list(feature_names), "classes": list(class_names),
        "class_counts": {name: int(c) for name, c in zip(class_names, class_counts)},
        "split": split, "groups": [g.name for g in groups.groups], "unseen_categories": unseen,
    }
    step("Done", 1, 1)
    return AuditResult(verdict, checks, dense_model, ticket_model, data_info, policy, config, performance,
                       disagreement, compression, attributions, attention, alternative_result, tuple(notes), created,
                       findings=findings, rate_shifts=rates_moved_together(performance),
                       provenance={"dense_source": dense_model.source, "ticket_source": ticket_model.source,
                                   "data_source": rows.source, "batch_size": batch_size, "device": device,
                                   "engine": engine, "workers": num_workers if engine == "ray" else None})


_PATH = (str, Path)
_ARGUMENT_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "dense": ((nn.Module, *_PATH), "an nn.Module or a path (str or pathlib.Path)"),
    "ticket": ((nn.Module, *_PATH, type(None)), "an nn.Module, a path, or None (with mask=...)"),
    "mask": ((*_PATH, type(None)), "a path to a mask file, or None"),
    "data": ((pd.DataFrame, *_PATH), "a pandas DataFrame or a path (str or pathlib.Path)"),
    "target": ((str,), "a column name (str)"),
    "sensitive": ((str, list, tuple), "a column name or a list of column names"),
    "features": ((str, list, tuple, type(None)), "a list of column names, a comma-separated string, or None"),
    "text": ((str, type(None)), "a column name (str) or None"),
    "split": ((str, type(None)), "'COL=VALUE' or None"),
    "policy": ((Policy, type(None)), "a ticketaudit.Policy (for a dict d: ta.Policy.from_mapping(d)) or None"),
    "seed": ((int, type(None)), "an integer or None"),
    "n_boot": ((int,), "an integer"),
    "confidence": ((float, int, type(None)), "a number in (0.5, 1) or None"),
    "device": ((str,), "'cpu', 'cuda' or 'mps'"),
    "batch_size": ((int,), "an integer"),
    "max_rows": ((int, type(None)), "an integer or None"),
    "analyses": ((str, list, tuple, type(None)), "a list of analysis names, a comma-separated string, or None"),
    "factory": ((str, type(None)), "'MODULE:FUNC' or None"),
    "allow_pickle": ((bool,), "True or False"),
    "alternatives": ((bool, PruneSettings), "True, False or a PruneSettings"),
    "train_data": ((pd.DataFrame, *_PATH, type(None)), "a DataFrame, a path, or None"),
    "engine": ((str,), "'local' or 'ray'"),
    "ray_address": ((str, type(None)), "'host:port' or None"),
    "num_workers": ((int,), "an integer"),
    "gpus_per_worker": ((float, int), "a number"),
    "max_unseen_share": ((float, int), "a share in [0, 1]"),
}


def _check_arguments(arguments: dict[str, Any]) -> None:
    """The API checks what the CLI checks: types, choices and combinations, before any work."""
    for name, (types, accepted) in _ARGUMENT_TYPES.items():
        value = arguments[name]
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            fail(f"{name} must be {accepted}; got {describe(value)}.")
    if arguments["device"] not in DEVICES:
        hint = " (devices are lower case)" if arguments["device"].lower() in DEVICES else ""
        fail(f"device must be one of {', '.join(DEVICES)}{hint}; got {arguments['device']!r}.")
    if arguments["engine"] != "ray" and (arguments["ray_address"] is not None or arguments["gpus_per_worker"]):
        fail("ray_address (--ray-address) and gpus_per_worker (--gpus-per-worker) belong to engine='ray' "
             "(--engine ray); add it or drop them.")
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
            fail(f"{entry['rows']} of {rows.total} rows ({entry['share']:.1%}) have a value of column "
                 f"'{entry['column']}' that the model has no category for ({_first_values(entry)}); they would be "
                 f"audited as 'no category' (all zeros). Map the values to the model's categories (check letter case "
                 f"and spelling against preprocess.json), or raise --max-unseen-share (now {limit:g}) to audit anyway.")
    return unseen


def _first_values(entry: dict[str, Any]) -> str:
    shown = ", ".join(repr(v) for v in entry["values"])
    return f"e.g. {shown}" + (", ..." if len(entry["values"]) < entry["rows"] else "")


def _unseen_note(entry: dict[str, Any]) -> str:
    worst = entry["groups"][0]
    return (f"{entry['rows']} row(s) ({entry['share']:.1%}) have a value of '{entry['column']}' the model has no "
            f"category for ({_first_values(entry)}); the model saw them as 'no category' (all zeros). Most affected "
            f"group: {worst['group']} ({worst['share']:.1%} of its rows).")


def _check_text_model(dense: LoadedModel, *, text: str | None, features: str | Sequence[str] | None) -> bool:
    """Whether the audit reads a text column, after checking that model and options agree."""
    is_hf = is_huggingface_module(dense.module)
    if text is None:
        if is_hf:
            fail(f"'{dense.source}' is a Hugging Face text model: name the text column with --text COL.")
        return False
    if not is_hf:
        fail(f"--text needs a Hugging Face model directory (config.json, model.safetensors and tokenizer files); "
             f"'{dense.source}' is a tabular model. Leave --text out.")
    if dense.tokenizer is None:
        fail(f"'{dense.source}' has no tokenizer files (tokenizer.json or vocab.txt and tokenizer_config.json). "
             "Save them beside the model with tokenizer.save_pretrained(directory).")
    if features is not None:
        fail("--features and --text cannot be combined: a text model reads only the text column.")
    return True


def _choose_analyses(requested: tuple[str, ...] | None, dense: LoadedModel, ticket: LoadedModel, *,
                     is_text: bool) -> tuple[tuple[str, ...], list[str]]:
    """The analyses to run (those requested, checked against the model, or every one that applies) and a
    note for each one skipped because the ticket's shapes differ from the dense model's."""
    has_attention = attention_source(dense.module) is not None
    if requested is None:
        chosen = tuple(a for a in ANALYSES if (a != "attention" or has_attention) and (a != "attributions" or not is_text))
    else:
        if "attention" in requested and not has_attention:
            fail(f"--analyses attention needs a model with attention layers (a Hugging Face model, "
                 f"nn.MultiheadAttention, or a module implementing ticketaudit's AttentionAdapter); "
                 f"'{dense.source}' has none. Leave attention out of --analyses.")
        if "attributions" in requested and is_text:
            fail("attributions on text models are not available in this version; leave attributions out of "
                 "--analyses (metrics, disagreement, attention and compression run on text).")
        chosen = requested
    if ticket.same_shape:
        return chosen, []
    weight_wise = {"compression": "per-layer mask density and size accounting compare the ticket's weights one by one "
                                  "with the dense model's",
                   "attention": "per-head attention comparisons pair each ticket head with the dense model's"}
    skipped = [f"{name} was skipped: {why}, and this ticket's shapes differ from the dense model's (structured "
               "pruning or another architecture); the analyses of predictions ran." for name, why in
               weight_wise.items() if name in chosen]
    kept = tuple(a for a in chosen if a not in weight_wise)
    if not kept:
        fail("the ticket's shapes differ from the dense model's, so only analyses of predictions can run (metrics, "
             "disagreement, attributions); add one of them to --analyses.")
    return kept, skipped
