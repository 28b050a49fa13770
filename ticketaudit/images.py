"""Images as model inputs: a Hugging Face image-processor config applied with Pillow and numpy, and
lazily decoded image rows (paths or encoded bytes), read batch by batch in worker threads.

Only what ``preprocessor_config.json`` of image classifiers says is applied (convert to RGB, resize,
center crop, rescale, normalise), in that order, as ``transformers``' image processors do; torchvision is
never needed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import fail, read_json

PROCESSOR_FILE = "preprocessor_config.json"
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
UNSUPPORTED = ("do_pad", "size_divisor", "size_divisibility", "do_reduce_labels")
"""Config entries that change pixels (or labels) in ways ticketaudit does not apply: refused when set."""
DECODE_THREADS = 4
"""Threads that decode one batch's images (Pillow releases the GIL while it decodes)."""


@dataclass(frozen=True, kw_only=True)
class ImageProcessor:
    """The steps of a Hugging Face image-processor config, checked once; ``__call__`` maps one Pillow
    image to a float32 (channels, height, width) array."""

    source: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    """The config as read (saved beside pruned candidates, so they load with the same preprocessing)."""
    channels: int = 3
    """3: images are converted to RGB; 1: to grayscale."""
    resize: dict[str, int] | None = None
    """{"height", "width"} (warp), or {"shortest_edge"} (keep the aspect ratio)."""
    crop_pct: float | None = None
    resample: int = 2
    crop: tuple[int, int] | None = None
    rescale: float | None = 1 / 255
    rescale_offset: bool = False
    """EfficientNet: rescaled values minus 1 (to [-1, 1])."""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    flip_channels: bool = False
    """MobileViT: channels in BGR order (``do_flip_channel_order``)."""
    top_std: tuple[float, ...] | None = None
    """EfficientNet's ``include_top``: a last division by ``image_std``."""

    @classmethod
    def from_file(cls, path: str | Path) -> ImageProcessor:
        path = Path(path)
        if not path.is_file():
            fail(f"image processor config '{path}' does not exist. Give the preprocessor_config.json saved with "
                 "the model (image_processor.save_pretrained(dir)).")
        config = read_json(path, what=f"image processor config '{path}'",
                           fix="Save it again with image_processor.save_pretrained(dir).")
        return cls.from_dict(config, source=str(path))

    @classmethod
    def from_dict(cls, config: Any, *, source: str) -> ImageProcessor:
        """The processor a config describes, or exit 2 naming the first entry that is wrong."""
        if not isinstance(config, dict):
            fail(f"image processor config '{source}' must hold a JSON object.")
        config = {**class_defaults(config), **config}

        def bad(key: str, expected: str) -> None:
            fail(f"image processor config '{source}': \"{key}\" must be {expected}, got {config.get(key)!r}. "
                 "Fix the entry (see Hugging Face's image processor docs).")

        mean = _per_channel(config.get("image_mean"), "image_mean", bad) if config.get("do_normalize", True) else None
        std = _per_channel(config.get("image_std"), "image_std", bad) if config.get("do_normalize", True) else None
        if (mean is None) != (std is None) or (mean is not None and std is not None and len(mean) != len(std)):
            bad("image_std", "as many numbers as image_mean")
        if std is not None and min(std) <= 0:
            bad("image_std", "positive numbers")
        channels = len(mean) if mean is not None and len(mean) > 1 else int(config.get("num_channels", 3) or 3)
        if channels not in (1, 3):
            bad("num_channels", "1 or 3")
        resize = _size(config.get("size"), "size", bad) if config.get("do_resize", True) else None
        if config.get("do_resize", True) and resize is None:
            bad("size", "{\"height\": H, \"width\": W}, {\"shortest_edge\": S} or an integer (do_resize is on)")
        crop = None
        if config.get("do_center_crop", False):
            crop_size = _size(config.get("crop_size"), "crop_size", bad)
            if crop_size is None or "shortest_edge" in crop_size:
                bad("crop_size", "{\"height\": H, \"width\": W} or an integer (do_center_crop is on)")
            assert crop_size is not None
            crop = (crop_size["height"], crop_size["width"])
        crop_pct = config.get("crop_pct")
        if crop_pct is not None and (isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float))
                                     or not 0 < crop_pct <= 1):
            bad("crop_pct", "a number in (0, 1]")
        resample = config.get("resample", 2)
        if resample not in RESAMPLE_NAMES:
            bad("resample", f"a Pillow filter code ({', '.join(f'{k}={v}' for k, v in RESAMPLE_NAMES.items())})")
        for key in UNSUPPORTED:
            if config.get(key):
                fail(f"image processor config '{source}' sets \"{key}\": {config[key]!r}, which ticketaudit does not "
                     "apply (it would score other pixels than the model saw). Resize the images to one size "
                     f"beforehand and set \"{key}\" to false, or audit with a processor config without it.")
        rescale = None
        if config.get("do_rescale", True):
            rescale = config.get("rescale_factor", 1 / 255)
            if isinstance(rescale, bool) or not isinstance(rescale, (int, float)) or rescale <= 0:
                bad("rescale_factor", "a positive number")
        return cls(source=source, config=json.loads(json.dumps(config)), channels=channels, resize=resize,
                   crop_pct=float(crop_pct) if crop_pct is not None and resize and "shortest_edge" in resize else None,
                   resample=int(resample), crop=crop, rescale=float(rescale) if rescale is not None else None,
                   rescale_offset=bool(config.get("rescale_offset", False)) and rescale is not None, mean=mean, std=std,
                   flip_channels=bool(config.get("do_flip_channel_order", False)),
                   top_std=_per_channel(config.get("image_std"), "image_std", bad) if config.get("include_top") else None)

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(height, width) of every processed image, when the config fixes it."""
        if self.crop is not None:
            return self.crop
        if self.resize is not None and "height" in self.resize:
            return self.resize["height"], self.resize["width"]
        if self.resize is not None and self.crop_pct is not None:
            edge = self.resize["shortest_edge"]
            return edge, edge
        return None

    def __call__(self, image: Any) -> np.ndarray:
        from PIL import Image

        if not is_eight_bit(image):
            fail(MSG_IMAGE_MODE.format(where=f"image processor '{self.source}'", image="an image", mode=image.mode))
        image = to_rgb(image)
        image = image if self.channels == 3 else image.convert("L")
        resample = Image.Resampling(self.resample)
        if self.resize is not None:
            if "height" in self.resize:
                image = image.resize((self.resize["width"], self.resize["height"]), resample)
            else:
                edge = self.resize["shortest_edge"]
                if self.crop_pct is not None:  # ConvNeXt-style: resize to edge / crop_pct, crop to edge
                    image = _shortest_edge(image, int(edge / self.crop_pct), resample)
                    image = _center_crop(image, edge, edge)
                else:
                    image = _shortest_edge(image, edge, resample)
        if self.crop is not None:
            image = _center_crop(image, *self.crop)
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        if self.rescale is not None:
            pixels = pixels * np.float32(self.rescale)
            if self.rescale_offset:
                pixels = pixels - np.float32(1)
        if self.mean is not None and self.std is not None:
            pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.top_std is not None:
            pixels = pixels / np.asarray(self.top_std, np.float32)
        if self.flip_channels:
            pixels = pixels[:, :, ::-1]
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))


DEFAULTED = ("do_resize", "do_rescale", "do_normalize", "do_center_crop", "do_flip_channel_order", "rescale_offset",
             "include_top",
             "resample", "rescale_factor", "image_mean", "image_std", "size", "crop_size", "crop_pct")
"""Entries a saved config may leave out because its processor class sets them (MobileViT: no normalisation)."""


def class_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The defaults of the config's ``image_processor_type`` (from transformers, when installed) for the entries
    it leaves out: a config saved by a processor without ``do_normalize`` means that processor's default, not ours."""
    name = config.get("image_processor_type")
    if not isinstance(name, str) or not name.isidentifier():
        return {}
    try:
        import transformers

        cls = getattr(transformers, f"{name}Pil", None) or getattr(transformers, name, None)
    except Exception:  # noqa: BLE001 - transformers missing or a class it cannot build here: our defaults apply
        return {}
    out: dict[str, Any] = {}
    for key in DEFAULTED:
        if key in config or not hasattr(cls, key):
            continue
        value = getattr(cls, key)
        if key.startswith("do_") or key in ("rescale_offset", "include_top"):
            out[key] = bool(value)
        elif value is None:
            continue
        elif key == "resample":
            out[key] = int(value)
        elif key in ("size", "crop_size"):
            out[key] = {k: getattr(value, k, None) if not isinstance(value, dict) else value.get(k)
                        for k in ("height", "width", "shortest_edge")}
            out[key] = {k: v for k, v in out[key].items() if v is not None}
        elif isinstance(value, (int, float, list, tuple)):
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def is_eight_bit(image: Any) -> bool:
    """Whether every band of the image holds 8 bits (or 1): the modes an image processor reads as 0..255."""
    from PIL import ImageMode

    return ImageMode.getmode(image.mode).typestr in ("|u1", "|b1")


