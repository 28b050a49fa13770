"""Text models (Hugging Face sequence classifiers): one text column, tokenised by the model's tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..inputs import TokenInputs, build_text_inputs, text_limit
from .base import Modality

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ..images import ImageProcessor
    from ..tickets.load import LoadedModel


@dataclass(frozen=True, eq=False, kw_only=True)
class TextModality(Modality):
    """Token ids and attention masks; each row is padded to a length fixed by its own length
    (``TokenInputs.batches``), so neither the batch size, the fragments nor the workers change its inputs."""

    name: ClassVar[str] = "text"
    prunable: ClassVar[bool] = True
    attributable: ClassVar[bool] = True
    attribution_unit: ClassVar[str] = "word"
    default_batch_size: ClassVar[int] = 16_384
    """Tokens (rows x padded length) per forward pass: 32 rows of 512 tokens, 256 of 64."""
    column: str
    tokenizer: Any
    truncation: str = "head"
    """Texts over the model's limit: ``head``, ``head+tail`` or ``error`` (``inputs.encode_texts``)."""

    @classmethod
    def build(cls, dense: LoadedModel, *, probe: pd.DataFrame, target: str, features: list[str] | None,
              text: str | None, image: str | None = None, processor: ImageProcessor | None = None,
              root: Path | None = None, truncation: str = "head", task: Any = None) -> TextModality:
        modality = cls(column=str(text), tokenizer=dense.tokenizer, truncation=truncation)
        modality.inputs(probe)  # checks the column and the tokenizer on the first row
        return modality

    def prepare(self, values: Any) -> TextModality:
        """With ``truncation="error"``: every row over the model's limit counted before any model runs."""
        if self.truncation != "error":
            return self
        import numpy as np

        from .._validation import rows_words
        from ..exceptions import InvalidInputError

        limit, offset, cut, longest = text_limit(self.max_length), 0, [], 0
        for chunk in values(self.column):
            texts = chunk.astype(str).tolist()
            lengths = np.array([len(ids) for ids in self.tokenizer(texts, verbose=False)["input_ids"]])
            cut += [offset + int(i) for i in np.flatnonzero(lengths > limit)]
            longest, offset = max(longest, int(lengths.max(initial=0))), offset + len(texts)
        if cut:
            raise InvalidInputError(
                f"text column '{self.column}': {rows_words(len(cut), cut)} hold texts longer than the model's {limit} tokens "
                f"(the longest {longest:,}); shorten them, or choose --truncation head or head+tail.")
        return self

    def clipped(self, inputs: TokenInputs) -> Any:
        return inputs.truncated

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def max_length(self) -> int | None:
        return getattr(self.tokenizer, "model_max_length", None)

    @property
    def attribution_width(self) -> int:
        return 1

    def attribution_values(self, frame: pd.DataFrame, inputs: Any) -> np.ndarray:
        """The texts themselves: the sample is tokenised again on its own, with offsets for words."""
        return frame[self.column].astype(str).to_numpy(dtype=object)[:, None]

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, 2, length) int64: token ids and attention mask, padded on the right to the longest row (what the
        pruning code feeds ``pruning.tokens.TokenClassifier``)."""
        import numpy as np

        tokens = self.inputs(frame)
        return np.stack([tokens.input_ids, tokens.attention_mask], axis=1).astype(np.int64)

    def matrix_batch_size(self, batch_size: int) -> int:
        return max(1, batch_size // text_limit(self.max_length))

    def inputs(self, frame: pd.DataFrame) -> TokenInputs:
        return build_text_inputs(frame, column=self.column, tokenizer=self.tokenizer, max_length=self.max_length,
                                 truncation=self.truncation)

    def provenance(self) -> dict[str, str]:
        return {"truncation": f"{self.truncation} (texts over {text_limit(self.max_length)} tokens)"}
