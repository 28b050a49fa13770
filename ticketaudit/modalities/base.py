"""What a kind of input owns: how table rows become model inputs, and which units explanations use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from ..images import ImageProcessor

    from ..tickets.load import LoadedModel


class Modality:
    """How rows of the audit table become one model's inputs (tabular columns, text, later images).

    Instances travel to every worker with the audit plan, so they must pickle.
    """

    name: ClassVar[str] = ""
    prunable: ClassVar[bool] = False
    """Whether ``ticketaudit prune`` and ``--alternatives`` can prune models of this kind."""
    attributable: ClassVar[bool] = False
    """Whether the attribution analysis can explain models of this kind."""
    attribution_unit: ClassVar[str] = ""
    """The human unit attributions are summed to and reported in ("column", "word")."""
    default_batch_size: ClassVar[int] = 1024
    """``--batch-size`` when not given: rows per forward pass (tokens for text)."""
    pictures: ClassVar[bool] = False
    """Whether a row can be shown in the report as a picture (images: ``inputs.references`` open it)."""
    in_memory: ClassVar[bool] = False
    """Whether the audit needs every row in one process (inputs padded to one length for the whole table)."""

    @classmethod
    def build(cls, dense: LoadedModel, *, probe: pd.DataFrame, target: str, features: list[str] | None,
              text: str | None, image: str | None = None, processor: ImageProcessor | None = None,
              root: Path | None = None, truncation: str = "head", task: Any = None) -> Modality:
        """The modality of ``dense`` with the options, checked on the first row ``probe`` (``task``: a language
        model's ``modalities.choice.ChoiceTask``)."""
        raise NotImplementedError

    def prepare(self, values: Any) -> Modality:
        """The modality settled on every row before any model runs (``values(column)`` yields that column's
        values of every audited row, chunk by chunk): what every worker must share. Default: itself."""
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The input units reported in the JSON (columns; the text column)."""
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Values per row of a numeric input matrix (0 when inputs are not one matrix)."""
        return 0

    @property
    def column_of_input(self) -> list[str]:
        """For each model input, the human unit (raw column) it belongs to; attributions sum over it."""
        return list(self.feature_names)

    def inputs(self, frame: pd.DataFrame) -> Any:
        """The model inputs of ``frame``'s rows."""
        raise NotImplementedError

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Every row's inputs as one array, in memory (pruning alternatives train and score on it)."""
        return self.inputs(frame)

    def provenance(self) -> dict[str, str]:
        """What the report's provenance says about how rows became inputs (beyond the data's sha256)."""
        return {}

    def matrix_batch_size(self, batch_size: int) -> int:
        """Rows per forward pass over ``matrix``'s arrays for ``--batch-size`` (text: a token budget)."""
        return batch_size

    @property
    def attribution_width(self) -> int:
        """Values per row that the attribution sample keeps (``attribution_values``)."""
        return self.width

    def attribution_values(self, frame: pd.DataFrame, inputs: Any) -> np.ndarray:
        """What the attribution sample keeps of each row: the model inputs, or what rebuilds them."""
        return inputs

    @property
    def onehot_columns(self) -> list[str]:
        """Raw columns encoded one category per input (values outside the categories are counted)."""
        return []

    def clipped(self, inputs: Any) -> np.ndarray | None:
        """Per row of ``inputs``: whether the model saw only part of it (text cut to the model's limit); None when
        no row of this kind can be cut."""
        return None

    def unseen(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per one-hot column, each row's value the model has no category for (None where it has one)."""
        raise NotImplementedError
