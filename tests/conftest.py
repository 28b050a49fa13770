"""Shared fixtures: a small synthetic tabular task, a trained dense MLP, its ticket, bundles and files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import os

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import settings

from ticketaudit.models import MLP
from ticketaudit.pruning.imp import TrainSettings, global_magnitude_mask, train
from ticketaudit.tickets.bundle import save_bundle
from ticketaudit.tickets.mask import Mask

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")  # reproducible examples in CI; random exploration on developers' machines

FEATURES = ["x1", "x2", "x3", "x4"]
ARGUMENTS = {"in_features": 4, "hidden": [8], "out_features": 2}


def make_table(n: int = 800, seed: int = 0) -> pd.DataFrame:
    """Binary task with two sensitive columns; the label depends on features only."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    frame["sex"] = rng.choice(["F", "M"], size=n)
    frame["race"] = rng.choice(["A", "B", "C"], size=n, p=[0.6, 0.3, 0.1])
    score = frame.x1 + 0.7 * frame.x2 - 0.5 * frame.x3 + rng.normal(scale=0.6, size=n)
    frame["y"] = (score > 0).astype(int)
    return frame


def build() -> torch.nn.Module:
    """Factory used as MODULE:FUNC in tests (architecture of the fixtures' models)."""
    return MLP(**ARGUMENTS)


@dataclass(frozen=True)
class Fixture:
    frame: pd.DataFrame
    dense: torch.nn.Module
    ticket: torch.nn.Module
    mask: Mask
    dense_dir: Path
    ticket_dir: Path
    csv: Path
    root: Path


@pytest.fixture(scope="session")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    root = tmp_path_factory.mktemp("fx")
    frame = make_table()
    torch.manual_seed(0)
    features = torch.tensor(frame[FEATURES].to_numpy(dtype=np.float32))
    labels = torch.tensor(frame["y"].to_numpy(dtype=np.int64))
    dense, _ = train(MLP(**ARGUMENTS), features, labels, settings=TrainSettings(epochs=15, batch_size=64))
    mask = global_magnitude_mask(dense, keep=0.6)
    ticket, _ = train(mask.apply(dense), features, labels, settings=TrainSettings(epochs=5, batch_size=64), mask=mask)

    dense_dir = save_bundle(root / "dense", dense, architecture="mlp", arguments=ARGUMENTS)
    ticket_dir = save_bundle(root / "ticket", ticket, architecture="mlp", arguments=ARGUMENTS, mask=mask)
    csv = root / "data.csv"
    frame.to_csv(csv, index=False)
    return Fixture(frame, dense, ticket, mask, dense_dir, ticket_dir, csv, root)


@pytest.fixture()
def report_args(fx: Fixture, tmp_path: Path) -> list[str]:
    """A valid ``report`` command line writing into ``tmp_path``."""
    return ["report", "--dense", str(fx.dense_dir), "--ticket", str(fx.ticket_dir), "--data", str(fx.csv),
            "--target", "y", "--sensitive", "sex,race", "--features", ",".join(FEATURES), "--seed", "0",
            "--n-boot", "200", "--quiet", "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")]
