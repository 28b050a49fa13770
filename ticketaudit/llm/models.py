"""Causal language models: Hugging Face directories and GGUF files (dequantised by transformers), and the
check that a dense model and its ticket read text the same way (one tokenizer)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from torch import nn

from .._validation import fail

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
MSG_NO_GGUF = ("'{path}' is a GGUF file, which needs the 'gguf' and 'transformers' packages. Install them with: "
               "pip install 'ticketaudit[llm]'.")


def is_causal_lm(module: nn.Module) -> bool:
    """A ``transformers`` causal language model (``...ForCausalLM``, GPT-2's ``...LMHeadModel``)."""
    return type(module).__name__.endswith(CAUSAL_SUFFIXES) and hasattr(module, "config")


def names_causal_lm(architectures: Any) -> bool:
    """Whether a config's ``architectures`` list names a causal language model."""
    return isinstance(architectures, list) and any(str(a).endswith(CAUSAL_SUFFIXES) for a in architectures)


def read_gguf(path: Path) -> tuple[nn.Module, Any]:
    """The model and tokenizer of a GGUF file, dequantised to float32 by transformers (offline)."""
    try:
        import gguf  # noqa: F401  # transformers needs it to read the file
        import transformers
    except ImportError:
        fail(MSG_NO_GGUF.format(path=path))
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # transformers' own progress bar for GGUF ignores its switch
            module = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                       local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                   local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, NotImplementedError) as error:
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        fail(f"'{path}' could not be loaded as a GGUF causal language model ({first}). Check that it is a complete "
             "GGUF file of an architecture transformers can dequantise (llama, mistral, qwen2, gpt2, phi3, ...).")
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    _forget_quantizer(module)
    return module, tokenizer


def _forget_quantizer(module: nn.Module) -> None:
    """The weights are plain floats once dequantised: drop the GGUF marks, so the model (a pruned ticket of it) can be
    saved as an ordinary Hugging Face directory."""
    module.hf_quantizer = None
    if hasattr(module.config, "quantization_config"):
        del module.config.quantization_config
    try:
        module.is_quantized = False
    except AttributeError:  # a read-only property in some versions
        pass


def gguf_bits_per_weight(path: Path) -> dict[str, Any]:
    """What the GGUF file stores: bits per weight over its weight tensors and the count of each quantisation type."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    bits, values, types = 0, 0, {}
    for tensor in reader.tensors:
        if len(tensor.shape) < 2 or int(min(tensor.shape)) <= 1:
            continue
        count = int(tensor.n_elements)
        bits += int(tensor.n_bytes) * 8
        values += count
        name = tensor.tensor_type.name
        types[name] = types.get(name, 0) + 1
    return {"bits_per_weight": bits / values if values else None, "tensor_types": dict(sorted(types.items()))}


def tokenizer_difference(dense: Any, ticket: Any) -> str | None:
    """The first way two tokenizers differ (vocabulary, special tokens, chat template); None: they agree."""
    if dense is None or ticket is None:
        return None
    dense_vocab, ticket_vocab = dense.get_vocab(), ticket.get_vocab()
    if dense_vocab != ticket_vocab:
        only = sorted(set(dense_vocab.items()) ^ set(ticket_vocab.items()), key=str)[:1]
        return (f"the vocabularies differ ({len(dense_vocab):,} vs {len(ticket_vocab):,} entries; first difference: "
                f"{only[0][0]!r} -> {only[0][1]})" if only else "the vocabularies differ")
    for name in ("bos_token", "eos_token", "unk_token"):  # padding never reaches a score
        if getattr(dense, name, None) != getattr(ticket, name, None):
            return f"the {name} differs ({getattr(dense, name, None)!r} vs {getattr(ticket, name, None)!r})"
    if getattr(dense, "chat_template", None) != getattr(ticket, "chat_template", None):
        return "the chat templates differ"
    return None


def save_quietly(module: Any, folder: Any) -> None:
    """``save_pretrained`` without transformers' progress bar (the audit's own progress lines say what happens)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        module.save_pretrained(folder)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
