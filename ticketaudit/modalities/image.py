"""Image classifiers (CNNs and ViTs): one image column (paths or encoded bytes), through an image processor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._validation import check_columns, fail
from ..images import ImageInputs, ImageProcessor, image_reference
from .base import Modality

if TYPE_CHECKING:
    import pandas as pd

    from ..tickets.load import LoadedModel


@dataclass(frozen=True, eq=False, kw_only=True)
class ImageModality(Modality):
    """Pixels decoded batch by batch in worker threads; attributions are pixel maps (``image_attributions``)."""

    name: ClassVar[str] = "image"
    prunable: ClassVar[bool] = True
    pictures: ClassVar[bool] = True
    attributable: ClassVar[bool] = True
    attribution_unit: ClassVar[str] = "pixel"
    default_batch_size: ClassVar[int] = 64
    """Images per forward pass (decoded together: 64 RGB images of 224 x 224 are 39 MB of float32)."""
    column: str
    processor: ImageProcessor
    root: Path
    """Where relative image paths are read from: the data table's folder (the working directory for a DataFrame)."""
    tokens: int = 1

    @classmethod
    def build(cls, dense: LoadedModel, *, probe: pd.DataFrame, target: str, features: list[str] | None,
              text: str | None, image: str | None = None, processor: ImageProcessor | None = None,
              root: Path | None = None, truncation: str = "head", task: Any = None) -> ImageModality:
        processor = processor or dense.image_processor
        if processor is None:
            fail(f"'{dense.source}' comes with no image processor config, so ticketaudit cannot know how to turn "
                 "images into its inputs. Give it with --image-processor preprocessor_config.json (or save one in "
                 "the model directory with image_processor.save_pretrained(dir)).")
        if processor.output_size is None:
            fail(f"the image processor config '{processor.source}' resizes to a shortest edge without cropping, so "
                 "images of other shapes come out in other sizes and cannot share a batch. Add \"do_center_crop\": "
                 "true with a \"crop_size\", or give \"size\" as {\"height\": H, \"width\": W}.")
        modality = cls(column=str(image), processor=processor, root=(root or Path.cwd()).resolve(),
                       tokens=_attention_positions(dense.module, processor))
        modality.inputs(probe)
        return modality

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def attribution_width(self) -> int:
        return 1

    def attribution_values(self, frame: pd.DataFrame, inputs: Any) -> np.ndarray:
        """Each row's image reference (path or bytes): the sample is decoded again when it is attributed."""
        return inputs.references[:, None]

    def inputs(self, frame: pd.DataFrame) -> ImageInputs:
        check_columns("image", [self.column], list(frame.columns))
        references = np.empty(len(frame), dtype=object)
        for i, value in enumerate(frame[self.column].tolist()):
            reference = image_reference(value, root=self.root)
            if reference is None:
                fail(f"row {frame.index[i]} of image column '{self.column}' is empty. Drop the row or give its image.")
            if isinstance(reference, str) and not Path(reference).is_file():
                fail(f"row {frame.index[i]} of column '{self.column}': image file '{reference}' does not exist. "
                     f"Relative paths are read from the data table's folder ('{self.root}'); fix the path or the file.")
            references[i] = reference
        return ImageInputs(references, np.asarray(frame.index), self.processor, self.column, tokens=self.tokens)


    def provenance(self) -> dict[str, str]:
        """The processor config applied and the folder images were read from (the data's sha256 covers the
        table of paths, not the image files)."""
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.processor.config.items()))
        return {"image_processor": f"{self.processor.source} ({settings})", "image_root": str(self.root)}

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Every row's pixels at once (decoded in worker threads)."""
        return self.inputs(frame).pixels()


def _attention_positions(module: Any, processor: ImageProcessor) -> int:
    """Patches (+ the class token) a vision transformer attends over, from its config; 1 for other models."""
    config = getattr(module, "config", None)
    patch = getattr(config, "patch_size", None)
    size = processor.output_size
    if not isinstance(patch, int) or patch < 1 or size is None or getattr(config, "num_attention_heads", None) is None:
        return 1
    return (size[0] // patch) * (size[1] // patch) + 1
