"""Benchmark: image audits against the plain loop a user would write, in the same process tree on the same images.

Model: a ResNet-18 (Hugging Face ResNet, basic blocks, 11.2M parameters; random weights from its config, no download) and its 50% magnitude
ticket, saved with a ConvNeXt-style image processor (shortest edge --size, crop_pct 0.875). Images: generated JPEG
files of mixed sizes (160-260 px) and a CSV of their paths, labels and groups.

Prints, against the targets of issue 15:
- throughput: `ticketaudit report --analyses metrics,disagreement,compression` (decoding included) vs the plain loop
  (transformers' own image processor + both models, batches of 64, float32, inference mode): target >= 0.7x;
- memory (--memory): peak RSS of the audit on 1k and on 10k images: target flat;
- attributions (--attributions): seconds per image of ticketaudit's Integrated Gradients (both models, 50 steps,
  decoding included) vs raw Captum on the same images, batches and steps: target <= 1.2x.

Run: python bench/vision.py [--rows 1000] [--size 112] [--threads 2] [--memory] [--attributions] [--device cpu|cuda]
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
from PIL import Image

from _timing import process_peak

SMALL_RUN = 50
"""Images of the run that measures start-up (imports, loading, report), subtracted for the per-image rate."""


def models(size: int, *, small: bool = False) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """A ResNet-18-shaped classifier (or a small one), its 50% magnitude ticket and the image processor."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    shape = ({"embedding_size": 32, "hidden_sizes": [32, 64, 128, 256], "depths": [1, 1, 1, 1]} if small else
             {"embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2],
              "layer_type": "basic"})  # ResNet-18: 11.2M parameters
    config = transformers.ResNetConfig(num_channels=3, num_labels=2, **shape)
    dense = transformers.ResNetForImageClassification(config).eval()
    ticket = transformers.ResNetForImageClassification(config).eval()
    ticket.load_state_dict(dense.state_dict())
    with torch.no_grad():
        weights = [p for p in ticket.parameters() if p.dim() > 1]
        threshold = torch.cat([p.abs().flatten() for p in weights]).median()
        for p in weights:
            p[p.abs() < threshold] = 0
    processor = transformers.ConvNextImageProcessorPil(size={"shortest_edge": size}, crop_pct=0.875)
    return dense, ticket, processor


def write_images(folder: Path, rows: int) -> pd.DataFrame:
    """``rows`` JPEGs of smooth random colour fields (160-260 px a side) and their table."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    base = rng.random((8, 8, 3))
    records = []
    for i in range(rows):
        width, height = (int(v) for v in rng.integers(160, 261, 2))
        tile = np.clip(base + rng.normal(scale=0.3, size=(8, 8, 3)), 0, 1)
        image = Image.fromarray((tile * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
        image.save(folder / "images" / f"{i}.jpg", quality=85)
        records.append({"path": f"images/{i}.jpg", "label": int(rng.random() < 0.5),
                        "group": str(rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1]))})
    return pd.DataFrame(records)


def decode(processor: object, folder: Path, paths: list[str]) -> torch.Tensor:
    images = [Image.open(folder / p).convert("RGB") for p in paths]
    return processor(images, return_tensors="pt")["pixel_values"]  # type: ignore[operator]


def plain_loop(dense: torch.nn.Module, ticket: torch.nn.Module, processor: object, folder: Path, paths: list[str], *,
               device: str) -> float:
    """What a user would write: decode a batch with the model's image processor, run both models on it."""
    start = time.perf_counter()
    with torch.inference_mode():
        dense.to(device)
        ticket.to(device)
        for first in range(0, len(paths), 64):
            pixels = decode(processor, folder, paths[first:first + 64]).to(device)
            dense(pixel_values=pixels)
            ticket(pixel_values=pixels)
        if device == "cuda":
            torch.cuda.synchronize()
    dense.to("cpu")
    ticket.to("cpu")
    return time.perf_counter() - start


