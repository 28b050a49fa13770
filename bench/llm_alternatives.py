"""Benchmark: ``report --alternatives`` on SmolLM2-135M-Instruct and its 50% Wanda ticket (issue: language-model
pruning, item 4), on the shipped BBQ items with the harness's choices, 2 CPU cores.

Prints each job's estimated seconds (the budget's price, from counted multiply-adds) beside its measured time
(target: within 1.5x), the candidates' table (loss per token on the held-out prompts, accuracy, the worst group's
change, the paired change against the audited ticket, the policy verdict), the recommendation, and whether one saved
candidate audited again with its own command reproduces its reported numbers exactly.

Run: python bench/llm_alternatives.py [--limit 300] [--threads 2] [--budget none|SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
BBQ = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", default="none")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import ticketaudit as ta
    from ticketaudit.demo_llm import smollm2_path
    from ticketaudit.prune_language import prune_language_model
    from ticketaudit.pruning.alternatives import PruneSettings

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ticket = Path(tmp) / "ticket"
        prune_language_model(smollm2_path(), method="wanda", sparsity=0.5, pattern=None, out=ticket)
        marks: list[tuple[str, float]] = []

        def progress(description: str, done: int, total: int) -> None:
            if description.startswith("Alternatives") and (not marks or marks[-1][0] != description):
                marks.append((description, time.perf_counter()))

        budget = None if args.budget == "none" else float(args.budget)
        result = ta.audit(dense=smollm2_path(), ticket=ticket, data=BBQ, benchmark="bbq", limit=args.limit,
                          analyses="metrics,benchmark", seed=0, progress=progress,
                          alternatives=PruneSettings(budget_seconds=budget, save_to=Path(tmp) / "candidates"))
        alternatives = result.alternatives
        plan = {job.name: job.seconds for job in [*alternatives.budget.kept, *alternatives.budget.skipped]}
        spans = {name.removeprefix("Alternatives: "): end - start
                 for (name, start), (_, end) in zip(marks, marks[1:])}
        spans["audited ticket"] = spans.pop("the dense model and the audited ticket on the evaluation items")
        print(f"SmolLM2-135M-Instruct + its 50% Wanda ticket, {args.limit} BBQ items (harness choices): "
              f"{alternatives.calibration_rows} calibrate, {alternatives.evaluation_rows} compare; {args.threads} threads")
        print("| job | estimated s | measured s | measured / estimated |")
        print("|---|---|---|---|")
        for name, seconds in spans.items():
            print(f"| {name} | {plan[name]:.0f} | {seconds:.0f} | {seconds / plan[name]:.2f} |")
        dense_loss = alternatives.candidates[0].language["dense_loss_per_token"]
        print(f"\ndense: loss per token {dense_loss:.3f}, accuracy {alternatives.dense_accuracy:.3f}")
        print("| candidate | loss / token | accuracy | change vs dense [CI] | worst group | largest excess drop [CI] | "
              "vs audited [CI] | verdict |")
        print("|---|---|---|---|---|---|---|---|")
        for c in alternatives.candidates:
            d, language = c.accuracy_delta, c.language
            versus = language.get("accuracy_vs_audited")
            print(f"| {c.name} | {language['loss_per_token']:.3f} | {c.accuracy:.3f} | {d.value:+.3f} [{d.ci[0]:+.3f}, "
                  f"{d.ci[1]:+.3f}] | {c.worst_group} {c.worst_group_accuracy.value:.3f} | "
                  + (f"{c.max_excess_drop[0]} {c.max_excess_drop[1].value:+.3f} [{c.max_excess_drop[1].ci[0]:+.3f}, "
                     f"{c.max_excess_drop[1].ci[1]:+.3f}] | " if c.max_excess_drop else "— | ")
                  + (f"{versus['value']:+.3f} [{versus['ci'][0]:+.3f}, {versus['ci'][1]:+.3f}]" if versus else "—")
                  + f" | {language['verdict']} |")
        print(f"\nrecommendation: {alternatives.recommendation}")
        saved = next(c for c in alternatives.candidates if c.saved_to)
        command = json.loads((Path(saved.saved_to) / "candidate.json").read_text())["reaudit"]
        out = Path(tmp) / "again.json"
        done = subprocess.run([sys.executable, "-m", "ticketaudit", *shlex.split(command)[1:], "--json", str(out),
                               "--out", str(out.with_suffix(".html")), "--quiet"], capture_output=True, text=True)
        if done.returncode not in (0, 1):
            sys.exit(done.stderr)
        again = json.loads(out.read_text())
        accuracy = again["performance"]["overall"]["metrics"]["accuracy"]
        from ticketaudit.report.render import document_bytes, report_dict

        reported = next(c for c in json.loads(document_bytes(report_dict(result)))["alternatives"]["candidates"]
                        if c["name"] == saved.name)  # the numbers as the report's JSON states them
        same = (accuracy["ticket"] == reported["accuracy"] and accuracy["delta"] == reported["accuracy_delta"]["value"]
                and accuracy["ci"] == reported["accuracy_delta"]["ci"]
                and {g["group"]: g["metrics"]["accuracy"]["ticket"] for g in again["subgroups"]}
                == reported["group_accuracy"]
                and again["benchmarks"]["bbq"]["per_category"] == reported["language"]["benchmark"]["per_category"])
        print(f"{saved.name} audited again with its command: numbers {'identical' if same else 'DIFFERENT'}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"(bench wall time {time.perf_counter() - started:.0f} s, peak RSS {peak:.2f} GiB)")


if __name__ == "__main__":
    main()
