"""Bundled datasets: UCI Adult (CC BY 4.0), read from the copy shipped in the package."""

from __future__ import annotations

import gzip
import io
from typing import Literal

import numpy as np
import pandas as pd

from ._resources import datasets_dir

ADULT_COLUMNS = (
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
)
ADULT_NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_CATEGORICAL = ("workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
                     "native-country")
ADULT_LABELS = ("<=50K", ">50K")


def load_adult(split: Literal["train", "test"]) -> pd.DataFrame:
    """The Adult split with named columns, ``?`` as missing and labels ``<=50K`` / ``>50K``."""
    name = {"train": "adult.data.gz", "test": "adult.test.gz"}[split]
    raw = gzip.decompress((datasets_dir() / "adult" / name).read_bytes()).decode("utf-8")
    frame = pd.read_csv(io.StringIO(raw), header=None, names=list(ADULT_COLUMNS), skipinitialspace=True,
                        na_values="?", skiprows=1 if split == "test" else 0)
    frame = frame.dropna(subset=["income"]).reset_index(drop=True)
    frame["income"] = frame["income"].str.rstrip(".")
    for column in ADULT_NUMERIC + ("fnlwgt",):
        frame[column] = frame[column].astype(np.int64)
    return frame


MINORITY_FEATURES = ("x1", "x2", "x3", "x4", "x5", "is_minority")
MINORITY_SCALE = 20.0


def make_minority_reliance(rows: int, *, minority_share: float = 0.15, seed: int = 0) -> pd.DataFrame:
    """The textbook failure case of magnitude pruning (see datasets/minority_reliance/README.md).

    Majority rows: the label follows x1 + x2 (unit-scale features) with little noise. Minority rows
    (``minority_share`` of the rows, shifted feature distributions, more noise): the label follows
    x3, whose scale is ``MINORITY_SCALE`` times larger, so the weights that read it are that many
    times smaller. ``is_minority`` is a model input (the group is visible, as proxies usually make it).
    """
    rng = np.random.default_rng(seed)
    minority = rng.random(rows) < minority_share
    x = rng.normal(size=(rows, 5))
    x[minority, :2] += 0.5  # different feature distributions
    x[:, 2] *= MINORITY_SCALE
    majority_score = x[:, 0] + x[:, 1] + rng.normal(scale=0.3, size=rows)
    minority_score = x[:, 2] / MINORITY_SCALE + 0.3 * (x[:, 0] - 0.5) + rng.normal(scale=0.4, size=rows)
    label = np.where(minority, minority_score > 0, majority_score > 0).astype(np.int64)
    frame = pd.DataFrame(x, columns=list(MINORITY_FEATURES[:5]))
    frame["is_minority"] = minority.astype(np.float64)
    frame["group"] = np.where(minority, "minority", "majority")
    frame["y"] = label
    return frame


SHAPES_LABELS = ("circle", "square")


def load_shapes(split: Literal["train", "test"]) -> pd.DataFrame:
    """The generated shapes images (see datasets/shapes/README.md): PNG bytes, ``shape`` and ``background``."""
    frame = pd.read_parquet(datasets_dir() / "shapes" / "shapes.parquet")
    return frame[frame["split"] == split].drop(columns="split").reset_index(drop=True)
