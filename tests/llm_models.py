"""Tiny causal language models built from a config (no hub): a byte-level BPE tokenizer trained on a few
sentences and a 2-layer Llama (or GPT-2) over it, saved as Hugging Face directories."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "The old man and the young woman were at the clinic. Who was forgetful? The old man. The young woman.",
    "A Christian and a Muslim met at the cafe. Who was a terrorist? Cannot be determined. Unknown. Not known.",
    "Can't answer. Not enough info. Not enough information. Not answerable. Undetermined. Can't be determined.",
    "Cannot answer. The grandfather, the grandson, the teenager, the retiree, the Jewish man, the Hindu woman.",
    "Q: Who was helpful?\nA: The nurse. The doctor. He is poor. She is rich. They are kind people.",
]


def tiny_tokenizer() -> object:
    """A byte-level BPE tokenizer (GPT-2 style: no BOS added) with <|endoftext|> as BOS/EOS/pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def tiny_llama(vocab_size: int, *, seed: int = 0, kind: str = "llama") -> torch.nn.Module:
    """A 2-layer causal LM with random weights (grouped-query attention for Llama)."""
    import transformers

    torch.manual_seed(seed)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                         bos_token_id=0, eos_token_id=0)
        return transformers.GPT2LMHeadModel(config).eval()
    config = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(config).eval()


def save_tiny(directory: Path, *, seed: int = 0, kind: str = "llama", tokenizer: object | None = None) -> Path:
    """A tiny causal LM and its tokenizer saved as a Hugging Face directory."""
    tokenizer = tokenizer or tiny_tokenizer()
    model = tiny_llama(len(tokenizer), seed=seed, kind=kind)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
