"""Benchmark: text attributions on a MiniLM-size model (6 layers, hidden 384, 12 heads; random weights,
built from its config — no download) on this machine's CPUs.

Prints: (1) rows/s of ticketaudit's word attributions (LayerIntegratedGradients at the token embeddings,
50 steps, both the dense model and a 50%-magnitude-pruned ticket, words summed) against calling Captum's
LayerIntegratedGradients directly on the same rows, steps, baseline and batch (the reference), and their
ratio; (2) the rows the default --attribution-budget (120 s) picks for this model and the time those rows
take here — the issue's target: text attributions by default in about two minutes on 2 cores.

Run: python bench/text_attributions.py [--rows 32] [--steps 50] [--words 24] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import torch

from ticketaudit.analyses.cost import budgeted, row_cost
from ticketaudit.analyses.text_attributions import STEP_TOKENS, TEXT_BUDGET_SECONDS, attribute_words
from ticketaudit.inputs import TokenInputs
from _timing import best_of

VOCAB = ("the a movie film plot acting music story good bad great awful fine dull long short funny sad loved hated "
         "it was is very not quite women men black white old young people actor director scene").split()


def models(*, layers: int = 6) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """A MiniLM-size BERT (``layers`` deep; random weights) and its 50% magnitude ticket, with a word tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=512)
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                        intermediate_size=1536, num_labels=2)
    dense = BertForSequenceClassification(config).eval()
    ticket = copy.deepcopy(dense)
    with torch.no_grad():
        for name, param in ticket.named_parameters():
            if param.dim() == 2 and ".encoder." in name:
                param.mul_(param.abs() > param.abs().flatten().kthvalue(param.numel() // 2).values)
    return dense, ticket, tokenizer


def captum_directly(models: tuple[torch.nn.Module, ...], tokenizer: object, texts: list[str], targets: np.ndarray, *,
                    steps: int, batch: int) -> None:
    """What a user would write: LayerIG on each model's word embeddings, padding baseline, same batches."""
    from captum.attr import LayerIntegratedGradients

    encoded = tokenizer(texts, padding="longest", return_tensors="pt", return_special_tokens_mask=True)
    special = encoded.pop("special_tokens_mask").bool()
    baseline = torch.where(special, encoded["input_ids"], torch.zeros_like(encoded["input_ids"]))
    for model in models:
        def forward(ids: torch.Tensor, mask: torch.Tensor, model: torch.nn.Module = model) -> torch.Tensor:
            return model(input_ids=ids, attention_mask=mask).logits

        explainer = LayerIntegratedGradients(forward, model.get_input_embeddings())
        for start in range(0, len(texts), batch):
            rows = slice(start, start + batch)
            explainer.attribute(encoded["input_ids"][rows], baselines=baseline[rows],
                                target=torch.as_tensor(targets[rows]), n_steps=steps,
                                additional_forward_args=(encoded["attention_mask"][rows],),
                                internal_batch_size=max(1, STEP_TOKENS // encoded["input_ids"].shape[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--words", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    dense, ticket, tokenizer = models()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(VOCAB, size=args.words)) for _ in range(args.rows)]
    targets = rng.integers(0, 2, size=args.rows)
    ours = best_of(args.repeats, lambda: attribute_words(
        dense, ticket, texts, targets, tokenizer=tokenizer, max_length=512, method="integrated-gradients",
        steps=args.steps, batch_size=16, device=torch.device("cpu")))
    reference = best_of(args.repeats, lambda: captum_directly((dense, ticket), tokenizer, texts, targets,
                                                               steps=args.steps, batch=16))
    print(f"MiniLM-size BERT, {args.words} words/row, {args.steps} steps, both models, {args.threads} threads")
    print(f"ticketaudit word attributions: {args.rows / ours:.2f} rows/s ({ours:.1f} s for {args.rows} rows)")
    print(f"Captum LayerIG directly:       {args.rows / reference:.2f} rows/s ({reference:.1f} s)")
    print(f"ratio (ticketaudit / Captum time): {ours / reference:.2f}")
    tokens = float(np.mean([len(ids) for ids in tokenizer(texts)["input_ids"]]))
    probe = TokenInputs(np.ones((1, int(tokens)), dtype=np.int32), np.ones((1, int(tokens)), dtype=np.int8))
    rows = budgeted(row_cost(dense, probe), method="layer-integrated-gradients", steps=args.steps, inputs=int(tokens),
                    precision="float32", budget_seconds=TEXT_BUDGET_SECONDS, population=10**9, floor=50).rows
    print(f"default budget {TEXT_BUDGET_SECONDS:.0f} s, {tokens:.0f} tokens/row -> {rows} rows; at the measured rate "
          f"that is "
          f"{rows * ours / args.rows:.0f} s here (target: about 120 s on 2 cores)")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"bench wall time {time.perf_counter() - start:.0f} s")
