"""Benchmark: the default `ticketaudit report` (every default analysis, default precision and budgets) on real-size
models, beside the plain forward passes of both models on the same rows, measured in the same run.

Cases (issue: defaults that finish, item 3; 2 CPU cores):
- image: a MobileNetV2 (224 px, 2.2M parameters) and its 80% magnitude ticket, 600 generated JPEGs: target <= 3 min;
- text: a MiniLM-size BERT (6 layers, hidden 384) and its 50% ticket, 1,500 short texts: target <= 3 min;
- --vit: a ViT-Base (86M parameters, 224 px), 600 images: target <= 10 min (its forward passes alone are long).
Random weights from each config (no download): speed does not depend on training.
``--alternatives-budget S``: instead, each case's pruning alternatives (``--alternatives``) against a budget of S
seconds (issue: defaults that finish, item 2: kept within 1.5x).

Run: python bench/defaults.py [--cases image,text] [--vit] [--threads 2] [--alternatives-budget 120]
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
from vision import plain_loop as image_loop
from vision import save, write_images


def _pruned(model: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    import copy

    ticket = copy.deepcopy(model)
    with torch.no_grad():
        weights = [p for p in ticket.parameters() if p.dim() > 1]
        threshold = torch.cat([p.abs().flatten() for p in weights]).quantile(sparsity) if sum(
            p.numel() for p in weights) < 2**24 else torch.cat([p.abs().flatten()[::7] for p in weights]).quantile(sparsity)
        for p in weights:
            p[p.abs() < threshold] = 0
    return ticket


def image_models(kind: str) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    if kind == "vit":
        dense = transformers.ViTForImageClassification(transformers.ViTConfig(num_labels=2)).eval()  # ViT-Base/16
        processor = transformers.ViTImageProcessorPil(size={"height": 224, "width": 224})
        return dense, _pruned(dense, 0.5), processor
    dense = transformers.MobileNetV2ForImageClassification(transformers.MobileNetV2Config(num_labels=2)).eval()
    processor = transformers.MobileNetV2ImageProcessorPil(size={"shortest_edge": 256}, crop_size={"height": 224,
                                                                                                  "width": 224})
    return dense, _pruned(dense, 0.8), processor


def default_audit(folder: Path, data: str, extra: list[str], threads: int) -> tuple[float, float]:
    command = [sys.executable, "-m", "ticketaudit", "report", "--dense", str(folder / "dense"), "--ticket",
               str(folder / "ticket"), "--data", str(folder / data), "--target", "label", "--sensitive", "group",
               *extra, "--seed", "0", "--out", str(folder / "report.html"), "--json", str(folder / "report.json")]
    return process_peak(command, threads=threads)


def alternatives_line(name: str, folder: Path, data: str, extra: list[str], threads: int, budget: float) -> str:
    """The alternatives' time against their budget: the audit with ``--analyses metrics`` alone and again with
    ``--alternatives --alternatives-budget`` (the difference is the alternatives' own time), and what the JSON says
    ran, was skipped and was estimated."""
    import json

    base, _ = default_audit(folder, data, [*extra, "--analyses", "metrics"], threads)
    total, peak = default_audit(folder, data, [*extra, "--analyses", "metrics", "--alternatives",
                                                "--alternatives-budget", str(budget)], threads)
    priced = json.loads((folder / "report.json").read_text())["alternatives"].get("budget", {})
    spent = total - base
    return (f"| {name}: alternatives | {spent:.0f} s of a {budget:.0f} s budget (**{spent / budget:.2f}x**; "
            f"estimated {priced.get('estimated_seconds', float('nan')):.0f} s) | ran {_jobs(priced.get('ran', []))}; "
            f"skipped {_jobs(priced.get('skipped', [])) or 'none'} | {peak:.2f} GiB |")


def _jobs(jobs: list) -> str:
    return ", ".join(f"{j['job']} ({j['estimated_seconds']} s)" if isinstance(j, dict) else str(j) for j in jobs)


def image_case(kind: str, rows: int, threads: int, budget: float | None = None) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = write_images(folder, rows)
        table.to_csv(folder / "images.csv", index=False)
        dense, ticket, processor = image_models(kind)
        save(folder, dense, ticket, processor)
        torch.set_num_threads(threads)
        if budget is not None:
            return alternatives_line(f"{kind} 224 px, {rows} images", folder, "images.csv", ["--image", "path"],
                                     threads, budget)
        forward = image_loop(dense, ticket, processor, folder, table["path"].tolist(), device="cpu")
        seconds, peak = default_audit(folder, "images.csv", ["--image", "path"], threads)
        return _line(f"{kind} 224 px, {rows} images", seconds, peak, forward, folder)


def text_case(rows: int, threads: int, budget: float | None = None) -> str:
    from text_attributions import VOCAB, models

    from text_audit import plain_loop as text_loop

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(VOCAB, size=int(rng.integers(10, 46)))) for _ in range(rows)]
        pd.DataFrame({"review": texts, "label": rng.integers(0, 2, rows),
                      "group": rng.choice(["a", "b", "c"], size=rows, p=[0.6, 0.3, 0.1])}).to_csv(
            folder / "texts.csv", index=False)
        dense, ticket, tokenizer = models()
        for name, model in (("dense", dense), ("ticket", ticket)):
            model.save_pretrained(str(folder / name))
            tokenizer.save_pretrained(str(folder / name))  # type: ignore[attr-defined]
        torch.set_num_threads(threads)
        if budget is not None:
            return alternatives_line(f"MiniLM-size BERT, {rows} short texts", folder, "texts.csv",
                                     ["--text", "review"], threads, budget)
        for model in (dense, ticket):  # the plain loop reads attention maps: eager attention (SDPA has none)
            model.set_attn_implementation("eager")
        forward = text_loop(dense, ticket, tokenizer, texts, max_length=512, device="cpu")
        seconds, peak = default_audit(folder, "texts.csv", ["--text", "review"], threads)
        return _line(f"MiniLM-size BERT, {rows} short texts", seconds, peak, forward, folder)


def _line(name: str, seconds: float, peak: float, forward: float, folder: Path) -> str:
    import json

    document = json.loads((folder / "report.json").read_text())
    analyses = ",".join(document["settings"]["analyses"])
    budget = document.get("attributions", {}).get("budget") or {}
    return (f"| {name} | {seconds:.0f} s | {forward:.0f} s | {peak:.2f} GiB | {document['settings']['precision']} | "
            f"{analyses} | {budget.get('rows', '—')} rows, {budget.get('steps', '—')} steps |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="image,text")
    parser.add_argument("--vit", action="store_true", help="also the ViT-Base case (long)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--alternatives-budget", type=float, default=None,
                        help="instead: each case's pruning alternatives against this budget (seconds)")
    args = parser.parse_args()
    budget = args.alternatives_budget
    print("| case | default audit | both models' plain forward passes | peak RSS | precision | analyses | "
          "attribution sample |")
    print("|---|---|---|---|---|---|---|")
    started = time.perf_counter()
    for case in args.cases.split(","):
        if case == "image":
            print(image_case("mobilenetv2", args.images, args.threads, budget), flush=True)
        elif case == "text":
            print(text_case(args.texts, args.threads, budget), flush=True)
    if args.vit:
        print(image_case("vit", args.images, args.threads, budget), flush=True)
    print(f"(bench wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
