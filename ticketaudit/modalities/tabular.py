"""Tabular models: columns (through a bundle's ``preprocess.json``, or numeric columns as they are)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..inputs import build_features
from .base import Modality

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ..preprocess import Preprocessor
    from ..images import ImageProcessor
    from ..tickets.load import LoadedModel


@dataclass(frozen=True, eq=False, kw_only=True)
class TabularModality(Modality):
    """One float matrix per batch of rows; attributions are reported per raw column."""

    name: ClassVar[str] = "tabular"
    prunable: ClassVar[bool] = True
    attributable: ClassVar[bool] = True
    attribution_unit: ClassVar[str] = "column"
    target: str
    features: list[str] | None
    preprocess: Preprocessor | None
    names: tuple[str, ...]
    columns: int

    @classmethod
    def build(cls, dense: LoadedModel, *, probe: pd.DataFrame, target: str, features: list[str] | None,
              text: str | None, image: str | None = None, processor: ImageProcessor | None = None,
              root: Path | None = None, truncation: str = "head", task: Any = None) -> TabularModality:
        matrix, names = build_features(probe, target=target, features=features, preprocess=dense.preprocess)
        return cls(target=target, features=features, preprocess=dense.preprocess, names=names,
                   columns=int(matrix.shape[1]))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.names

    @property
    def width(self) -> int:
        return self.columns

    @property
    def column_of_input(self) -> list[str]:
        return self.preprocess.column_of_input if self.preprocess is not None else list(self.names)

    @property
    def onehot_columns(self) -> list[str]:
        return self.preprocess.onehot_columns if self.preprocess is not None else []

    def unseen(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        assert self.preprocess is not None
        return self.preprocess.unseen(frame)

    def inputs(self, frame: pd.DataFrame) -> np.ndarray:
        return build_features(frame, target=self.target, features=self.features, preprocess=self.preprocess)[0]
