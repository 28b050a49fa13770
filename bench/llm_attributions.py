"""Benchmark: attributions on a language model (issue: language-model audit, item 4; defaults that finish, item 2).

SmolLM2-135M-Instruct (GGUF, float32) and a 50% Wanda ticket on the shipped BBQ items, ``--analyses
benchmark,metrics,attributions`` with a time budget, once per method. Prints, per method, the items the budget
bought, the cost model's estimate beside the measured seconds of the attribution stage (target: measured within
1.5x of the budget), the overall identity-word share dense -> ticket, the convergence delta, and the run's peak RSS.
The ticket is pruned here once (about a minute) unless ``--mask`` names a saved one (``demo --model llm`` writes
``ticket_mask.safetensors``).

Run: python bench/llm_attributions.py [--items 120] [--budget 60] [--methods input-x-gradient,integrated-gradients]
     [--mask PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"


def wanda_mask(folder: Path) -> Path:
    """The demo's 50% Wanda ticket as a mask file (calibrated on the shipped calibration text)."""
    from ticketaudit.demo_llm import smollm2_path
    from ticketaudit.prune_language import LENGTH, SEQUENCES, calibration_text
    from ticketaudit.pruning.language import calibration_batches, full_mask, save_mask
    from ticketaudit.pruning.sequential import prune_layerwise
    from ticketaudit.tickets.load import load_dense

    dense = load_dense(smollm2_path())
    text, _ = calibration_text(None)
    kept = prune_layerwise(dense.module, calibration_batches(dense.tokenizer, text, sequences=SEQUENCES, length=LENGTH),
                           method="wanda", sparsity=0.5)
    path = folder / "ticket_mask.safetensors"
    save_mask(full_mask(dense.module, kept), path)
    return path


def run(method: str, *, mask: Path, items: int, budget: float, folder: Path, threads: int) -> dict[str, object]:
    """One ``ticketaudit report`` in a fresh process: its JSON, the attribution stage's seconds, its peak RSS."""
    from ticketaudit.demo_llm import smollm2_path

    out = folder / f"{method}.json"
    command = [sys.executable, "-m", "ticketaudit", "report", "--dense", str(smollm2_path()), "--mask", str(mask),
               "--benchmark", "bbq", "--data", str(SAMPLE), "--limit", str(items), "--seed", "0",
               "--analyses", "benchmark,metrics,attributions", "--attribution-method", method,
               "--attribution-budget", str(budget), "--json", str(out), "--out", str(folder / f"{method}.html")]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode > 1:
        sys.exit(done.stderr)
    stage = [line for line in done.stderr.splitlines() if "Attributing" in line and ": done in" in line]
    seconds = _seconds(stage[-1].rsplit("done in", 1)[1]) if stage else float("nan")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"doc": json.loads(out.read_text()), "seconds": seconds, "peak": peak}


def _seconds(text: str) -> float:
    """'1 min 22 s' or '48 s' as seconds."""
    parts = text.split()
    total = 0.0
    for value, unit in zip(parts[::2], parts[1::2]):
        total += float(value) * (60 if unit.startswith("min") else 1)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--methods", default="input-x-gradient,integrated-gradients")
    parser.add_argument("--mask", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        start = time.perf_counter()
        mask = args.mask or wanda_mask(folder)
        if args.mask is None:
            print(f"50% Wanda ticket pruned in {time.perf_counter() - start:.0f} s")
        print(f"SmolLM2-135M-Instruct, {args.items} BBQ items, --attribution-budget {args.budget:g} s, "
              f"{args.threads} threads; the peak RSS is the largest of the runs so far")
        for method in args.methods.split(","):
            result = run(method, mask=mask, items=args.items, budget=args.budget, folder=folder, threads=args.threads)
            section = result["doc"]["attributions"]
            budget = section.get("budget", {})
            share = section["overall"]["sensitive_share"]
            delta = section.get("convergence_delta") or {}
            steps = f" at {section['steps']} steps" if "integrated" in method else ""
            print(f"{method:22s} {section['sample_rows']:4d} items{steps}: "
                  f"estimated {budget.get('estimated_seconds', float('nan')):.0f} s, measured {result['seconds']:.0f} s "
                  f"({result['seconds'] / args.budget:.2f}x the budget; target <= 1.5x); identity-word share "
                  f"{share['dense']:.3f} -> {share['ticket']:.3f}"
                  + (f"; convergence delta {max(delta.values()):.3g}" if delta else "")
                  + f"; peak RSS {result['peak']:.2f} GiB")


if __name__ == "__main__":
    main()
