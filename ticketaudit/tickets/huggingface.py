"""Hugging Face model directories (``config.json`` + ``model.safetensors`` + tokenizer files), read
offline (``local_files_only=True``) with the eager attention implementation so attention
probabilities can be returned. ``transformers`` is imported only when such a directory is given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .. import paths
from .._io import sha256_path
from .._validation import fail
from ..llm.models import is_causal_lm, names_causal_lm
from .checks import check_same_metadata, check_same_tokenizer
from .mask import Mask
from .model import Format, LoadedModel, dense_model, image_processor_in, ticket_model

MSG_NO_TRANSFORMERS = (
    "'{path}' is a Hugging Face model directory, which needs the 'transformers' package. "
    "Install it with: pip install 'ticketaudit[hf]'."
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")
CAUSAL_TYPES = frozenset({"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2", "phi", "phi3", "opt",
                          "bloom", "falcon", "gemma", "gemma2", "mixtral", "ctrl", "xglm"})


def is_huggingface_dir(path: Path) -> bool:
    """A directory whose config.json names a Hugging Face ``model_type`` (and no ticketaudit architecture)."""
    config_path = path / paths.BUNDLE_CONFIG
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and "architecture" not in config and "model_type" in config


@dataclass(frozen=True, eq=False)
class HuggingFaceModel:
    """The loaded classifier, its tokenizer (None when the directory has none) and its label names."""

    module: nn.Module
    tokenizer: Any
    labels: tuple[str, ...] | None
    image: bool = False
    """An image classifier (``AutoModelForImageClassification``): it reads pixels, not tokens."""
    causal: bool = False
    """A causal language model (``AutoModelForCausalLM``): it scores answers, it has no classes."""


def _quiet_transformers(path: Path) -> Any:
    try:
        import transformers
    except ImportError:
        fail(MSG_NO_TRANSFORMERS.format(path=path))
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def is_image_config(path: Path) -> bool:
    """Whether a Hugging Face directory holds an image classifier: its config names a ``...ForImageClassification``
    architecture, or (without ``architectures``) its model type is only known as an image model."""
    config = json.loads((path / paths.BUNDLE_CONFIG).read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    if isinstance(architectures, list) and architectures:
        return any(str(a).endswith("ForImageClassification") for a in architectures)
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES as IMAGE,
            MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as SEQUENCE,
        )
    except ImportError:
        return False
    kind = config.get("model_type")
    return kind in IMAGE and kind not in SEQUENCE


def read_huggingface(path: Path) -> HuggingFaceModel:
    """Load a sequence- or image-classification model (and its tokenizer, if present) from ``path``, offline."""
    transformers = _quiet_transformers(path)
    if not (path / "model.safetensors").is_file():
        fail(f"Hugging Face directory '{path}' has no model.safetensors. Save it with "
             "model.save_pretrained(dir, safe_serialization=True); pickled pytorch_model.bin is not read.")
    image = is_image_config(path)
    causal = names_causal_lm(json.loads((path / paths.BUNDLE_CONFIG).read_text(encoding="utf-8")).get("architectures"))
    auto = (transformers.AutoModelForCausalLM if causal else transformers.AutoModelForImageClassification if image
            else transformers.AutoModelForSequenceClassification)
    try:
        module = auto.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                      attn_implementation="sdpa" if causal else "eager")
    except ImportError as error:  # a quantised checkpoint (GPTQ, AWQ, compressed-tensors) whose package is missing
        method = _quantization_method(path)
        fail(f"'{path}' is a {method or 'quantised'} checkpoint and loading it needs a package that is not installed "
             f"({str(error).splitlines()[0][:200]}). Install the package the message names, then run again.")
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        kind = "causal language" if causal else "image-classification" if image else "sequence-classification"
        fail(f"'{path}' could not be loaded as a Hugging Face {kind} model ({first}). "
             "Check config.json and model.safetensors (saved with save_pretrained).")
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    tokenizer = None
    if not image and any((path / name).is_file() for name in TOKENIZER_FILES) or any(path.glob("*.model")):
        # Without vocabulary files, recent transformers builds an empty tokenizer that maps every word
        # to [UNK]; only load one the directory really holds.
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            tokenizer = None
    if causal:
        return HuggingFaceModel(module, tokenizer, None, causal=True)
    names = [str(module.config.id2label[i]) for i in sorted(module.config.id2label)]
    labels = None if all(DEFAULT_LABEL.match(n) for n in names) else tuple(names)
    return HuggingFaceModel(module, tokenizer, labels, image=image)


def _quantization_method(path: Path) -> str | None:
    """The ``quant_method`` a Hugging Face config declares (gptq, awq, compressed-tensors, ...), if any."""
    config = json.loads((path / paths.BUNDLE_CONFIG).read_text(encoding="utf-8"))
    quantization = config.get("quantization_config")
    return str(quantization.get("quant_method")) if isinstance(quantization, dict) and quantization.get("quant_method") else None


def reads_pixels(module: nn.Module) -> bool:
    """A ``transformers`` image model (its forward takes ``pixel_values``)."""
    return is_huggingface_module(module) and getattr(module, "main_input_name", "") == "pixel_values"


def is_huggingface_module(module: nn.Module) -> bool:
    """A ``transformers`` model (its forward takes token ids and returns an output with ``logits``)."""
    config = getattr(module, "config", None)
    return config is not None and hasattr(config, "model_type") and hasattr(config, "output_attentions")


def rebuilt(module: nn.Module) -> nn.Module:
    """A Hugging Face model rebuilt from its config and weights (other modules as they are). A model
    unpickled in another process (a Ray worker) has lost the hooks transformers installs when it builds a
    model, and returns no attention probabilities; building it again restores them."""
    if not is_huggingface_module(module):
        return module
    fresh = type(module)(module.config)
    fresh.load_state_dict(module.state_dict())
    return fresh.to(next(module.parameters()).dtype).eval()


def is_causal(module: nn.Module) -> bool:
    """Whether each query may attend only to earlier keys (decoder-style self-attention)."""
    config = module.config  # type: ignore[union-attr]
    return (bool(getattr(config, "is_decoder", False)) or str(config.model_type) in CAUSAL_TYPES
            or is_causal_lm(module))


def dense_from_huggingface(path: Path, **_: Any) -> LoadedModel:
    hf = read_huggingface(path)
    return dense_model(hf.module, format="huggingface", sha256=sha256_path(path), source=str(path), labels=hf.labels,
                       tokenizer=hf.tokenizer, image_processor=image_processor_in(path) if hf.image else None)


def ticket_from_huggingface(path: Path, *, dense: LoadedModel, **_: Any) -> LoadedModel:
    """A Hugging Face directory; with a ``mask.safetensors`` beside it (what ``ticketaudit prune`` saves), that mask."""
    from .weights import read_mask_file

    hf = read_huggingface(path)
    check_same_metadata(dense, labels=hf.labels, preprocess=None, source=path)
    module, the_mask = hf.module, Mask.from_zeros(hf.module)
    if (path / paths.BUNDLE_MASK).is_file():
        the_mask = read_mask_file(path / paths.BUNDLE_MASK, model=hf.module)
        module = the_mask.apply(hf.module)
    check_same_tokenizer(dense, hf.tokenizer, source=path)
    return ticket_model(dense, module, the_mask, "huggingface", sha256_path(path), str(path), preprocess=None,
                        tokenizer=hf.tokenizer or dense.tokenizer)


FORMAT = Format(name="huggingface", matches=lambda path: path.is_dir() and is_huggingface_dir(path),
                dense=dense_from_huggingface, ticket=ticket_from_huggingface)
