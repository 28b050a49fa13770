"""GGUF files (llama.cpp's quantised format), dequantised by transformers: a causal language model and its
tokenizer, with the bits per weight the file stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._io import sha256_path
from .checks import check_same_architecture, check_same_tokenizer
from .mask import Mask
from .model import Format, LoadedModel, dense_model, ticket_model


def dense_from_gguf(path: Path, **_: Any) -> LoadedModel:
    from ..llm.models import gguf_bits_per_weight, read_gguf

    module, tokenizer = read_gguf(path)
    return dense_model(module, format="gguf", sha256=sha256_path(path), source=str(path), tokenizer=tokenizer,
                       quantization=gguf_bits_per_weight(path))


def ticket_from_gguf(path: Path, *, dense: LoadedModel, **_: Any) -> LoadedModel:
    """A GGUF twin of the dense model (quantised; dequantised to float32 here): its mask from its exact zeros."""
    from ..llm.models import gguf_bits_per_weight, read_gguf

    module, tokenizer = read_gguf(path)
    check_same_tokenizer(dense, tokenizer, source=path)
    check_same_architecture(dense.module, module)
    return ticket_model(dense, module, Mask.from_zeros(module), "gguf", sha256_path(path), str(path),
                        tokenizer=tokenizer, quantization=gguf_bits_per_weight(path))


FORMAT = Format(name="gguf", matches=lambda path: path.suffix.lower() == ".gguf" and path.is_file(),
                dense=dense_from_gguf, ticket=ticket_from_gguf)
