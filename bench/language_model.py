"""Benchmark: scoring BBQ items with a causal LM, ticketaudit against lm-evaluation-harness's ``hf`` model in the
same process, on the same model and items (issue: language-model audit, item 5; 2 CPU cores).

- ticketaudit: each item's prompt runs once, its cache is copied to the 12 choices (``llm.scoring``);
- lm-evaluation-harness 0.4 ``HFLM`` (batch 16): 12 log-likelihood requests per item, each run whole;
- naive: one full forward pass per choice, item by item.
Per-item answers of ticketaudit and the harness must agree (printed: the count that differ).
``--memory``: peak RSS of a whole ``ticketaudit report`` with two SmolLM2-135M models (dense GGUF + 50% ticket).

Target: >= 2x the harness's items/s, >= 5x the naive loop's; two 135M models in < 2 GB.
Run: python bench/language_model.py [--items 96] [--naive-items 12] [--threads 2] [--memory]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"


def smollm2() -> Path:
    from ticketaudit.demo_llm import smollm2_path

    return smollm2_path()


def harness_answers(module: torch.nn.Module, tokenizer: object, frame: object, *, batch_size: int) -> list[int]:
    """Each item's answer (0-2) by lm-evaluation-harness: argmax over its 12 requests' log-likelihoods."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from ticketaudit.llm.bbq import bbq_columns

    lm = HFLM(pretrained=module, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    choices, answers = bbq_columns(frame)
    requests, owners = [], []
    for item, row in enumerate(frame.to_dict("records")):
        for column in choices:
            requests.append(Instance(request_type="loglikelihood", doc={}, arguments=(row["prompt"], row[column]),
                                     idx=len(requests)))
            owners.append(item)
    results = lm.loglikelihood(requests, disable_tqdm=True)
    out = []
    for item, row in enumerate(frame.to_dict("records")):
        scores = [results[i][0] for i, owner in enumerate(owners) if owner == item]
        best = max(range(len(scores)), key=lambda j: scores[j])
        out.append(int(row[answers[best]]))
    return out


def run(args: argparse.Namespace) -> None:
    from ticketaudit.analyses.predict import ModelRunner
    from ticketaudit.llm.bbq import bbq_columns, read_bbq
    from ticketaudit.llm.encode import build_choice_inputs, model_limit
    from ticketaudit.llm.scoring import naive_loglikelihoods
    from ticketaudit.tickets.load import load_dense

    torch.set_num_threads(args.threads)
    dense = load_dense(smollm2())
    frame = read_bbq(SAMPLE)
    frame = frame[frame.category.isin(["Age", "Religion"])].head(args.items).reset_index(drop=True)
    choices, answers = bbq_columns(frame)
    inputs = build_choice_inputs(frame.prompt.tolist(), frame[choices].values.tolist(), frame[answers].values.tolist(),
                                 tokenizer=dense.tokenizer, n_answers=3, limit=model_limit(dense.module.config))
    runner = ModelRunner(dense.module, device=torch.device("cpu"), precision="float32")
    runner.probabilities(inputs[:4], batch_size=4096)  # warm-up
    start = time.perf_counter()
    ours = runner.probabilities(inputs, batch_size=4096).argmax(axis=1)
    ours_rate = len(frame) / (time.perf_counter() - start)
    start = time.perf_counter()
    theirs = harness_answers(runner.module, dense.tokenizer, frame, batch_size=16)
    harness_rate = len(frame) / (time.perf_counter() - start)
    naive_items = inputs[: args.naive_items]
    start = time.perf_counter()
    with torch.inference_mode():
        naive_loglikelihoods(runner.module, naive_items, device=torch.device("cpu"))
    naive_rate = len(naive_items) / (time.perf_counter() - start)
    differ = int(sum(int(a) != int(b) for a, b in zip(ours, theirs)))
    print(f"SmolLM2-135M-Instruct (GGUF Q4_1, float32), {len(frame)} BBQ items (Age, Religion), 12 choices each, "
          f"{args.threads} threads")
    print(f"ticketaudit        {ours_rate:6.2f} items/s")
    print(f"lm-eval hf (b=16)  {harness_rate:6.2f} items/s ({12 * harness_rate:.1f} requests/s)   "
          f"ratio {ours_rate / harness_rate:.2f}x (target >= 2x)")
    print(f"naive per answer   {naive_rate:6.2f} items/s   ratio {ours_rate / naive_rate:.2f}x (target >= 5x)")
    print(f"items whose answer differs from the harness's: {differ} of {len(frame)}")


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of a whole CLI audit: dense GGUF + a 50% magnitude ticket saved as a Hugging Face directory."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _timing import process_peak

    from ticketaudit.tickets.load import load_dense

    dense = load_dense(smollm2())
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        for name, weight in dense.module.named_parameters():
            if weight.dim() == 2 and "embed" not in name:
                weight[weight.abs() <= weight.abs().flatten().kthvalue(weight.numel() // 2).values] = 0
        dense.module.save_pretrained(Path(folder) / "ticket")
        dense.tokenizer.save_pretrained(Path(folder) / "ticket")
        command = [str(Path(sys.executable).parent / "ticketaudit"), "report", "--dense", str(smollm2()), "--ticket",
                   str(Path(folder) / "ticket"), "--benchmark", "bbq", "--data", str(SAMPLE), "--limit", "48",
                   "--json", str(Path(folder) / "a.json"), "--out", str(Path(folder) / "a.html"), "--seed", "0",
                   "--quiet"]
        seconds, peak = process_peak(command, threads=args.threads)
    print(f"whole audit, two 135M models, 48 items: {seconds:.0f} s, peak RSS {peak:.2f} GiB = {peak * 2**30 / 1e9:.2f} GB "
          f"(target < 2 GB: {'met' if peak * 2**30 < 2e9 else 'MISSED'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--naive-items", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true")
    arguments = parser.parse_args()
    memory(arguments) if arguments.memory else run(arguments)