def to_rgb(image: Any) -> Any:
    """The image in RGB as transformers' ``convert_to_rgb`` makes it: transparency (an alpha band, or a palette's
    or grayscale's transparent colour) composited onto white, every other 8-bit mode converted by Pillow."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _per_channel(value: Any, key: str, bad: Callable[[str, str], None]) -> tuple[float, ...] | None:
    if value is None:
        bad(key, "a list of per-channel numbers (do_normalize is on)")
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        bad(key, "a number or a list of per-channel numbers")
    if len(values) not in (1, 3):
        bad(key, "1 or 3 numbers")
    return tuple(float(v) for v in values)


def _size(value: Any, key: str, bad: Callable[[str, str], None]) -> dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"height": value, "width": value}
    if not isinstance(value, dict):
        bad(key, "an integer or an object")
    known = {k: v for k, v in value.items() if k in ("height", "width", "shortest_edge")}
    if set(known) not in ({"height", "width"}, {"shortest_edge"}):
        bad(key, "{\"height\": H, \"width\": W} or {\"shortest_edge\": S}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in known.values()):
        bad(key, "positive integer sizes")
    return {k: int(v) for k, v in known.items()}


def _shortest_edge(image: Any, edge: int, resample: Any) -> Any:
    width, height = image.size
    if width <= height:
        size = (edge, max(1, int(edge * height / width)))
    else:
        size = (max(1, int(edge * width / height)), edge)
    return image.resize(size, resample)


def _center_crop(image: Any, height: int, width: int) -> Any:
    """The centre ``height`` x ``width`` (padded with zeros where the image is smaller, as transformers does)."""
    from PIL import Image

    w, h = image.size
    if w < width or h < height:
        canvas = Image.new(image.mode, (max(w, width), max(h, height)))
        canvas.paste(image, ((max(w, width) - w) // 2, (max(h, height) - h) // 2))
        image, (w, h) = canvas, canvas.size
    left, top = (w - width) // 2, (h - height) // 2
    return image.crop((left, top, left + width, top + height))


def image_reference(value: Any, *, root: Path) -> str | bytes | None:
    """A cell of the image column as what opens it: an absolute path (relative ones from ``root``), encoded
    bytes, or None when the cell is empty. Hugging Face ``datasets`` structs ({"bytes", "path"}) are read too."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) if len(value) else None
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else root / path)


