"""Benchmark: the attribution cost model (``ticketaudit.analyses.cost``) against measured time, on real-size models.

For each model, method and precision it times both models' attributions on a few rows through ticketaudit's own
code path and prints measured / estimated seconds. The budget is honoured when the ratio stays <= 1.5 (issue:
defaults that finish, item 2); a ratio well under 1 means the sample could have been larger (a faster machine, or a
conservative throughput). Random weights: speed does not depend on training.

Run: python bench/attribution_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from ticketaudit.analyses import cost


def _ticket(model: torch.nn.Module) -> torch.nn.Module:
    ticket = copy.deepcopy(model)
    with torch.no_grad():
        for p in ticket.parameters():
            if p.dim() >= 2:
                p.mul_(p.abs() > p.abs().median())
    return ticket


def images(name: str, model: torch.nn.Module, method: str, steps: int, rows: int, precision: str) -> tuple[float, float]:
    from ticketaudit.analyses.image_attributions import GRID, attribute_pixels
    from ticketaudit.analyses.predict import DTYPES
    from ticketaudit.images import ImageInputs

    class Pixels(ImageInputs):  # pre-made pixels: times the attribution, not the decoding
        def __init__(self, pixels: np.ndarray) -> None:
            object.__setattr__(self, "data", pixels)

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, rows: slice) -> "Pixels":
            return Pixels(self.data[rows])

        def pixels(self) -> np.ndarray:
            return self.data

    pixels = np.random.default_rng(0).random((rows, 3, 224, 224), dtype=np.float32)
    estimate = rows * 2 * cost.row_cost(model, pixels[:1]).seconds(
        passes=cost.forward_passes(method, steps=steps, inputs=GRID * GRID), precision=precision)
    started = time.perf_counter()
    for module in (model, _ticket(model)):
        attribute_pixels(module, Pixels(pixels), np.zeros(rows, dtype=np.int64), method=method, steps=steps,
                         device=torch.device("cpu"), dtype=DTYPES[precision], seed=0)
    return time.perf_counter() - started, estimate


def tables(model: torch.nn.Module, method: str, steps: int, rows: int, precision: str) -> tuple[float, float]:
    from ticketaudit.analyses.attributions import attribute
    from ticketaudit.analyses.predict import DTYPES

    x = np.random.default_rng(0).normal(size=(rows, 108))
    estimate = rows * 2 * cost.row_cost(model, x[:1].astype(np.float32)).seconds(
        passes=cost.forward_passes(method, steps=steps, inputs=108), precision=precision)
    started = time.perf_counter()
    for module in (model, _ticket(model)):
        attribute(module, x, np.zeros(rows, dtype=np.int64), method=method, steps=steps, baselines=np.zeros((1, 108)),
                  batch_size=1024, device=torch.device("cpu"), dtype=DTYPES[precision])
    return time.perf_counter() - started, estimate


def text(model: torch.nn.Module, tokenizer: object, steps: int, rows: int) -> tuple[float, float]:
    from ticketaudit.analyses.text_attributions import attribute_words
    from ticketaudit.inputs import TokenInputs

    words = "the film was long but the acting was good and the music fine".split()
    texts = [" ".join(np.random.default_rng(i).choice(words, size=24)) for i in range(rows)]
    encoded = tokenizer(texts)  # type: ignore[operator]
    length = int(np.mean([len(ids) for ids in encoded["input_ids"]]))
    probe = TokenInputs(np.ones((1, length), dtype=np.int32), np.ones((1, length), dtype=np.int8))
    estimate = rows * 2 * cost.row_cost(model, probe).seconds(
        passes=cost.forward_passes("layer-integrated-gradients", steps=steps, inputs=length), precision="float32")
    started = time.perf_counter()
    attribute_words(model, _ticket(model), texts, np.zeros(rows, dtype=np.int64), tokenizer=tokenizer, max_length=512,
                    method="layer-integrated-gradients", steps=steps, batch_size=16, device=torch.device("cpu"))
    return time.perf_counter() - started, estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rows per case")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import transformers

    scale = 1 if args.quick else 2
    mobilenet = transformers.MobileNetV2ForImageClassification(transformers.MobileNetV2Config(num_labels=2)).eval()
    resnet = transformers.ResNetForImageClassification(transformers.ResNetConfig(
        depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic", num_labels=2)).eval()
    mlp = torch.nn.Sequential(torch.nn.Linear(108, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                              torch.nn.Linear(512, 2))
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)).eval()
    tokenizer = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the film was long but acting good and music fine".split()])})
    cases = [
        ("MobileNetV2 224px, IG 16 steps, float32", lambda: images("mnv2", mobilenet, "integrated-gradients", 16, 2 * scale, "float32")),
        ("MobileNetV2 224px, saliency, float32", lambda: images("mnv2", mobilenet, "saliency", 50, 8 * scale, "float32")),
        ("MobileNetV2 224px, saliency, float64", lambda: images("mnv2", mobilenet, "saliency", 50, 2 * scale, "float64")),
        ("ResNet-18 224px, IG 16 steps, float32", lambda: images("r18", resnet, "integrated-gradients", 16, 2 * scale, "float32")),
        ("ResNet-18 224px, occlusion 16x16, float32", lambda: images("r18", resnet, "occlusion", 50, 1 * scale, "float32")),
        ("MLP 108-512-512-2, IG 50 steps, float64, 2,000 rows", lambda: tables(mlp, "integrated-gradients", 50, 1000 * scale, "float64")),
        ("MLP, IG 50 steps, float32", lambda: tables(mlp, "integrated-gradients", 50, 1000 * scale, "float32")),
        ("MiniLM-size BERT, LIG 50 steps, float32, ~26 tokens", lambda: text(bert, tokenizer, 50, 4 * scale)),
    ]
    print("| case | measured s | estimated s | measured / estimated |")
    print("|---|---|---|---|")
    for name, run in cases:
        measured, estimate = run()
        print(f"| {name} | {measured:.2f} | {estimate:.2f} | {measured / estimate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
