"""Inputs as modalities: the audit asks the modality, never the kind of input, how rows become inputs.

``choose_modality`` is the one place that decides which modality a model and its options call for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._validation import fail
from .base import Modality

if TYPE_CHECKING:
    from ..tickets.load import LoadedModel

__all__ = ["Modality", "choose_modality"]


def choose_modality(dense: LoadedModel, *, target: str, sensitive: Sequence[str], features: list[str] | None,
                    text: str | None, image: str | None = None, task: Any = None) -> type[Modality]:
    """The modality ``dense`` and the options call for, after checking that they agree (before any
    row is read: the modality decides how the rows are read)."""
    from ..llm.models import is_causal_lm
    from ..tickets.huggingface import is_huggingface_module, reads_pixels

    if is_causal_lm(dense.module) or task is not None:
        return _choice_modality(dense, target=target, sensitive=sensitive, features=features, text=text, image=image,
                                task=task)

    if image is not None or reads_pixels(dense.module) or dense.image_processor is not None:
        return _image_modality(dense, target=target, sensitive=sensitive, features=features, text=text, image=image)
    is_hf = is_huggingface_module(dense.module)
    if text is None:
        if is_hf:
            fail(f"'{dense.source}' is a Hugging Face text model: name the text column with --text COL.")
        from .tabular import TabularModality

        return TabularModality
    if not is_hf:
        fail(f"--text needs a Hugging Face model directory (config.json, model.safetensors and tokenizer files); "
             f"'{dense.source}' is a tabular model. Leave --text out.")
    if dense.tokenizer is None:
        fail(f"'{dense.source}' has no tokenizer files (tokenizer.json or vocab.txt and tokenizer_config.json). "
             "Save them beside the model with tokenizer.save_pretrained(directory).")
    if features is not None:
        fail("--features and --text cannot be combined: a text model reads only the text column.")
    if text in sensitive or text == target:
        fail(f"the text column '{text}' cannot also be the target or a sensitive column.")
    from .text import TextModality

    return TextModality


def _choice_modality(dense: LoadedModel, *, target: str, sensitive: Sequence[str], features: list[str] | None,
                     text: str | None, image: str | None, task: Any) -> type[Modality]:
    from ..llm.models import is_causal_lm

    if not is_causal_lm(dense.module):
        fail(f"--task and --benchmark score answers with a causal language model; '{dense.source}' is not one (a Hugging "
             "Face directory whose config.json names a ...ForCausalLM architecture, or a .gguf file).")
    if task is None:
        fail(f"'{dense.source}' is a causal language model: say what it answers with --benchmark bbq|crows-pairs, or "
             "--task choice with --prompt COL (or --prompt-template FILE) and --choices COL,COL,...")
    if text is not None or image is not None or features is not None:
        fail("--text, --image and --features belong to classifiers; a language model reads --prompt and --choices.")
    clash = [c for c in (*task.choices, task.prompt) if c is not None and (c == target or c in sensitive)]
    if clash:
        fail(f"the column '{clash[0]}' is a prompt or choice column and cannot also be the target or a sensitive column.")
    if dense.tokenizer is None:
        fail(f"'{dense.source}' has no tokenizer files (tokenizer.json and tokenizer_config.json). Save them beside the "
             "model with tokenizer.save_pretrained(directory).")
    from .choice import ChoiceModality, PairModality

    return PairModality if task is not None and not task.has_prompts else ChoiceModality


def _image_modality(dense: LoadedModel, *, target: str, sensitive: Sequence[str], features: list[str] | None,
                    text: str | None, image: str | None) -> type[Modality]:
    if image is None:
        fail(f"'{dense.source}' is an image model: name the column of image paths (or encoded bytes) with --image COL.")
    if text is not None:
        fail("--text and --image cannot be combined: a model reads text or images. Keep the one the model reads.")
    if features is not None:
        fail("--features and --image cannot be combined: an image model reads only the image column.")
    if image in sensitive or image == target:
        fail(f"the image column '{image}' cannot also be the target or a sensitive column.")
    from .image import ImageModality

    return ImageModality
