"""``--task likelihood``: the audit of a language model on texts without labels — load, score every text under both
models, per-group loss per token (the ``likelihood`` analysis), gate, assemble.

Its own short path: the phases of ``audit`` build on labelled predictions (cells, class counts, accuracy findings),
which texts scored for their likelihood do not have. It runs on the local engine.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._validation import fail
from .analyses import registry
from .analyses.base import AnalysisSettings, FinishContext
from .analyses.builtin.likelihood import TextScores
from .analyses.predict import ModelRunner, choose_precision, resolve_device
from .checks import decide, not_evaluated_check, verdict_of
from .config import AuditConfig
from .data import build_groups, load_table
from .llm.encode import model_limit
from .llm.likelihood import encode_texts, text_loglikelihoods, token_counts
from .tickets import LoadedModel, load_dense, load_ticket

ANALYSES = ("likelihood", "compression")
DEFAULT_TOKENS = 4096
"""Tokens held in one pass (``--batch-size``), as for a language model's items."""


def audit_texts(options: Any, *, dense: Any, ticket: Any, mask: Any, tokenizer: Any, data: Any,
                step: Any) -> Any:
    """The ``AuditResult`` of ``--task likelihood`` (``options``: the checked ``AuditOptions``)."""
    from .audit import AuditResult

    requested = options.requested or ANALYSES
    unknown = [name for name in requested if name not in ANALYSES]
    if unknown:
        fail(f"--task likelihood runs {' and '.join(ANALYSES)}; leave {', '.join(unknown)} out of --analyses.")
    if options.engine.engine != "local":
        fail("--task likelihood runs on the local engine; leave out --engine ray.")
    step("Loading models", 0, 1)
    dense_model, ticket_model = _models(options, dense=dense, ticket=ticket, mask=mask, tokenizer=tokenizer)
    step("Loading data", 0, 1)
    table = load_table(data, split=options.split, max_rows=options.max_rows,
                       text_columns=(str(options.text), *options.sensitive))
    frame = table.frame
    if options.text not in frame.columns:
        fail(f"--text column '{options.text}' is not in the data (columns: {', '.join(map(str, frame.columns[:10]))}).")
    groups = build_groups(frame, list(options.sensitive))
    limit = model_limit(dense_model.module.config)
    missing = np.flatnonzero(frame[options.text].isna().to_numpy())
    if len(missing):
        shown = ", ".join(str(r + 1) for r in missing[:5]) + (", ..." if len(missing) > 5 else "")
        fail(f"column '{options.text}': {len(missing)} text(s) are missing (rows {shown}) and have no tokens to score; "
             "drop those rows or fill them.")
    try:
        inputs = encode_texts(frame[options.text].astype(str).tolist(), tokenizer=dense_model.tokenizer, limit=limit)
    except ValueError as error:
        fail(f"column '{options.text}': {error}; drop those rows or fill them.")
    device = resolve_device(options.engine.device)
    choice = choose_precision(options.precision, models=(dense_model.module, ticket_model.module),
                              device=options.engine.device, rows=len(frame))
    tokens = options.engine.batch_size or DEFAULT_TOKENS
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        step("Running both models", done, 2 * len(frame))

    scores = [text_loglikelihoods(ModelRunner(model.module, device=device, precision=choice.name).module, inputs,
                                  device=device, tokens=tokens, progress=advance)
              for model in (dense_model, ticket_model)]
    step("Measuring groups and bootstrapping", 0, 1)
    policy = options.policy
    settings = AnalysisSettings(class_names=(), groups=groups, confidence=policy.confidence,
                                min_group_size=policy.min_group_size, n_boot=options.n_boot, seed=options.seed,
                                ece_bins=AuditConfig().ece_bins)
    finish = FinishContext(audit=None, settings=settings, cells=None, results={},  # type: ignore[arg-type]
                           say=lambda text: step(text, 0, 1))
    analysis = registry.get("likelihood")
    state = TextScores(dense=scores[0], ticket=scores[1], tokens=token_counts(inputs), groups=groups,
                       truncated=int(inputs.truncated.sum()), limit=limit,
                       prefix=str(dense_model.tokenizer.decode([int(inputs.contexts[0][0])])) if len(frame) else "")
    results: dict[str, Any] = {"likelihood": analysis.finish(state, finish)}
    notes = list(analysis.notes(results["likelihood"], finish))
    if "compression" in requested and ticket_model.same_shape:
        from .analyses.compression import analyse_compression

        results["compression"] = analyse_compression(ticket_model.mask, ticket_model.module)
        if not results["compression"].smaller:
            notes.append(results["compression"].statement)
    candidates = analysis.candidates(results["likelihood"], policy)
    checks = (*(decide(candidates, confidence=policy.confidence) if candidates else [_no_group_to_gate(policy)]),
              *_not_evaluated(policy))
    config = AuditConfig(seed=options.seed, n_boot=options.n_boot, batch_size=tokens, device=options.engine.device,
                         max_rows=options.max_rows, analyses=tuple(results), max_unseen_share=options.max_unseen_share,
                         precision=choice.name, precision_reason=choice.reason)
    step("Done", 1, 1)
    return AuditResult(
        verdict=verdict_of(checks, policy=policy), checks=checks, dense=dense_model, ticket=ticket_model,
        data=_data_summary(options, table, groups, inputs), policy=policy, config=config, results=results,
        alternatives=None, notes=tuple(notes), created=options.created,
        provenance={"dense_source": dense_model.source, "ticket_source": ticket_model.source,
                    "data_source": table.source, "batch_size": tokens, "device": options.engine.device,
                    "engine": "local", "workers": None, "precision": f"{choice.name} ({choice.reason})",
                    "task": "likelihood", "model_limit": limit})


