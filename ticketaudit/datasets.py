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
