"""Tiny image fixtures: generated images on disk, a table of their paths, CNN bundles, Hugging Face ViT and
ResNet directories, and a linear pixel model whose attributions are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from ticketaudit.models.cnn import CNN
from ticketaudit.tickets.bundle import save_bundle
from ticketaudit.tickets.mask import Mask

SIDE = 8
PROCESSOR = {"do_resize": True, "size": {"height": SIDE, "width": SIDE}, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
             "image_std": [0.5, 0.5, 0.5]}


def write_images(folder: Path, rows: int, *, seed: int = 0, mixed_sizes: bool = True) -> pd.DataFrame:
    """``rows`` random RGB PNGs (sizes varying when ``mixed_sizes``) under ``folder/images`` and their table
    (``path`` relative to ``folder``, ``label`` 0/1 from the image's brightness, ``group`` a/b)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(rows):
        height, width = (int(v) for v in rng.integers(6, 20, 2)) if mixed_sizes else (SIDE, SIDE)
        pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i}.png")
        records.append({"path": f"images/{i}.png", "label": int(pixels.mean() > 127.5),
                        "group": "a" if i % 3 else "b"})
    return pd.DataFrame(records)


def _processed(rows: int, *, seed: int = 123) -> np.ndarray:
    """Images like ``write_images``'s, through ``PROCESSOR``."""
    from ticketaudit.images import ImageProcessor

    rng = np.random.default_rng(seed)
    processor = ImageProcessor.from_dict(PROCESSOR, source="fixtures")
    return np.stack([processor(Image.fromarray((rng.random((*rng.integers(6, 20, 2), 3)) * 255).astype(np.uint8)))
                     for _ in range(rows)])


def cnn_bundles(folder: Path, *, seed: int = 0, processor: dict | None = None, keep: float = 0.5) -> tuple[Path, Path]:
    """A random CNN and its magnitude ticket keeping ``keep`` of each layer, as bundles with
    ``preprocessor_config.json``."""
    torch.manual_seed(seed)
    dense = CNN(channels=[4, 8], out_features=2).eval()
    with torch.no_grad():  # centre the logits on the mean image, so predictions depend on the image
        dense.classifier.bias.zero_()
        features = dense.pool(dense.features(torch.as_tensor(_processed(256)))).flatten(1)
        dense.classifier.bias.copy_(-dense.classifier(features).mean(0))
    mask = Mask({n: p.detach().abs() >= p.detach().abs().flatten().quantile(1 - keep)
                 for n, p in dense.named_parameters() if p.dim() > 1}, model=dense)
    for name, the_mask in (("dense", None), ("ticket", mask)):
        save_bundle(folder / name, dense, architecture="cnn", arguments={"channels": [4, 8], "out_features": 2},
                    mask=the_mask, image_processor=PROCESSOR if processor is None else processor)
    return folder / "dense", folder / "ticket"


def build_cnn() -> nn.Module:
    """Factory (MODULE:FUNC) of the fixtures' CNN."""
    return CNN(channels=[4, 8], out_features=2)


def huggingface_vit(folder: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """A 2-layer ViT (2 heads, 8 x 8 images, 4 x 4 patches) and its 50% magnitude ticket, saved with their
    image processor."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                    image_size=SIDE, patch_size=4, num_labels=2)
    model = transformers.ViTForImageClassification(config).eval()
    processor = transformers.ViTImageProcessorPil(size={"height": SIDE, "width": SIDE})
    model.save_pretrained(folder / "vit-dense")
    processor.save_pretrained(folder / "vit-dense")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1 and "embeddings" not in name:
                param[param.abs() < param.abs().median()] = 0
    model.save_pretrained(folder / "vit-ticket")
    processor.save_pretrained(folder / "vit-ticket")
    return folder / "vit-dense", folder / "vit-ticket"


def huggingface_resnet(folder: Path, *, seed: int = 0) -> Path:
    import transformers

    torch.manual_seed(seed)
    config = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                       num_labels=2)
    model = transformers.ResNetForImageClassification(config).eval()
    model.save_pretrained(folder / "resnet")
    transformers.ConvNextImageProcessorPil(size={"shortest_edge": SIDE}, crop_pct=0.875).save_pretrained(folder / "resnet")
    return folder / "resnet"


class PixelLinear(nn.Module):
    """Logits linear in the pixels (3 x SIDE x SIDE): Integrated Gradients from a zero baseline is exactly
    weight x pixel, so a zero weight means zero attribution."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * SIDE * SIDE, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def quadrant_models() -> tuple[nn.Module, Mask]:
    """A dense model reading the top-left and bottom-right quadrants, and a mask keeping only the bottom-right."""
    torch.manual_seed(0)
    model = PixelLinear()
    where = torch.zeros(3, SIDE, SIDE, dtype=torch.bool)
    half = SIDE // 2
    where[:, :half, :half] = True
    where[:, half:, half:] = True
    keep = torch.zeros(3, SIDE, SIDE, dtype=torch.bool)
    keep[:, half:, half:] = True
    with torch.no_grad():
        model.linear.weight.mul_(where.flatten()[None].to(torch.float32))
    return model, Mask({"linear.weight": keep.flatten()[None].expand(2, -1).clone()}, model=model)


def write_processor(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")
    return path