def _models(options: Any, *, dense: Any, ticket: Any, mask: Any, tokenizer: Any) -> tuple[LoadedModel, LoadedModel]:
    """Both models; the dense one must be a causal language model with a tokenizer."""
    from .llm.models import is_causal_lm

    dense_model = load_dense(dense, factory=options.factory, allow_pickle=options.allow_pickle)
    if tokenizer is not None:
        dense_model = dataclasses.replace(dense_model, tokenizer=tokenizer)
    if not is_causal_lm(dense_model.module) or dense_model.tokenizer is None:
        fail("--task likelihood scores texts with a causal language model and its tokenizer: give --dense a causal-LM "
             "directory or .gguf file (for a classifier, leave out --task).")
    ticket_model = load_ticket(ticket, dense=dense_model, mask=mask, factory=options.factory,
                               allow_pickle=options.allow_pickle)
    return dense_model, ticket_model


def _no_group_to_gate(policy: Any) -> Any:
    """No group has ``min_group_size`` texts: nothing is shown either way (never a pass)."""
    return not_evaluated_check(
        "max_group_excess_loss_increase", policy.max_group_excess_loss_increase, family="excess_loss_increase",
        reason=f"no group has {policy.min_group_size} texts (policy.min_group_size); more texts per group would")


def _not_evaluated(policy: Any) -> list[Any]:
    """The optional gates the policy sets that a likelihood audit has nothing to evaluate on (no labels)."""
    out = []
    for analysis in registry.analyses():
        for key, family in analysis.gates.items():
            tolerance = getattr(policy, key, None)
            if tolerance is not None:
                out.append(not_evaluated_check(key, tolerance, family=family, reason=(
                    f"--task likelihood scores texts without labels; {key} gates the {analysis.name} analysis, which "
                    "needs them")))
    return out


def _data_summary(options: Any, table: Any, groups: Any, inputs: Any) -> dict[str, Any]:
    truncated = np.asarray(inputs.truncated)
    return {"rows": int(len(table.frame)), "sha256": table.sha256, "target": "", "sensitive": list(options.sensitive),
            "features": [str(options.text)], "modality": "likelihood",
            "task": {"kind": "likelihood", "text": str(options.text)}, "classes": [], "class_counts": {},
            "split": options.split, "groups": [g.name for g in groups.groups], "unseen_categories": [],
            "truncated_texts": int(truncated.sum())}
