"""What a ticket must share with its dense model (architecture, labels, preprocessing, tokenizer), each refused
with the first difference named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .._validation import fail
from ..preprocess import InputSpec, Preprocessor
from .model import LoadedModel, differences

MSG_ARCH_MISMATCH = "{what} does not match the architecture: {detail}. {fix}"
MSG_OWN_ARCHITECTURE = (
    "A ticket given as weights must be a pruned copy of the dense model. A ticket with its own, smaller "
    "architecture (structured pruning that removed units, a distilled student) can be audited on its "
    "predictions when it carries that architecture: save it as a bundle (config.json with its own "
    "arguments, see docs/guide/models-and-tickets.md, 'Bundles'), or pass the nn.Module itself to ta.audit(ticket=...)."
)


def check_same_architecture(dense: nn.Module, ticket: nn.Module) -> None:
    """A ticket given as weights over the dense model's architecture must match it exactly."""
    difference = differences(dense, ticket)
    if difference is not None:
        fail(MSG_ARCH_MISMATCH.format(what="the ticket", detail=difference, fix=MSG_OWN_ARCHITECTURE))


def check_same_metadata(
    dense: LoadedModel, *, labels: tuple[str, ...] | None, preprocess: Preprocessor | None, source: Path
) -> None:
    """Both models read the same inputs and name their outputs alike, or the audit would compare a
    model with a reordered copy of itself: a ticket's own metadata that differs is refused, named."""
    if labels is not None and dense.labels is not None and tuple(labels) != tuple(dense.labels):
        what = (
            "the same labels in another order: the ticket's output i would be scored as the dense model's"
            if sorted(labels) == sorted(dense.labels)
            else "different labels"
        )
        fail(
            f"the ticket '{source}' lists labels {list(labels)} but the dense model '{dense.source}' lists "
            f"{list(dense.labels)} ({what}). A ticket is a pruned copy of the dense model: save it with the dense "
            "model's labels in the same order."
        )
    if labels is not None and dense.labels is None:
        fail(
            f"the ticket '{source}' lists labels {list(labels)} but the dense model '{dense.source}' lists none. "
            "Give both models the same label list (or neither)."
        )
    if preprocess is not None and dense.preprocess is not None and preprocess != dense.preprocess:
        fail(
            f"the ticket '{source}' has its own preprocess.json, which differs from the dense model's: "
            f"{_preprocess_difference(dense.preprocess, preprocess)}. Both models must read the table the same way; "
            "copy the dense model's preprocess.json into the ticket (or remove the ticket's)."
        )
    if preprocess is not None and dense.preprocess is None:
        fail(
            f"the ticket '{source}' has a preprocess.json but the dense model '{dense.source}' has none. "
            "Give both models the same preprocess.json (or neither)."
        )


def check_same_tokenizer(dense: LoadedModel, tokenizer: Any, *, source: Path) -> None:
    """A language model and its ticket must read text the same way, or their answers are not comparable."""
    from ..llm.models import tokenizer_difference

    difference = tokenizer_difference(dense.tokenizer, tokenizer)
    if difference is not None:
        fail(f"the ticket '{source}' and the dense model '{dense.source}' have different tokenizers: {difference}. "
             "Save the dense model's tokenizer beside the ticket (tokenizer.save_pretrained(ticket_dir)).")


def _preprocess_difference(dense: Preprocessor, ticket: Preprocessor) -> str:
    if dense.columns != ticket.columns:
        return f"columns {dense.columns} (dense) vs {ticket.columns} (ticket)"
    for a, b in zip(dense.inputs, ticket.inputs):
        if a != b:
            return f"input '{a.column}' is {_describe_spec(a)} (dense) vs {_describe_spec(b)} (ticket)"
    return "they differ"  # pragma: no cover - equal specs and columns mean equal preprocessors


def _describe_spec(spec: InputSpec) -> str:
    if spec.kind == "numeric":
        return f"numeric, mean {spec.mean}, std {spec.std}"
    return f"one-hot over {list(spec.categories)}"
