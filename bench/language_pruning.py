"""Benchmark: pruning SmolLM2-135M-Instruct to 50% with magnitude, Wanda and SparseGPT (unstructured and 2:4), layer
by layer on the shipped calibration text (32 x 128 tokens), each measured by its loss per token on held-out English
(the contexts of the shipped BBQ items, never seen in calibration), its time and the process's peak memory.

Issue (language-model pruning, item 5) targets on 2 CPU cores: Wanda and SparseGPT keep the loss increase well under
magnitude's; a 50% Wanda ticket in < 2 minutes, SparseGPT in < 10; peak memory < 4 GB.
Run: python bench/language_pruning.py [--threads 2] [--methods magnitude,wanda,sparsegpt] [--patterns none,2:4]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import resource
import time
from pathlib import Path

import torch

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent


def held_out(tokenizer: object, *, sequences: int = 16, length: int = 128) -> list[torch.Tensor]:
    from ticketaudit.pruning.language import calibration_batches

    lines = gzip.open(ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz", "rt", encoding="utf-8").read().splitlines()
    contexts = dict.fromkeys(json.loads(line)["context"] for line in lines if line.strip())  # unique, in order
    return calibration_batches(tokenizer, "\n".join(contexts), sequences=sequences, length=length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="magnitude,wanda,sparsegpt")
    parser.add_argument("--patterns", default="none,2:4")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ticketaudit.demo_llm import smollm2_path
    from ticketaudit.prune_language import PATTERNS, calibration_text, token_loss
    from ticketaudit.pruning.language import calibration_batches
    from ticketaudit.pruning.sequential import prune_layerwise
    from ticketaudit.tickets.load import load_dense

    dense = load_dense(smollm2_path())
    text, source = calibration_text(None)
    batches = calibration_batches(dense.tokenizer, text, sequences=32, length=128)
    evaluation = held_out(dense.tokenizer)
    base = token_loss(dense.module, evaluation)
    print(f"SmolLM2-135M-Instruct (GGUF Q4_1 dequantised, float32), {args.threads} threads; calibration {source}, "
          f"32 x 128 tokens; loss per token on {len(evaluation)} x 128 held-out tokens (BBQ contexts)")
    print(f"dense: {base:.3f}")
    for pattern in args.patterns.split(","):
        for method in args.methods.split(","):
            model = copy.deepcopy(dense.module)
            start = time.perf_counter()
            prune_layerwise(model, batches, method=method, sparsity=0.5,
                            pattern=None if pattern == "none" else PATTERNS[pattern])
            seconds = time.perf_counter() - start
            loss = token_loss(model, evaluation)
            print(f"{method:10s} {'50% unstructured' if pattern == 'none' else pattern:17s} loss {loss:.3f} "
                  f"(+{loss - base:.3f}), {seconds:5.1f} s")
            del model
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this process (dense model, one pruned copy at a time): {peak:.2f} GiB (target < 4 GB)")


if __name__ == "__main__":
    main()
