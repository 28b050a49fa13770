"""Benchmark: do protected items keep their dense answers under a 50% Wanda ticket of SmolLM2-135M-Instruct?
(issue: language-model pruning, item 2: the protected-items option.)

The 600 shipped BBQ items are split by pair (as bench/language_fair_pruning.py does): 300 calibrate, 300 are held
out. The user marks the calibration items of one category as protected (``--protect``; the category where plain
Wanda changes most dense answers on the calibration items). Every ticket calibrates on the same 300 item prompts
(context and question):
- ``wanda``: plain Wanda, 32 x 128-token windows evenly spread over the items;
- ``protected x1``: the protected items' text first (every token of it), the rest evenly spread, no extra weight;
- ``protected x8``: the same windows, protected tokens weighing 8 (``--protect-weight``).
Each ticket answers with the release's three answers; measured per ticket: the share of the protected items that
keep the dense model's answer, the same on the held-out items of that category and on all other held-out items,
and each change against plain Wanda with a 95% paired bootstrap interval (items resampled, 1,000 times).

Run: python bench/language_protected_items.py [--weights 1,8] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
from language_fair_pruning import BBQ, LENGTH, REPLICATES, SEQUENCES, answers  # noqa: E402 - the same items, scorer


def encoded(frame: object, tokenizer: object) -> object:
    from ticketaudit.llm.bbq import bbq_columns
    from ticketaudit.llm.encode import build_choice_inputs

    choices, answer_columns = bbq_columns(frame)
    return build_choice_inputs(frame.prompt.tolist(), frame[choices].values.tolist(),
                               frame[answer_columns].values.tolist(), tokenizer=tokenizer, n_answers=3, limit=2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="1,8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ticketaudit.demo_llm import smollm2_path
    from ticketaudit.llm.bbq import read_bbq
    from ticketaudit.pruning.language import protected_batches, weighted_batches
    from ticketaudit.pruning.sequential import prune_layerwise
    from ticketaudit.tickets.load import load_dense

    started = time.perf_counter()
    dense = load_dense(smollm2_path())
    tokenizer = dense.tokenizer
    items = read_bbq(BBQ, choices="original")
    half = (np.arange(len(items)) // 2) % 2 == 1
    calibrate, evaluate = items[~half].reset_index(drop=True), items[half].reset_index(drop=True)
    inputs = {"calibration": encoded(calibrate, tokenizer), "held out": encoded(evaluate, tokenizer)}
    dense_answers = {name: answers(dense.module, batch) for name, batch in inputs.items()}
    texts = calibrate.prompt.astype(str).tolist()

    def ticket(batches: list[torch.Tensor], weights: list[torch.Tensor] | None) -> tuple[dict[str, np.ndarray], float]:
        model = copy.deepcopy(dense.module)
        start = time.perf_counter()
        prune_layerwise(model, batches, method="wanda", sparsity=0.5, token_weights=weights)
        seconds = time.perf_counter() - start
        return {name: answers(model, batch) for name, batch in inputs.items()}, seconds

    plain_batches, _ = weighted_batches(tokenizer, texts, sequences=SEQUENCES, length=LENGTH)
    plain, plain_seconds = ticket(plain_batches, None)
    categories = calibrate.category.to_numpy()
    changed = {c: float(np.mean(plain["calibration"][categories == c] != dense_answers["calibration"][categories == c]))
               for c in sorted(set(categories))}
    category = max(changed, key=changed.get)
    marked = (calibrate.category == category).tolist()
    sets = {"protected items": ("calibration", np.asarray(marked)),
            f"held-out {category}": ("held out", (evaluate.category == category).to_numpy()),
            "other held-out items": ("held out", (evaluate.category != category).to_numpy())}
    print(f"SmolLM2-135M-Instruct, 50% Wanda, calibrated on {len(texts)} BBQ item prompts; protected: the "
          f"{sum(marked)} calibration items of {category} (plain Wanda changed {changed[category]:.1%} of their "
          f"dense answers; other categories: "
          f"{', '.join(f'{c} {v:.1%}' for c, v in changed.items() if c != category)})")
    print("| ticket | " + " | ".join(f"{name}: keep dense answer (change vs wanda [95% CI])" for name in sets)
          + " | prune time |")
    print("|---|" + "---|" * len(sets) + "---|")
    rng = np.random.default_rng(7)
    draws = {name: rng.integers(0, int(rows.sum()), size=(REPLICATES, int(rows.sum()))) for name, (_, rows) in
             sets.items()}

    def shares(picked: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, (part, rows) in sets.items():
            same = (picked[part][rows] == dense_answers[part][rows]).astype(float)
            out[name] = np.concatenate([[same.mean()], same[draws[name]].mean(axis=1)])
        return out

    base = shares(plain)
    print("| wanda | " + " | ".join(f"{v[0]:.3f}" for v in base.values()) + f" | {plain_seconds:.0f} s |", flush=True)
    for weight in (float(w) for w in args.weights.split(",")):
        batches, token_weights, covered, total = protected_batches(tokenizer, texts, marked, sequences=SEQUENCES,
                                                                   length=LENGTH, weight=weight)
        picked, seconds = ticket(batches, token_weights)
        cells = []
        for name, values in shares(picked).items():
            change = values - base[name]
            low, high = np.percentile(change[1:], [2.5, 97.5])
            cells.append(f"{values[0]:.3f} ({change[0]:+.3f} [{low:+.3f}, {high:+.3f}])")
        print(f"| protected x{weight:g} | " + " | ".join(cells) + f" | {seconds:.0f} s |", flush=True)
    print(f"(protected tokens in the calibration windows: {covered} of {total}; bench wall time "
          f"{time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
