"""``--task likelihood``: the audit of a language model on texts without labels — load, score every text under both
models, per-group loss per token (the ``likelihood`` analysis), gate, assemble.

Its own short path: the phases of ``audit`` build on labelled predictions (cells, class counts, accuracy findings),
which texts scored for their likelihood do not have. It runs on the local engine.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._validation import fail, rows_words
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
                step: Any) -> dict[str, Any]:
    """The fields of the ``AuditResult`` of ``--task likelihood`` (``options``: the checked ``AuditOptions``)."""
    requested = options.requested or ANALYSES
    unknown = [name for name in requested if name not in ANALYSES]
    if unknown:
        fail(f"--task likelihood runs {' and '.join(ANALYSES)}; leave {', '.join(unknown)} out of --analyses.")
    if options.engine.engine != "local":
        fail("--task likelihood runs on the local engine; leave out --engine ray.")
    if options.prune is not None:
        fail("--alternatives compares candidates on items with answers (--benchmark, --task choice|pair); "
             "--task likelihood scores texts without them: leave out --alternatives.")
    step("Loading models", 0, 1)
    dense_model, ticket_model = _models(options, dense=dense, ticket=ticket, mask=mask, tokenizer=tokenizer)
    step("Loading data", 0, 1)
    table = load_table(data, split=options.split, max_rows=options.max_rows,
                       text_columns=(str(options.text), *options.sensitive))
    groups = build_groups(table.frame, list(options.sensitive))
    limit = model_limit(dense_model.module.config)
    inputs = _encoded(table.frame, column=str(options.text), tokenizer=dense_model.tokenizer, limit=limit)
    counts = token_counts(inputs)
    choice = choose_precision(options.precision, models=(dense_model.module, ticket_model.module),  # a token costs
                              device=options.engine.device, rows=int(counts.sum()))  # its parameters
    tokens = options.engine.batch_size or DEFAULT_TOKENS
    scores = _scores((dense_model, ticket_model), inputs, device=options.engine.device, precision=choice.name,
                     tokens=tokens, step=step)
    step("Measuring groups and bootstrapping", 0, 1)
    state = TextScores(dense=scores[0], ticket=scores[1], tokens=counts, groups=groups,
                       windowed=int(inputs.windowed.sum()), limit=limit,
                       prefix=str(dense_model.tokenizer.decode([inputs.prefix])))
    results, notes, checks = _analysed(options, state, ticket_model, requested=requested, step=step)
    config = AuditConfig(seed=options.seed, n_boot=options.n_boot, batch_size=tokens, device=options.engine.device,
                         max_rows=options.max_rows, analyses=tuple(results), max_unseen_share=options.max_unseen_share,
                         precision=choice.name, precision_reason=choice.reason)
    step("Done", 1, 1)
    return dict(
        verdict=verdict_of(checks, policy=options.policy), checks=checks, dense=dense_model, ticket=ticket_model,
        data=_data_summary(options, table, groups, inputs), policy=options.policy, config=config, results=results,
        alternatives=None, notes=tuple(notes), created=options.created,
        provenance={"dense_source": dense_model.source, "ticket_source": ticket_model.source,
                    "data_source": table.source, "batch_size": tokens, "device": options.engine.device,
                    "engine": "local", "workers": None, "precision": f"{choice.name} ({choice.reason})",
                    "task": "likelihood", "model_limit": limit})


def _encoded(frame: Any, *, column: str, tokenizer: Any, limit: int) -> Any:
    """The texts of ``column`` encoded for scoring; a missing column, a missing or an empty text is exit 2."""
    if column not in frame.columns:
        fail(f"--text column '{column}' is not in the data (columns: {', '.join(map(str, frame.columns[:10]))}).")
    missing = np.flatnonzero(frame[column].isna().to_numpy())
    if len(missing):
        fail(f"column '{column}' is missing in {rows_words(len(missing), missing)}: no text to score; drop those rows "
             "or fill them.")
    try:
        return encode_texts(frame[column].astype(str).tolist(), tokenizer=tokenizer, limit=limit)
    except ValueError as error:
        fail(f"column '{column}': {error}; drop those rows or fill them.")


def _scores(models: tuple[LoadedModel, LoadedModel], inputs: Any, *, device: str, precision: str, tokens: int,
            step: Any) -> list[np.ndarray]:
    """Each model's summed log-likelihood of every text, in ``precision`` on ``device``, with progress."""
    where = resolve_device(device)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        step("Running both models", done, 2 * len(inputs.windows))

    return [text_loglikelihoods(ModelRunner(model.module, device=where, precision=precision).module, inputs,
                                device=where, tokens=tokens, progress=advance) for model in models]


def _analysed(options: Any, state: TextScores, ticket: LoadedModel, *, requested: tuple[str, ...],
              step: Any) -> tuple[dict[str, Any], list[str], tuple[Any, ...]]:
    """The likelihood (and compression) results, their notes and the policy checks."""
    policy = options.policy
    settings = AnalysisSettings(class_names=(), groups=state.groups, confidence=policy.confidence,
                                min_group_size=policy.min_group_size, n_boot=options.n_boot, seed=options.seed,
                                ece_bins=AuditConfig().ece_bins)
    finish = FinishContext(audit=None, settings=settings, cells=None, results={},  # type: ignore[arg-type]
                           say=lambda text: step(text, 0, 1))
    analysis = registry.get("likelihood")
    results: dict[str, Any] = {"likelihood": analysis.finish(state, finish)}
    notes = list(analysis.notes(results["likelihood"], finish))
    if "compression" in requested and ticket.same_shape:
        from .analyses.compression import analyse_compression

        results["compression"] = analyse_compression(ticket.mask, ticket.module)
        if not results["compression"].smaller:
            notes.append(results["compression"].statement)
    candidates = analysis.candidates(results["likelihood"], policy)
    checks = (*(decide(candidates, confidence=policy.confidence) if candidates else [_no_group_to_gate(policy)]),
              *_not_evaluated(policy))
    return results, notes, checks


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
    return {"rows": int(len(table.frame)), "sha256": table.sha256, "target": "", "sensitive": list(options.sensitive),
            "features": [str(options.text)], "modality": "likelihood",
            "task": {"kind": "likelihood", "text": str(options.text)}, "classes": [], "class_counts": {},
            "split": options.split, "groups": [g.name for g in groups.groups], "unseen_categories": [],
            "windowed_texts": int(np.sum(inputs.windowed))}