def table_folder(data: Any) -> Path:
    """Where relative image paths of a table are read from: the data file's folder, a data directory, the folder
    of a glob's first wildcard-free part; the working directory for a DataFrame or stdin."""
    if not isinstance(data, (str, Path)) or str(data) == "-":
        return Path.cwd()
    path = Path(data)
    if path.is_dir():
        return path.resolve()
    if any(ch in str(data) for ch in "*?["):
        parts = []
        for part in path.parts:
            if any(ch in part for ch in "*?["):
                break
            parts.append(part)
        return Path(*parts).resolve() if parts else Path.cwd()
    return path.parent.resolve()


def absolute_images(frame: Any, *, column: str, root: Path) -> Any:
    """``frame`` with the image column's relative paths made absolute from ``root`` (a training table read
    beside the audit table, whose paths are relative to its own folder)."""
    if column not in frame.columns:
        return frame
    return frame.assign(**{column: [image_reference(v, root=root) if isinstance(v, str) else v
                                    for v in frame[column].tolist()]})


def describe_reference(reference: str | bytes) -> str:
    return f"file '{reference}'" if isinstance(reference, str) else f"encoded image ({len(reference)} bytes)"


MSG_IMAGE_MODE = ("{where}: {image} has Pillow mode '{mode}' (more than 8 bits per channel), which image processors "
                  "do not read: rescaling it to 0..255 is a choice ticketaudit will not guess (clipping would change the "
                  "pixels). Convert the images to 8-bit (mode L or RGB) the way the model was trained on them.")


