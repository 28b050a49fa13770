"""``ticketaudit prune --model DIR|FILE.gguf`` for causal language models: magnitude, Wanda or SparseGPT, unstructured
or N:M, layer by layer on calibration text; writes a Hugging Face directory (weights with exact zeros, config,
tokenizer) that ``report --ticket DIR`` loads as it is, and ``prune.json`` saying how it was made."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._io import sha256_path
from ._validation import fail
from .llm.models import is_causal_lm, save_quietly

PATTERNS = {"2:4": (2, 4), "4:8": (4, 8)}
SEQUENCES = 32
LENGTH = 128
"""Calibration: 32 sequences of 128 tokens by default (the papers: 128 x 2,048; a CPU budget here)."""


def parse_pattern(pattern: str | None) -> tuple[int, int] | None:
    if pattern is None:
        return None
    if pattern not in PATTERNS:
        fail(f"--pattern must be one of {', '.join(PATTERNS)}; got {pattern!r}.")
    return PATTERNS[pattern]


def calibration_text(path: Path | None) -> tuple[str, str]:
    """The calibration text and where it came from (the shipped text by default)."""
    from ._resources import datasets_dir

    path = path or datasets_dir() / "calibration" / "ticketaudit_docs.txt"
    if not path.is_file():
        fail(f"--calibration '{path}' does not exist; give a UTF-8 text file of the kind of text the model will see.")
    try:
        return path.read_text(encoding="utf-8"), f"{path.name} (sha256 {sha256_path(path)[:16]})"
    except UnicodeDecodeError:
        fail(f"--calibration '{path}' is not UTF-8 text.")


PROTECT_WEIGHT = 4.0
"""``--protect-weight``: a protected item's tokens count this many times in the activation statistics."""
TRUE_VALUES, FALSE_VALUES = ("true", "1", "yes", "y", "t"), ("false", "0", "no", "n", "f", "")


