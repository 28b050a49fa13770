"""Benchmark: the attention-entropy analysis — memory against rows, and throughput against a plain
forward pass with attentions on.

Two models, both dense + a 70%-sparse magnitude ticket, weights from their initialisation (speed and
memory do not depend on training): the package's FT-Transformer on the bundled Adult test rows
(15 tokens per row, ``nn.MultiheadAttention`` read through hooks) and a Hugging Face BERT built from
a config (4 layers x 4 heads, hidden 64, texts of 8-48 tokens, ``output_attentions=True``).

* Memory (target: peak within 10% between 1,000 and 10,000 rows): each size runs in a fresh
  process; the figure is the peak resident memory of the process during the analysis minus its
  resident memory just before (models, data and libraries already loaded), plus the process peak;
  once with glibc's default allocator settings and once with a fixed mmap threshold (see FIXED_MMAP).
* Throughput (target: >= 0.8x): rows/s of ``stream_attention`` (both models, float64 runs, per-row
  entropy + JS divergence + Poisson bootstrap sums with 1,000 replicates) against the same rows
  through both models with attentions on and nothing else, in float32 (what a user would write)
  and in float64 (the precision ticketaudit runs in so that batch size never changes an answer).

Run: python bench/attention.py [--rows 10000] [--batch-size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
from typing import Any

import numpy as np
import torch

from ticketaudit.analyses.attention import stream_attention
from ticketaudit.analyses.attention_capture import AttentionRecorder
from ticketaudit.analyses.predict import call_model
from ticketaudit.datasets import load_adult
from ticketaudit.demo import fit_preprocess
from ticketaudit.inputs import TokenInputs
from ticketaudit.models import FTTransformer
from ticketaudit.pruning.imp import global_magnitude_mask
from _timing import best_of

N_BOOT = 1000
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc raises its mmap threshold as large blocks are freed, after which big tensors come from the
heap and fragment it; RSS then creeps with the number of batches although nothing is kept. Fixing
the threshold shows what the analysis itself holds."""


def models_and_rows(kind: str, rows: int) -> tuple[torch.nn.Module, torch.nn.Module, Any, np.ndarray]:
    """(dense, ticket, features, strata) for ``kind`` = "ft-transformer" or "bert"."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if kind == "ft-transformer":
        test = load_adult("test")
        test = test.iloc[rng.integers(0, len(test), size=rows)].reset_index(drop=True)
        preprocess = fit_preprocess(load_adult("train"))
        dense = FTTransformer(in_features=preprocess.width, column_sizes=[s.width for s in preprocess.inputs],
                              out_features=2)
        features: Any = preprocess.transform(test)
        strata = (test["sex"] == "Female").to_numpy().astype(np.int64)
    else:
        from transformers import BertConfig, BertForSequenceClassification

        config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=128, max_position_embeddings=64, num_labels=2,
                            attn_implementation="eager")
        dense = BertForSequenceClassification(config)
        lengths = rng.integers(8, 49, size=rows)
        ids = rng.integers(5, 1000, size=(rows, 48))
        attention = (np.arange(48)[None, :] < lengths[:, None]).astype(np.int64)
        features = TokenInputs(ids * attention, attention)
        strata = rng.integers(0, 3, size=rows)
    dense = dense.eval()
    ticket = global_magnitude_mask(dense, keep=0.3).apply(dense)
    return dense, ticket, features, strata


def analysis(dense: torch.nn.Module, ticket: torch.nn.Module, features: Any, strata: np.ndarray,
             batch_size: int) -> None:
    device = torch.device("cpu")
    recorders = [AttentionRecorder(copy.deepcopy(m).double(), device=device) for m in (dense, ticket)]
    stream_attention(*recorders, features, strata=strata, n_strata=int(strata.max()) + 1, n_boot=N_BOOT, seed=0,
                     batch_size=batch_size)


def plain_forward(dense: torch.nn.Module, ticket: torch.nn.Module, features: Any, batch_size: int,
                  dtype: torch.dtype) -> None:
    """Both models with attentions on: HF ``output_attentions=True``; MHA hooks keeping the weights."""
    device = torch.device("cpu")
    for model in (copy.deepcopy(dense).to(dtype), copy.deepcopy(ticket).to(dtype)):
        kept: list[torch.Tensor] = []
        hooks = []
        if not hasattr(model, "config"):
            for module in model.modules():
                if isinstance(module, torch.nn.MultiheadAttention):
                    hooks.append(module.register_forward_pre_hook(
                        lambda m, a, k: (a, {**k, "need_weights": True, "average_attn_weights": False}),
                        with_kwargs=True))
                    hooks.append(module.register_forward_hook(lambda m, a, o: kept.append(o[1])))
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                batch = features[start:start + batch_size]
                if isinstance(batch, np.ndarray):
                    model(torch.as_tensor(batch, dtype=dtype))
                else:
                    call_model(model, batch, device=device, output_attentions=True)
                kept.clear()
        for hook in hooks:
            hook.remove()



def memory_child(kind: str, rows: int, batch_size: int) -> None:
    dense, ticket, features, strata = models_and_rows(kind, rows)
    analysis(dense, ticket, features[:64], strata[:64], batch_size)  # warm up libraries and allocator
    before = _rss_mib()
    analysis(dense, ticket, features, strata, batch_size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before": before, "peak": peak}))


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-child", nargs=2, metavar=("KIND", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.batch_size)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{N_BOOT} bootstrap replicates")
    for kind in ("ft-transformer", "bert"):
        print(f"\n== {kind}")
        for allocator, env in (("glibc default", {}), ("fixed mmap threshold", FIXED_MMAP)):
            for rows in (1_000, 10_000):
                out = subprocess.run([sys.executable, __file__, "--memory-child", kind, str(rows), "--batch-size",
                                      str(args.batch_size)], capture_output=True, text=True, check=True,
                                     env={**os.environ, **env})
                m = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"memory {rows:>6} rows ({allocator}): +{m['peak'] - m['before']:7.1f} MiB during the analysis "
                      f"(process peak {m['peak']:.0f} MiB)")
        dense, ticket, features, strata = models_and_rows(kind, args.rows)
        ours = best_of(args.repeats, lambda: analysis(dense, ticket, features, strata, args.batch_size))
        ref32 = best_of(args.repeats, lambda: plain_forward(dense, ticket, features, args.batch_size, torch.float32))
        ref64 = best_of(args.repeats, lambda: plain_forward(dense, ticket, features, args.batch_size, torch.float64))
        print(f"throughput on {args.rows} rows: analysis {args.rows / ours:,.0f} rows/s; plain forward with "
              f"attentions float32 {args.rows / ref32:,.0f} rows/s, float64 {args.rows / ref64:,.0f} rows/s")
        print(f"ratio (analysis / plain forward): {ref32 / ours:.2f}x vs float32, {ref64 / ours:.2f}x vs float64 "
              f"(target >= 0.8x)")


if __name__ == "__main__":
    main()