def open_image(reference: str | bytes, *, row: Any, column: str) -> Any:
    """The decoded Pillow image, or exit 2 naming the row and the file."""
    from PIL import Image, UnidentifiedImageError

    where = f"row {row} of column '{column}'"
    try:
        with Image.open(reference if isinstance(reference, str) else io.BytesIO(reference)) as image:
            image.load()
            decoded = image.copy()
    except FileNotFoundError:
        fail(f"{where}: image file '{reference}' does not exist. Relative paths are read from the data table's "
             "folder; fix the path or the file.")
    except Image.DecompressionBombError as error:
        fail(f"{where}: {describe_reference(reference)} is too large to decode safely ({error}). Resize it, or drop "
             "the row.")
    except UnidentifiedImageError:
        fail(f"{where}: {describe_reference(reference)} is not an image Pillow can read. Fix or drop the row.")
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt data, unreadable files
        fail(f"{where}: {describe_reference(reference)} cannot be decoded ({str(error).splitlines()[0]}). "
             "Fix or drop the row.")
    if not is_eight_bit(decoded):
        fail(MSG_IMAGE_MODE.format(where=where, image=describe_reference(reference), mode=decoded.mode))
    return decoded


@dataclass(frozen=True, eq=False)
class ImageInputs:
    """Image rows, decoded only batch by batch (``batches``), so memory does not grow with the row count."""

    references: np.ndarray
    """Per row: an absolute path or encoded bytes (object array)."""
    rows: np.ndarray
    """Each row's label in the table (for error messages)."""
    processor: ImageProcessor
    column: str
    tokens: int = 1
    """Attention positions per image of a vision transformer (sizes batches to its attention-score budget)."""

    def __len__(self) -> int:
        return len(self.references)

    def __getitem__(self, rows: slice | np.ndarray) -> ImageInputs:
        return dataclasses.replace(self, references=self.references[rows], rows=self.rows[rows])

    def pixels(self) -> np.ndarray:
        """(rows, channels, height, width) float32 pixels of every row, decoded in worker threads."""
        def decode(i: int) -> np.ndarray:
            return self.processor(open_image(self.references[i], row=self.rows[i], column=self.column))

        count = len(self.references)
        if count == 1:
            decoded = [decode(0)]
        else:
            with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1, count)) as pool:
                decoded = list(pool.map(decode, range(count)))
        shapes = {d.shape for d in decoded}
        if len(shapes) > 1:
            fail(f"images of column '{self.column}' come out of the image processor in different sizes "
                 f"({', '.join(sorted('x'.join(map(str, s)) for s in shapes)[:3])}); the config '{self.processor.source}' "
                 "must resize or crop to one size (do_resize with height and width, or do_center_crop).")
        return np.stack(decoded)

    def batches(self, *, rows: int, max_rows: Callable[[int], int] | None = None
                ) -> Iterator[tuple[slice, np.ndarray]]:
        """(positions, pixels) batches of at most ``rows`` rows (and ``max_rows(tokens)``), in row order."""
        step = rows if max_rows is None else max(1, min(rows, max_rows(self.tokens)))
        for start in range(0, len(self), step):
            positions = slice(start, min(start + step, len(self)))
            yield positions, self[positions].pixels()


THUMBNAIL_SIDE = 64
"""Longest side of the thumbnails embedded in the report (pixels)."""


def thumbnail(reference: str | bytes, *, row: Any, column: str, side: int = THUMBNAIL_SIDE) -> str:
    """A small PNG of the image as a ``data:`` URI (allowed by the report's content security policy)."""
    import base64

    image = to_rgb(open_image(reference, row=row, column=column))
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
