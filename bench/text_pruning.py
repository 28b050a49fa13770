"""Benchmark: pruning alternatives on a small BERT (issue 18, part 3): global magnitude, group-balanced and
attention-head (structured) pruning, without and with fine-tuning, on generated reviews where a minority
group's label rides on rare dialect words.

Data (generated, seeded): reviews of 4-14 words. Majority rows (85%): the label is whether the review holds a
common praise word. Minority rows (15%): the label is whether it holds one of 3 rare dialect words of praise
(the common words are noise there). Model: a 4-layer BERT (hidden 64, 4 heads) trained from scratch here
(random init from its config, no download) with the tool's own training loop; it is then pruned with
`ticketaudit.prune` on a held-out training split and compared on a test split.

Prints one row per method x sparsity x recovery x seed: overall accuracy, the minority's accuracy, the
accuracy-gap widening against the dense model, and the sparsity reached.

Run: python bench/text_pruning.py [--seeds 2] [--sparsities 0.5,0.7] [--rows 3000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

COMMON = ("good", "great", "loved", "fine")
RARE = ("wicked", "mint", "braw")
NOISE = ("the a movie film plot acting music story bad awful dull long short funny sad it was is very not quite "
         "scene cast ending").split()


def reviews(rows: int, *, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    minority = rng.random(rows) < 0.15
    texts, labels = [], []
    for is_minority in minority:
        words = list(rng.choice(NOISE, size=int(rng.integers(4, 15))))
        positive = bool(rng.random() < 0.5)
        if is_minority:
            if positive:
                words.insert(int(rng.integers(0, len(words))), str(rng.choice(RARE)))
            if rng.random() < 0.5:  # common praise words carry no signal in this group
                words.insert(int(rng.integers(0, len(words))), str(rng.choice(COMMON)))
        elif positive:
            words.insert(int(rng.integers(0, len(words))), str(rng.choice(COMMON)))
        texts.append(" ".join(words))
        labels.append(int(positive))
    return pd.DataFrame({"review": texts, "label": labels, "group": np.where(minority, "minority", "majority")})


def dense_model(folder: Path, train: pd.DataFrame, *, seed: int) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from ticketaudit.modalities.text import TextModality
    from ticketaudit.pruning.imp import TrainSettings, train as fit
    from ticketaudit.pruning.tokens import TokenClassifier

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *COMMON, *RARE, *NOISE]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=32)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokens), hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=32, num_labels=2, attn_implementation="eager")
    model = BertForSequenceClassification(config)
    x = torch.tensor(TextModality(column="review", tokenizer=tokenizer).matrix(train), dtype=torch.float32)
    y = torch.tensor(train["label"].to_numpy())
    trained, _ = fit(TokenClassifier(model), x, y, settings=TrainSettings(epochs=12, batch_size=64, seed=seed,
                                                                          learning_rate=2e-3))
    directory = folder / f"dense-{seed}"
    trained.model.eval().save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sparsities", default="0.5,0.7")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from ticketaudit.prune import prune

    started = time.perf_counter()
    print("| seed | sparsity | recovery | method | sparsity reached | accuracy | minority accuracy | gap widening |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            train, test = reviews(args.rows, seed=100 + seed), reviews(args.rows // 2, seed=200 + seed)
            dense = dense_model(Path(tmp), train, seed=seed)
            for sparsity in (float(v) for v in args.sparsities.split(",")):
                for recover in ("none", "finetune"):
                    result = prune(dense=dense, data=test, train_data=train, target="label", sensitive="group",
                                   text="review", sparsity=sparsity,
                                   methods="global-magnitude,group-balanced,structured", recover=recover, epochs=2,
                                   n_boot=200, seed=seed)
                    alternatives = result.alternatives
                    for c in alternatives.candidates:
                        print(f"| {seed} | {sparsity:g} | {recover} | {c.method} | {c.sparsity:.1%} | "
                              f"{c.accuracy:.1%} (dense {alternatives.dense_accuracy:.1%}) | "
                              f"{c.group_accuracy.get('group=minority', float('nan')):.1%} | "
                              f"{c.gap_widening.value * 100:+.1f} pts |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