def audit_process(folder: Path, threads: int, *, max_rows: int | None = None, device: str = "cpu",
                  precision: str = "auto") -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of one `ticketaudit report` process (on the first ``max_rows`` rows)."""
    command = [sys.executable, "-m", "ticketaudit", "report", "--dense", str(folder / "dense"),
               "--ticket", str(folder / "ticket"), "--data", str(folder / "images.csv"), "--image", "path",
               "--target", "label", "--sensitive", "group", "--analyses", "metrics,disagreement,compression",
               "--seed", "0", "--n-boot", "200", "--quiet", "--out", str(folder / "report.html"), "--device", device,
               "--precision", precision,
               *(["--max-rows", str(max_rows)] if max_rows else [])]
    return process_peak(command, threads=threads)


def save(folder: Path, dense: torch.nn.Module, ticket: torch.nn.Module, processor: object) -> None:
    for name, model in (("dense", dense), ("ticket", ticket)):
        model.save_pretrained(str(folder / name))
        processor.save_pretrained(str(folder / name))  # type: ignore[attr-defined]


def attribution_ratio(folder: Path, table: pd.DataFrame, rows: int, size: int, *, device: str) -> None:
    """Seconds per image: ticketaudit's pixel attributions (both models) vs raw Captum, same images and steps."""
    from captum.attr import IntegratedGradients

    from ticketaudit.analyses.image_attributions import IMAGE_BATCH, attribute_pixels
    from ticketaudit.images import ImageInputs, ImageProcessor

    dense, ticket, processor = models(size, small=True)
    paths = list(table["path"][:rows])
    targets = table["label"].to_numpy()[:rows]
    processor.save_pretrained(str(folder / "processor"))  # type: ignore[attr-defined]
    ours = ImageProcessor.from_file(folder / "processor" / "preprocessor_config.json")
    inputs = ImageInputs(np.array([str(folder / p) for p in paths], dtype=object), np.arange(rows), ours, "path")
    where = torch.device(device)
    start = time.perf_counter()
    for model in (dense, ticket):
        attribute_pixels(model, inputs, targets, method="integrated-gradients", steps=50, device=where,
                         dtype=torch.float32, seed=0)
    tool = time.perf_counter() - start
    start = time.perf_counter()
    for model in (dense, ticket):
        model.to(where)
        explainer = IntegratedGradients(lambda x, m=model: m(pixel_values=x).logits)
        for first in range(0, rows, IMAGE_BATCH):
            pixels = decode(processor, folder, paths[first:first + IMAGE_BATCH]).to(where)
            target = torch.as_tensor(targets[first:first + IMAGE_BATCH], device=where)
            explainer.attribute(pixels, baselines=torch.zeros_like(pixels), target=target, n_steps=50,
                                internal_batch_size=IMAGE_BATCH).abs().sum(1).cpu()
        model.to("cpu")
    raw = time.perf_counter() - start
    print(f"attributions ({rows} images, {size} px, small ResNet, IG 50 steps, both models): ticketaudit "
          f"{tool / rows:.3f} s/image, raw Captum {raw / rows:.3f} s/image: {tool / raw:.2f}x (target <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--size", type=int, default=112, help="the processed images' side (pixels)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default="auto,float64", help="auto = float32 for a ResNet-18 (> 5M parameters)")
    parser.add_argument("--memory", action="store_true", help="peak RSS of the audit on 1k and 10k images")
    parser.add_argument("--attributions", action="store_true", help="attribution time per image vs raw Captum")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = 10_000 if args.memory else args.rows
        table = write_images(folder, rows)
        table.to_csv(folder / "images.csv", index=False)
        if args.attributions:
            attribution_ratio(folder, table, min(rows, 40), args.size, device=args.device)
            return
        dense, ticket, processor = models(args.size, small=args.memory)
        save(folder, dense, ticket, processor)
        if args.memory:
            for count in (1_000, 10_000):
                seconds, peak = audit_process(folder, args.threads, max_rows=count, device=args.device)
                print(f"{count:,} images (small ResNet, {args.size} px): {seconds:.1f} s, peak RSS {peak:.2f} GiB")
            return
        paths = list(table["path"])
        plain = plain_loop(dense, ticket, processor, folder, paths, device=args.device)
        print(f"{rows:,} images, {args.size} px, ResNet-18 shape on {args.device}; plain loop (transformers' processor, "
              f"both models, batches of 64): {plain:.1f} s ({rows / plain:.1f} images/s)")
        for precision in args.precisions.split(","):
            seconds, peak = audit_process(folder, args.threads, device=args.device, precision=precision)
            few = min(SMALL_RUN, rows // 4)
            start_up, _ = audit_process(folder, args.threads, max_rows=few, device=args.device, precision=precision)
            per_image = (seconds - start_up) / (rows - few)
            print(f"ticketaudit report --analyses metrics,disagreement,compression --precision {precision}: {seconds:.1f} s "
                  f"(incl. start-up), peak RSS {peak:.2f} GiB; throughput {plain / seconds:.2f}x the plain loop's "
                  f"(target >= 0.7x). A {few}-image run takes {start_up:.1f} s (imports, loading, report); past it, "
                  f"{1 / per_image:.1f} images/s: {plain / rows / per_image:.2f}x")


if __name__ == "__main__":
    main()
