"""Benchmark: what --precision changes. For each bench model, the predictions (argmax) that differ between
float64 and float32, and between float64 and bfloat16, and the forward time of each precision through
ticketaudit's ModelRunner (the audit's own forward pass) on the same rows and batch size.

Models: the demo's dense MLP and 92% ticket on the Adult test split (trained here, about 20 s), and a
MiniLM-size BERT (6 layers, hidden 384, 12 heads; random weights from its config, no download) with a
50% magnitude ticket, on generated texts of 10 to 60 words. Random weights give near-tied logits, so the
text figures are a pessimistic bound on flips for a trained model.

Run: python bench/precision.py [--texts 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ticketaudit.analyses.predict import ModelRunner
from ticketaudit.inputs import TokenInputs
from text_attributions import VOCAB, models as text_models

PRECISIONS = ("float64", "float32", "bfloat16")


def _predictions(module: torch.nn.Module, features: object, *, batch: int) -> dict[str, tuple[np.ndarray, float]]:
    out = {}
    for precision in PRECISIONS:
        runner = ModelRunner(module, device=torch.device("cpu"), precision=precision)
        start = time.perf_counter()
        proba = runner.probabilities(features, batch_size=batch)
        out[precision] = (proba.argmax(axis=1), time.perf_counter() - start)
    return out


def _report(name: str, module: torch.nn.Module, features: object, *, batch: int) -> None:
    found = _predictions(module, features, batch=batch)
    reference, seconds64 = found["float64"]
    for precision in ("float32", "bfloat16"):
        labels, seconds = found[precision]
        flips = int((labels != reference).sum())
        print(f"{name:<28} {precision:>9}: {flips:>5} of {len(reference):,} predictions differ from float64 "
              f"({flips / len(reference):.3%}); forward {seconds:.2f} s vs {seconds64:.2f} s in float64 "
              f"(speed {seconds64 / seconds:.2f}x float64's)")


def tabular(batch: int) -> None:
    from ticketaudit.demo import run_demo
    from ticketaudit.tickets import load_dense, load_ticket
    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:
        run_demo(Path(folder), seed=0, model="mlp")
        dense = load_dense(Path(folder) / "dense")
        ticket = load_ticket(Path(folder) / "ticket", dense=dense)
        frame = pd.read_csv(Path(folder) / "adult_test.csv")
        features = dense.preprocess.transform(frame)
        for name, loaded in (("Adult MLP, dense", dense), ("Adult MLP, 92% ticket", ticket)):
            _report(name, loaded.module, features, batch=batch)


def text(count: int, batch: int) -> None:
    dense, ticket, tokenizer = text_models()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(VOCAB, size=int(rng.integers(10, 60)))) for _ in range(count)]
    encoded = tokenizer(texts, padding="longest", truncation=True, max_length=128)
    inputs = TokenInputs(input_ids=np.asarray(encoded["input_ids"]), attention_mask=np.asarray(encoded["attention_mask"]))
    for name, module in (("MiniLM-size BERT, dense", dense), ("MiniLM-size BERT, 50% ticket", ticket)):
        _report(name, module, inputs, batch=batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tabular(batch=1024)
    text(args.texts, batch=64)


if __name__ == "__main__":
    main()
