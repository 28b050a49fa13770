"""Text models (Hugging Face sequence classifiers): one text column, tokenised by the model's tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..inputs import TokenInputs, build_text_inputs
from .base import Modality

if TYPE_CHECKING:
    import pandas as pd

    from ..tickets.load import LoadedModel


@dataclass(frozen=True, eq=False, kw_only=True)
class TextModality(Modality):
    """Token ids and attention masks; the whole table is padded to one length, so it is audited in one process."""

    name: ClassVar[str] = "text"
    in_memory: ClassVar[bool] = True
    column: str
    tokenizer: Any

    @classmethod
    def build(cls, dense: LoadedModel, *, probe: pd.DataFrame, target: str, features: list[str] | None,
              text: str | None) -> TextModality:
        modality = cls(column=str(text), tokenizer=dense.tokenizer)
        modality.inputs(probe)  # checks the column and the tokenizer on the first row
        return modality

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def max_length(self) -> int | None:
        return getattr(self.tokenizer, "model_max_length", None)

    def inputs(self, frame: pd.DataFrame) -> TokenInputs:
        return build_text_inputs(frame, column=self.column, tokenizer=self.tokenizer, max_length=self.max_length)
