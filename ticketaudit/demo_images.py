"""``ticketaudit demo --model cnn``: a small CNN and its IMP ticket on the generated shapes images, audited
from a folder of PNG files and a CSV of paths, labels and groups (the layout users bring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .audit import AuditResult, audit
from .datasets import SHAPES_LABELS, load_shapes
from .images import ImageInputs, ImageProcessor
from .models import build_architecture
from .pruning.imp import TrainSettings, iterative_magnitude_pruning
from .tickets.bundle import save_bundle

PROCESSOR: dict[str, Any] = {"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 2,
                             "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                             "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                             "image_processor_type": "ViTImageProcessor"}
ARGUMENTS: dict[str, Any] = {"in_channels": 3, "channels": [8, 16, 32], "out_features": 2}
ROUNDS, FINAL_DENSITY, EPOCHS = 3, 0.2, 6
TRAIN = TrainSettings(epochs=EPOCHS, batch_size=64, learning_rate=3e-3)
REWIND_STEP = 20


def write_images(frame: pd.DataFrame, folder: Path) -> list[str]:
    """Each row's PNG as ``folder/<id>.png``; their paths relative to ``folder``'s parent (where the tables go)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for identifier, data in zip(frame["id"], frame["image"]):
        (folder / f"{identifier}.png").write_bytes(data)
        paths.append(f"{folder.name}/{identifier}.png")
    return paths


def run_image_demo(out: Path, *, seed: int = 0, progress: Callable[[str, int, int], None] | None = None) -> AuditResult:
    """Write images/, shapes_train.csv, shapes_test.csv, dense/ and ticket/ bundles, report.html and report.json."""
    from .outputs import write_report

    step = progress or (lambda *_: None)
    torch.manual_seed(seed)
    train_frame, test_frame = load_shapes("train"), load_shapes("test")
    out.mkdir(parents=True, exist_ok=True)
    train_path, test_path = out / "shapes_train.csv", out / "shapes_test.csv"
    for frame, path in ((train_frame, train_path), (test_frame, test_path)):
        frame.drop(columns="image").assign(image=write_images(frame, out / "images")).to_csv(path, index=False)
    processor = ImageProcessor.from_dict(PROCESSOR, source="demo")
    inputs = ImageInputs(np.array(list(train_frame["image"]), dtype=object), np.arange(len(train_frame)),
                         processor, "image")
    pixels = torch.as_tensor(inputs.pixels())
    labels = torch.as_tensor((train_frame["shape"] == SHAPES_LABELS[1]).to_numpy(dtype=np.int64))
    total_epochs, done = EPOCHS * (ROUNDS + 1), 0

    def epoch_done() -> None:
        nonlocal done
        done += 1
        step("Training dense CNN and ticket (IMP with rewinding)", done, total_epochs)

    dense, ticket, mask = iterative_magnitude_pruning(
        build_architecture("cnn", ARGUMENTS), pixels, labels, rounds=ROUNDS, final_density=FINAL_DENSITY,
        settings=dataclasses.replace(TRAIN, seed=seed), rewind_step=REWIND_STEP, on_epoch=epoch_done)
    for name, module, the_mask in (("dense", dense, None), ("ticket", ticket, mask)):
        save_bundle(out / name, module, architecture="cnn", arguments=ARGUMENTS, labels=SHAPES_LABELS, mask=the_mask,
                    image_processor=PROCESSOR)
    result = audit(dense=out / "dense", ticket=out / "ticket", data=test_path, image="image", target="shape",
                   sensitive=["background"], seed=seed, progress=progress)
    command = (f"ticketaudit report --dense {out / 'dense'} --ticket {out / 'ticket'} --data {test_path} --image image "
               f"--target shape --sensitive background --seed {seed} --out {out / 'report.html'} "
               f"--json {out / 'report.json'}")
    write_report(result, html_path=out / "report.html", json_path=out / "report.json", command=command)
    return result
