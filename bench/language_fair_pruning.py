"""Benchmark: do the fairness-aware calibrations help a 50% Wanda ticket of SmolLM2-135M-Instruct on its worst BBQ
category? (issue: language-model pruning, items 2 and 5.)

The 600 shipped BBQ items (Age, Religion, Gender_identity, 200 each; in pairs of an ambiguous and a disambiguated
item) are split by pair: every other pair calibrates, the others (300 items) evaluate, so no evaluated item was
seen in calibration. Per calibration seed:
- ``wanda``: plain Wanda on the shipped English text (32 x 128-token windows drawn with the seed);
- ``wanda+balanced``: Wanda on the calibration items' prompts (context and question), the same tokens per category
  (``--balance-groups category``);
- ``wanda-worst-group``: the same balanced sequences, each input's norm taken per category and the largest kept.
Each ticket answers the 300 items with the release's three answers (``--bbq-choices original``, 4x faster than the
harness's 12 choices); the worst category is the one with the lowest accuracy (or the largest ambiguous bias score).
Each fairness-aware ticket is compared with plain Wanda of the same seed: the change of the worst category's
accuracy and of the largest bias score, with a 95% paired bootstrap interval (items resampled within categories,
jointly for both tickets, 1,000 times). "Better" only when the interval excludes 0 on the good side.

Run: python bench/language_fair_pruning.py [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
BBQ = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"
SEQUENCES, LENGTH, REPLICATES = 32, 128, 1000


def windows(tokenizer: object, text: str, *, seed: int) -> list[torch.Tensor]:
    """32 non-overlapping 128-token windows of ``text`` drawn with ``seed``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts = np.sort(np.random.default_rng(seed).choice(len(ids) // LENGTH, size=SEQUENCES, replace=False)) * LENGTH
    return [torch.tensor([ids[int(s):int(s) + LENGTH]]) for s in starts]


def answers(module: torch.nn.Module, inputs: object) -> np.ndarray:
    from ticketaudit.llm.scoring import choice_loglikelihoods

    with torch.inference_mode():
        return np.array([int(v.argmax()) for v in choice_loglikelihoods(module, inputs, device=torch.device("cpu"))])


def category_scores(frame: object, picked: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """(replicates, categories) accuracy and ambiguous bias score from item indices ``rows`` (replicates, items)."""
    from ticketaudit.analyses.benchmark_scores import bbq_scores

    label, unknown = frame.label.to_numpy(), frame.bbq_unknown.to_numpy()
    biased_table = frame[[f"bbq_biased_{i}" for i in range(3)]].to_numpy(bool)
    chosen = picked[rows]
    scores = bbq_scores(chosen == label[rows], biased_table[rows, chosen], chosen != unknown[rows],
                        (frame.context_condition.to_numpy() == "disambig")[rows])
    return {"accuracy": (chosen == label[rows]).mean(axis=-1), "bias": scores["bias_ambig"]}


def worst(frame: object, picked: np.ndarray, resampled: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(replicates + 1,) worst-category accuracy and largest ambiguous bias (first entry: the observed items)."""
    accuracy, bias = [], []
    for rows in resampled.values():
        scores = category_scores(frame, picked, rows)
        accuracy.append(scores["accuracy"])
        bias.append(scores["bias"])
    return np.min(accuracy, axis=0), np.max(bias, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ticketaudit.demo_llm import smollm2_path
    from ticketaudit.llm.bbq import bbq_columns, read_bbq
    from ticketaudit.llm.encode import build_choice_inputs
    from ticketaudit.prune_language import calibration_text
    from ticketaudit.pruning.language import grouped_calibration
    from ticketaudit.pruning.sequential import prune_layerwise
    from ticketaudit.tickets.load import load_dense

    started = time.perf_counter()
    dense = load_dense(smollm2_path())
    tokenizer = dense.tokenizer
    items = read_bbq(BBQ, choices="original")
    half = (np.arange(len(items)) // 2) % 2 == 1  # items come in (ambiguous, disambiguated) pairs: split by pair
    calibrate, evaluate = items[~half].reset_index(drop=True), items[half].reset_index(drop=True)
    choices, answer_columns = bbq_columns(evaluate)
    inputs = build_choice_inputs(evaluate.prompt.tolist(), evaluate[choices].values.tolist(),
                                 evaluate[answer_columns].values.tolist(), tokenizer=tokenizer, n_answers=3, limit=2048)
    rng = np.random.default_rng(12345)
    categories = sorted(evaluate.category.unique())
    resampled = {}
    for category in categories:
        members = np.flatnonzero(evaluate.category.to_numpy() == category)
        draws = members[rng.integers(0, len(members), size=(REPLICATES, len(members)))]
        resampled[category] = np.vstack([members[None, :], draws])
    text, _ = calibration_text(None)
    picked = {"dense": answers(dense.module, inputs)}
    observed = {"dense": worst(evaluate, picked["dense"], resampled)}
    print(f"SmolLM2-135M-Instruct, 50% Wanda tickets, {len(evaluate)} held-out BBQ items ({', '.join(categories)}); "
          f"dense: worst-category accuracy {observed['dense'][0][0]:.3f}, largest ambiguous bias "
          f"{observed['dense'][1][0]:+.3f}")
    print("| seed | ticket | worst-category accuracy | change vs wanda [95% CI] | largest ambiguous bias | "
          "change vs wanda [95% CI] | prune time |")
    print("|---|---|---|---|---|---|---|")
    tally = {"wanda+balanced": [0, 0, 0], "wanda-worst-group": [0, 0, 0]}  # better, worse, no difference shown
    for seed in (int(s) for s in args.seeds.split(",")):
        balanced, owners, _ = grouped_calibration(tokenizer, calibrate.prompt.astype(str).tolist(),
                                                  calibrate.category.astype(str).tolist(), sequences=SEQUENCES,
                                                  length=LENGTH, seed=seed)
        runs = {"wanda": ("wanda", windows(tokenizer, text, seed=seed), None),
                "wanda+balanced": ("wanda", balanced, owners), "wanda-worst-group": ("wanda-worst-group", balanced, owners)}
        results = {}
        for name, (method, batches, groups) in runs.items():
            model = copy.deepcopy(dense.module)
            start = time.perf_counter()
            prune_layerwise(model, batches, method=method, sparsity=0.5, groups=groups)
            seconds = time.perf_counter() - start
            results[name] = worst(evaluate, answers(model, inputs), resampled)
            del model
            base = results["wanda"]
            line = f"| {seed} | {name} | {results[name][0][0]:.3f} | "
            if name == "wanda":
                line += f"— | {results[name][1][0]:+.3f} | — | {seconds:.0f} s |"
            else:
                verdicts = []
                for k, good in ((0, 1), (1, -1)):
                    change = results[name][k] - base[k]
                    low, high = np.percentile(change[1:], [2.5, 97.5])
                    verdicts.append("better" if good * low > 0 and good * high > 0 else
                                    "worse" if good * low < 0 and good * high < 0 else "no difference shown")
                    line += (f"{change[0]:+.3f} [{low:+.3f}, {high:+.3f}] {verdicts[-1]} | "
                             + (f"{results[name][1][0]:+.3f} | " if k == 0 else ""))
                line += f"{seconds:.0f} s |"
                for verdict in verdicts:
                    tally[name][("better", "worse", "no difference shown").index(verdict)] += 1
            print(line, flush=True)
    for name, (better, worse, neither) in tally.items():
        print(f"{name}: better than plain Wanda in {better} of {better + worse + neither} comparisons (worst-category "
              f"accuracy and largest bias, per seed), worse in {worse}, no difference shown in {neither}")
    print(f"(bench wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
