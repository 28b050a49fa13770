"""Benchmark: `ticketaudit report --analyses metrics,attention` on a MiniLM-size text model against the plain
loop a user would write (both models, output_attentions=True, batches of 64, padding per batch, float32),
run in the same process tree on the same texts.

Model: a BERT of MiniLM's size (6 layers, hidden 384, 12 heads; random weights from its config, no
download) and a 50% magnitude ticket, saved as Hugging Face directories with a small word tokenizer.
Texts: generated reviews (short: 10 to 45 words; --long: 500 words, cut to 512 tokens). Prints wall
time and peak RSS of the report process per --precision, the plain loop's time, and throughput ratios.
Target (issue 16): >= 0.8x the plain float32 forward's throughput; peak RSS <= 2 GB for 512-token texts.

Run: python bench/text_audit.py [--rows 1500] [--long] [--precisions auto,float64] [--threads 2] [--memory-only]
     [--device cpu|cuda] (cuda by default where a GPU exists) [--layers 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _timing import process_peak
from text_attributions import VOCAB, models


SMALL_RUN = 50
"""Rows of the run that measures start-up (imports, loading, tokenizer, report), subtracted for the per-row rate."""


def plain_loop(dense: torch.nn.Module, ticket: torch.nn.Module, tokenizer: object, texts: list[str], *,
               max_length: int, device: str) -> float:
    """What a user would write: both models, attentions on, batches of 64 padded to their longest."""
    start = time.perf_counter()
    with torch.inference_mode():
        for model in (dense, ticket):
            model.to(device)
            for first in range(0, len(texts), 64):
                encoded = tokenizer(texts[first:first + 64], padding="longest", truncation=True,
                                    max_length=max_length, return_tensors="pt").to(device)
                output = model(**encoded, output_attentions=True)
                assert output.attentions is not None
            if device == "cuda":
                torch.cuda.synchronize()
            model.to("cpu")
    return time.perf_counter() - start


def audit_process(folder: Path, precision: str, threads: int, *, max_rows: int | None = None,
                  device: str = "cpu") -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one `ticketaudit report` process (on the first ``max_rows`` rows)."""
    command = [sys.executable, "-m", "ticketaudit", "report", "--dense", str(folder / "dense"),
               "--ticket", str(folder / "ticket"), "--data", str(folder / "texts.csv"), "--target", "label",
               "--sensitive", "group", "--text", "review", "--analyses", "metrics,attention", "--seed", "0",
               "--n-boot", "200", "--quiet", "--precision", precision, "--out", str(folder / f"{precision}.html"),
               "--device", device, *(["--max-rows", str(max_rows)] if max_rows else [])]
    return process_peak(command, threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--long", action="store_true", help="500-word texts cut to 512 tokens (default: short)")
    parser.add_argument("--precisions", default="auto,float64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, or cuda (the default where a GPU exists: GPU figures)")
    parser.add_argument("--layers", type=int, default=6,
                        help="encoder depth (MiniLM: 6); deeper models' every-layer maps exceed the budget at 512 "
                             "tokens, so their batches run layer by layer")
    parser.add_argument("--memory-only", action="store_true",
                        help="skip the plain loop and the start-up run: time and peak RSS of the audit alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dense, ticket, tokenizer = models(layers=args.layers)
    for model in (dense, ticket):  # attention maps need eager attention (SDPA does not return them)
        model.set_attn_implementation("eager")
    rng = np.random.default_rng(0)
    lengths = np.full(args.rows, 500) if args.long else rng.integers(10, 46, size=args.rows)
    texts = [" ".join(rng.choice(VOCAB, size=int(k))) for k in lengths]
    max_length = 512
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, model in (("dense", dense), ("ticket", ticket)):
            model.save_pretrained(str(folder / name))
            tokenizer.save_pretrained(str(folder / name))
        pd.DataFrame({"review": texts, "label": rng.integers(0, 2, size=args.rows),
                      "group": rng.choice(["a", "b", "c"], size=args.rows, p=[0.6, 0.3, 0.1])}).to_csv(
            folder / "texts.csv", index=False)
        kind = "512-token" if args.long else "short (<= 50 tokens)"
        if args.memory_only:
            for precision in args.precisions.split(","):
                seconds, peak = audit_process(folder, precision, args.threads, device=args.device)
                print(f"{args.rows:,} {kind} texts, {args.layers} layers, on {args.device}, --precision {precision}: "
                      f"{seconds:.1f} s, "
                      f"peak RSS {peak:.2f} GiB "
                      "(target <= 2 GB)")
            return
        plain = plain_loop(dense, ticket, tokenizer, texts, max_length=max_length, device=args.device)
        print(f"{args.rows:,} {kind} texts on {args.device}; plain float32 loop with attentions, both models: "
              f"{plain:.1f} s "
              f"({args.rows / plain:.1f} rows/s)")
        for precision in args.precisions.split(","):
            seconds, peak = audit_process(folder, precision, args.threads, device=args.device)
            few = min(SMALL_RUN, args.rows // 4)
            start_up, _ = audit_process(folder, precision, args.threads, max_rows=few, device=args.device)
            per_row = (seconds - start_up) / (args.rows - few)
            print(f"ticketaudit report --analyses metrics,attention --precision {precision}: {seconds:.1f} s "
                  f"(incl. start-up), peak RSS {peak:.2f} GiB; throughput {plain / seconds:.2f}x the plain loop's "
                  f"(target >= 0.8x). A {few}-row run takes {start_up:.1f} s (imports, loading, report); past it, "
                  f"{1 / per_row:.1f} rows/s: {plain / args.rows / per_row:.2f}x the plain loop's throughput")


if __name__ == "__main__":
    main()