@dataclass(frozen=True)
class CalibrationSource:
    """What calibrates, read and checked before the model loads: the texts, each one's group (with
    ``--balance-groups``; None otherwise), which are protected (with ``--protect``; None otherwise) and what
    ``prune.json`` says of them."""

    texts: list[str]
    groups: list[str] | None
    described: dict[str, Any]
    protected: list[bool] | None = None
    protect_weight: float = PROTECT_WEIGHT

    def sequences(self, tokenizer: Any, *, sequences: int, length: int, seed: int
                  ) -> tuple[list[torch.Tensor], list[int] | None, list[torch.Tensor] | None, dict[str, Any]]:
        """The calibration sequences, each one's group index (or None), each one's token weights (or None) and the
        summary's entry."""
        from .pruning.language import (calibration_batches, grouped_calibration, grouped_protected_batches,
                                       protected_batches)

        if self.protected is not None and self.groups is not None:
            batches, owners, names, token_weights, covered, total = grouped_protected_batches(
                tokenizer, self.texts, self.groups, self.protected, sequences=sequences, length=length,
                weight=self.protect_weight)
            described = {**self.described, "groups": list(names), "sequences_per_group": len(batches) // len(names),
                         "protected": {**self.described["protected"], "tokens": total,
                                       "tokens_in_calibration": covered}}
            return batches, owners, token_weights, described
        if self.protected is not None:
            batches, token_weights, covered, total = protected_batches(tokenizer, self.texts, self.protected,
                                                                sequences=sequences, length=length,
                                                                weight=self.protect_weight)
            described = {**self.described, "protected": {**self.described["protected"],
                                                          "tokens": total, "tokens_in_calibration": covered}}
            return batches, None, token_weights, described
        if self.groups is None:
            return (calibration_batches(tokenizer, "\n\n".join(self.texts), sequences=sequences, length=length),
                    None, None, self.described)
        batches, owners, names = grouped_calibration(tokenizer, self.texts, self.groups, sequences=sequences,
                                                     length=length, seed=seed)
        return batches, owners, None, {**self.described, "groups": list(names),
                                       "sequences_per_group": len(batches) // len(names), "seed": seed}


def calibration_source(path: Path | None, *, text_column: str | None, balance_groups: str | None,
                       protect: str | None = None, protect_weight: float = PROTECT_WEIGHT) -> CalibrationSource:
    """A text file (the shipped text by default), or an item file's ``text_column`` grouped by ``balance_groups``,
    its ``protect`` column marking the items whose activations weigh ``protect_weight`` times more."""
    from .llm.tasks import ITEM_SUFFIXES, read_item_file

    if path is None or not str(path).lower().endswith(ITEM_SUFFIXES):
        if text_column is not None or balance_groups is not None or protect is not None:
            fail("--calibration-text, --balance-groups and --protect read an item file (--calibration "
                 "FILE.jsonl|.csv|.parquet with a text column, and a group or protect column).")
        text, source = calibration_text(path)
        return CalibrationSource([text], None, {"source": source})
    if text_column is None:
        fail(f"--calibration '{path}' is a file of items: name its text column with --calibration-text COL.")
    if not path.is_file():
        fail(f"--calibration '{path}' does not exist.")
    from ._validation import check_columns

    frame = read_item_file(path, what=f"--calibration '{path}'")
    check_columns("calibration", [text_column, *(c for c in (balance_groups, protect) if c)], list(frame.columns))
    described: dict[str, Any] = {"source": f"{path.name} (sha256 {sha256_path(path)[:16]}), column '{text_column}'"}
    texts = frame[text_column].astype(str).tolist()
    if protect is not None:
        marked = _protected(frame[protect], column=protect)
        if not 1.0 < protect_weight <= 1000.0:
            fail(f"--protect-weight must be above 1 (a weight of 1 protects nothing) and at most 1000; got "
                 f"{protect_weight}.")
        described["protected"] = {"column": protect, "items": int(sum(marked)), "of": len(marked),
                                  "weight": protect_weight}
        if balance_groups is not None:
            described["balanced_by"] = balance_groups
        groups = frame[balance_groups].astype(str).tolist() if balance_groups is not None else None
        return CalibrationSource(texts, groups, described, marked, protect_weight)
    if balance_groups is None:
        return CalibrationSource(texts, None, described)
    return CalibrationSource(texts, frame[balance_groups].astype(str).tolist(),
                             {**described, "balanced_by": balance_groups})


def _protected(values: Any, *, column: str) -> list[bool]:
    """The ``--protect`` column as booleans: true/false, 1/0, yes/no (any case); at least one item marked."""
    words = [str(v).strip().lower() if v is not None and v == v else "" for v in values.tolist()]
    unknown = sorted({w for w in words if w not in TRUE_VALUES + FALSE_VALUES})
    if unknown:
        fail(f"--protect column '{column}' must hold true/false (or 1/0, yes/no) per item; found "
             f"{', '.join(repr(u) for u in unknown[:5])}.")
    marked = [w in TRUE_VALUES for w in words]
    if not any(marked):
        fail(f"--protect column '{column}' marks no item as protected; mark the items whose dense answers must "
             "be kept with true.")
    return marked


def token_loss(module: torch.nn.Module, batches: list[torch.Tensor], *, device: torch.device | None = None) -> float:
    """Mean next-token loss (nats per token) over ``batches``, run on ``device`` (default: where they are); NaN for
    no batches."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in batches:
            batch = batch if device is None else batch.to(device)
            loss = module(input_ids=batch, labels=batch, use_cache=False).loss
            total += float(loss) * (batch.shape[1] - 1)
            count += batch.shape[1] - 1
    return total / count if count else float("nan")


def prune_language_model(model: str | Path, *, method: str, sparsity: float, pattern: str | None, out: Path,
                         calibration: Path | None = None, calibration_column: str | None = None,
                         balance_groups: str | None = None, protect: str | None = None,
                         protect_weight: float = PROTECT_WEIGHT, seed: int = 0, sequences: int = SEQUENCES,
                         length: int = LENGTH, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Prune a causal LM and save it to ``out``; returns the summary also written to ``out/prune.json``."""
    from .pruning.sequential import prune_layerwise
    from .tickets.load import load_dense

    step = progress or (lambda *_: None)
    if not 0 < sparsity < 1:
        fail(f"--sparsity must be in (0, 1); got {sparsity}.")
    shape = parse_pattern(pattern)
    if shape is not None and abs(sparsity - (1 - shape[0] / shape[1])) > 1e-9:
        fail(f"--pattern {pattern} removes {1 - shape[0] / shape[1]:.0%} of each layer; give --sparsity "
             f"{1 - shape[0] / shape[1]:g} with it.")
    source = calibration_source(calibration, text_column=calibration_column, balance_groups=balance_groups,
                                protect=protect, protect_weight=protect_weight)
    step("Loading the model", 0, 1)
    loaded = load_dense(model)
    if not is_causal_lm(loaded.module) or loaded.tokenizer is None:
        fail(f"'{model}' is not a causal language model with a tokenizer (a Hugging Face ...ForCausalLM directory or "
             "a .gguf file). For classifiers use --dense with --data, --target and --sensitive.")
    batches, groups, token_weights, described = source.sequences(loaded.tokenizer, sequences=sequences,
                                                                 length=length, seed=seed)
    held_out = batches[-max(1, len(batches) // 8):]
    before = token_loss(loaded.module, held_out)
    start = time.perf_counter()
    masks = prune_layerwise(loaded.module, batches, method=method, sparsity=sparsity, pattern=shape, groups=groups,
                            token_weights=token_weights, progress=lambda done, total: step(f"Pruning with {method}, block by block", done, total))
    seconds = time.perf_counter() - start
    after = token_loss(loaded.module, held_out)
    out.mkdir(parents=True, exist_ok=True)
    save_quietly(loaded.module, out)
    loaded.tokenizer.save_pretrained(out)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    summary = {"model": str(model), "method": method, "sparsity": sparsity, "pattern": pattern,
               "calibration": {**described, "sequences": len(batches), "tokens_per_sequence": length},
               "decoder_weight_sparsity": 1 - kept / total, "pruned_tensors": len(masks),
               "loss_per_token": {"dense": before, "ticket": after, "on": "the last eighth of the calibration "
                                                                          "sequences (also used to calibrate)"},
               "seconds": round(seconds, 1)}
    (out / "prune.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
