"""Benchmark: ``--task likelihood`` on a real language model — each text's log-likelihood against
lm-evaluation-harness's ``loglikelihood_rolling`` (``hf`` model, batch 16) in the same process, texts/s of both, and the
whole audit (SmolLM2-135M-Instruct and its 50% Wanda ticket made by ``ticketaudit prune``; texts: the distinct BBQ contexts of the shipped
sample, groups category x context condition): per-group loss per token, the checks, time and peak RSS.

No target is named for this task; the figures are reported (docs/guide/language-models.md).
Run: python bench/llm_likelihood.py [--texts 300] [--harness-texts 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"


def texts_frame(limit: int) -> object:
    """The distinct BBQ contexts of the shipped sample (shuffled with a fixed seed), with their groups."""
    from ticketaudit.llm.bbq import read_bbq

    frame = read_bbq(SAMPLE).drop_duplicates("prompt")
    frame = frame.sample(frac=1.0, random_state=0).head(limit)
    return frame.rename(columns={"prompt": "text"})[["text", "category", "context_condition"]].reset_index(drop=True)


def agreement(args: argparse.Namespace) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from ticketaudit.demo_llm import smollm2_path
    from ticketaudit.llm.encode import model_limit
    from ticketaudit.llm.likelihood import encode_texts, text_loglikelihoods
    from ticketaudit.tickets.load import load_dense

    dense = load_dense(smollm2_path())
    texts = texts_frame(args.harness_texts).text.tolist()
    start = time.perf_counter()
    inputs = encode_texts(texts, tokenizer=dense.tokenizer, limit=model_limit(dense.module.config))
    ours = text_loglikelihoods(dense.module, inputs, device=torch.device("cpu"), tokens=4096)
    ours_s = time.perf_counter() - start
    lm = HFLM(pretrained=dense.module, tokenizer=dense.tokenizer, batch_size=16, device="cpu")
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i) for i, t in enumerate(texts)]
    start = time.perf_counter()
    theirs = np.array(lm.loglikelihood_rolling(requests, disable_tqdm=True))
    theirs_s = time.perf_counter() - start
    print(f"{len(texts)} texts, SmolLM2-135M-Instruct float32: ticketaudit {len(texts) / ours_s:.2f} texts/s, "
          f"lm-eval loglikelihood_rolling {len(texts) / theirs_s:.2f} texts/s (ratio {theirs_s / ours_s:.2f}x)")
    print(f"largest difference in a text's log-likelihood: {np.abs(ours - theirs).max():.2e} "
          f"(relative {np.max(np.abs(ours - theirs) / np.abs(theirs)):.1e})")


def audit(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _timing import process_peak

    from ticketaudit.demo_llm import smollm2_path

    with tempfile.TemporaryDirectory() as folder:
        data, ticket = Path(folder) / "texts.csv", Path(folder) / "wanda"
        texts_frame(args.texts).to_csv(data, index=False)
        tool = str(Path(sys.executable).parent / "ticketaudit")
        subprocess.run([tool, "prune", "--model", str(smollm2_path()), "--method", "wanda", "--sparsity", "0.5",
                        "--out", str(ticket), "--seed", "0"], check=True, capture_output=True)
        command = [tool, "report", "--dense", str(smollm2_path()), "--ticket", str(ticket), "--data", str(data),
                   "--task", "likelihood", "--text", "text", "--sensitive", "category,context_condition", "--seed",
                   "0", "--quiet", "--json", str(Path(folder) / "a.json"), "--out", str(Path(folder) / "a.html")]
        seconds, peak = process_peak(command, threads=args.threads)
        document = json.loads((Path(folder) / "a.json").read_text())
    overall = document["likelihood"]["overall"]["metrics"]["loss_per_token"]
    print(f"whole audit, {args.texts} texts: {seconds:.0f} s, peak RSS {peak:.2f} GiB; verdict {document['verdict']}; "
          f"loss per token {overall['dense']:.3f} -> {overall['ticket']:.3f}")
    for group in document["subgroups"]:
        loss, excess = group["metrics"]["loss_per_token"], group.get("excess_loss_increase", {})
        print(f"  {group['group']:45s} n={group['n']:4d} {loss['dense']:.3f} -> {loss['ticket']:.3f}  beyond the rest "
              f"{excess.get('value', float('nan')):+.3f} [{excess['ci'][0]:+.3f}, {excess['ci'][1]:+.3f}]  {group['status']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--harness-texts", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    agreement(arguments)
    audit(arguments)
