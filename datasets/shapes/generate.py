"""Regenerate shapes.parquet: 2,400 generated 32 x 32 RGB images of one circle or square each.

Run from the repository root: ``python datasets/shapes/generate.py``. Deterministic (seed 0): the same
bytes every time with the same numpy and Pillow versions.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SIZE = 32
ROWS = 2400
DARK_SHARE = 0.2
TEST_SHARE = 1 / 3


def draw(rng: np.random.Generator, *, shape: str, dark: bool) -> bytes:
    background = rng.integers(10, 60, 3) if dark else rng.integers(170, 250, 3)
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in background))
    pen = ImageDraw.Draw(image)
    radius = int(rng.integers(5, 11))
    cx, cy = (int(v) for v in rng.integers(radius + 1, SIZE - radius - 1, 2))
    # Dark backgrounds get dimmer objects: less contrast, a harder group.
    fill = background + rng.integers(35, 80, 3) if dark else background - rng.integers(60, 160, 3)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    colour = tuple(int(v) for v in np.clip(fill, 0, 255))
    (pen.ellipse if shape == "circle" else pen.rectangle)(box, fill=colour)
    # A soft random light gradient instead of pixel noise (PNG keeps it small).
    ramp = np.linspace(-1, 1, SIZE)[None, :, None] * rng.integers(-12, 13, 3)[None, None, :]
    pixels = np.asarray(image, dtype=np.float64) + np.round(np.repeat(ramp, SIZE, axis=0))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(ROWS):
        shape = "circle" if rng.random() < 0.5 else "square"
        dark = bool(rng.random() < DARK_SHARE)
        rows.append({"id": i, "image": draw(rng, shape=shape, dark=dark), "shape": shape,
                     "background": "dark" if dark else "light",
                     "split": "test" if rng.random() < TEST_SHARE else "train"})
    frame = pd.DataFrame(rows)
    frame.to_parquet(Path(__file__).with_name("shapes.parquet"), index=False, compression="zstd")


if __name__ == "__main__":
    main()
