"""Every model and ticket format of the contract becomes a ``LoadedModel`` with one ``Mask``.

Safe by default: ``.pt`` files are read with ``torch.load(weights_only=True)``; whole pickled
modules load only with ``allow_pickle=True``. The caller's modules are deep-copied, never changed.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import pickle
import sys
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import paths
from .._io import sha256_path
from .._validation import MSG_FILE_MISSING, MSG_PICKLE_REFUSED, MSG_UNKNOWN_EXTENSION, fail
from ..exceptions import UnsafeInputError
from ..models import build_architecture
from ..images import PROCESSOR_FILE, ImageProcessor
from ..preprocess import InputSpec, Preprocessor
from ..llm.models import gguf_bits_per_weight, read_gguf, tokenizer_difference
from .huggingface import is_huggingface_dir, read_huggingface
from .mask import Mask, prunable_parameters

ModelSource = nn.Module | str | Path
WEIGHT_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
MSG_NEEDS_FACTORY = (
    "'{path}' holds only weights (a state_dict); ticketaudit needs the architecture too. "
    "Pass --factory MODULE:FUNC (a function returning the untrained nn.Module), or save a bundle."
)
MSG_ARCH_MISMATCH = "{what} does not match the architecture: {detail}. {fix}"
MSG_OWN_ARCHITECTURE = (
    "A ticket given as weights must be a pruned copy of the dense model. A ticket with its own, smaller "
    "architecture (structured pruning that removed units, a distilled student) can be audited on its "
    "predictions when it carries that architecture: save it as a bundle (config.json with its own "
    "arguments, see README 'Bundles'), or pass the nn.Module itself to ta.audit(ticket=...)."
)


@dataclass(frozen=True, eq=False, kw_only=True)
class LoadedModel:
    """A private, eval-mode copy of a model with its mask and provenance."""

    module: nn.Module
    mask: Mask
    format: str
    sha256: str
    source: str
    labels: tuple[str, ...] | None = None
    preprocess: Preprocessor | None = None
    tokenizer: Any = None
    """The Hugging Face tokenizer of a text model (None for tabular models)."""
    image_processor: ImageProcessor | None = None
    """How images become the model's inputs (``preprocessor_config.json`` of a Hugging Face directory or bundle)."""
    quantization: dict[str, Any] | None = None
    """What a quantised file stores (GGUF: bits per weight and tensor types); None for plain weights."""
    same_shape: bool = True
    """Whether the ticket has the dense model's parameter names and shapes. A ticket with its own, smaller
    architecture (structured pruning that removed units, a distilled student) is audited on its
    predictions; analyses that compare weights one by one with the dense model are skipped."""

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def nonzero(self) -> int:
        return sum(int(torch.count_nonzero(p)) for p in self.module.parameters())

    @property
    def weights(self) -> int:
        """Values in weight tensors with >= 2 dimensions (biases and norms excluded)."""
        return sum(w.numel() for w in prunable_parameters(self.module).values())

    @property
    def nonzero_weights(self) -> int:
        return sum(int(torch.count_nonzero(w)) for w in prunable_parameters(self.module).values())

    @property
    def sparsity(self) -> float:
        """Share of exact zeros among weight tensors with >= 2 dimensions (contract definition)."""
        total = self.weights
        return (total - self.nonzero_weights) / total if total else 0.0


def _hash_module(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def _private_copy(module: nn.Module) -> nn.Module:
    if not isinstance(module, nn.Module):
        fail(f"expected a torch nn.Module or a path, got {type(module).__name__}.")
    private = copy.deepcopy(module).to("cpu")
    private.eval()
    for param in private.parameters():
        param.requires_grad_(False)
    return private


def resolve_factory(spec: str) -> nn.Module:
    """Call ``MODULE:FUNC`` (importable from the working directory) and return its module."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        fail(f"--factory must look like MODULE:FUNC (e.g. mypkg.models:build), got {spec!r}.")
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        fail(f"factory module '{module_name}' cannot be imported ({error}). Check the name and that it is on PYTHONPATH.")
    finally:
        if added:
            sys.path.remove("")
    func = getattr(module, func_name, None)
    if not callable(func):
        fail(f"factory function '{func_name}' is not defined in module '{module_name}'.")
    try:
        built = func()
    except Exception as error:  # the user's code failed: report it, it is their input
        fail(f"factory '{spec}' raised {type(error).__name__}: {error}.")
    if not isinstance(built, nn.Module):
        fail(f"factory '{spec}' returned {type(built).__name__}, not a torch nn.Module.")
    return built


def _torch_load(path: Path, *, allow_pickle: bool) -> Any:
    with open(path, "rb") as handle:
        head = handle.read(2)
    if not zipfile.is_zipfile(path) and not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        fail(f"'{path}' is not a readable torch file (neither torch's zip format nor a pickle). "
             "It may be truncated or corrupt; re-export it.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            fail(f"'{path}' is not a readable torch file ({str(error).splitlines()[0]}). Re-export it.")
        if not allow_pickle:
            raise UnsafeInputError(MSG_PICKLE_REFUSED.format(path=path)) from None
    except Exception as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        fail(f"'{path}' is not a readable torch file; it may be truncated or corrupt ({first[:160]}). Re-export it.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        fail(f"'{path}' could not be unpickled ({type(error).__name__}: {str(error)[:160]}).")


def _read_weights(path: Path, *, allow_pickle: bool) -> dict[str, torch.Tensor] | nn.Module:
    """A state_dict (or, with ``allow_pickle``, a pickled module) from a weights file."""
    if not path.exists():
        fail(MSG_FILE_MISSING.format(what="model file", path=path))
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_EXTENSIONS:
        fail(MSG_UNKNOWN_EXTENSION.format(what="model file", path=path, ext=suffix or "(none)",
                                          allowed=", ".join(WEIGHT_EXTENSIONS) + " or a bundle directory"))
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            fail(f"'{path}' is not a readable safetensors file; it may be truncated or corrupt ({error}). Re-export it.")
    loaded = _torch_load(path, allow_pickle=allow_pickle)
    if isinstance(loaded, nn.Module):
        return loaded
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        fail(f"'{path}' holds a {type(loaded).__name__}, not a state_dict of named tensors or a module.")
    if not loaded:
        fail(f"'{path}' holds an empty state_dict.")
    return dict(loaded)


def _split_torch_prune(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Turn ``weight_orig`` + ``weight_mask`` pairs into plain weights and their masks."""
    plain: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_orig") and key[: -len("_orig")] + "_mask" in state:
            base = key[: -len("_orig")]
            mask = state[base + "_mask"]
            if mask.shape != value.shape:
                fail(f"torch-prune mask '{base}_mask' has shape {tuple(mask.shape)} but '{key}' is {tuple(value.shape)}.")
            masks[base] = mask
            plain[base] = value * (mask != 0).to(value.dtype)
        elif key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state:
            continue
        else:
            plain[key] = value
    return plain, masks


def _load_state(skeleton: nn.Module, state: dict[str, torch.Tensor], *, what: str, fix: str) -> nn.Module:
    """A copy of ``skeleton`` holding ``state``; names and shapes must match exactly."""
    module = copy.deepcopy(skeleton)
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            fail(MSG_ARCH_MISMATCH.format(what=what, detail=f"the architecture has '{key}' but the weights do not", fix=fix))
        if tuple(state[key].shape) != tuple(tensor.shape):
            fail(MSG_ARCH_MISMATCH.format(
                what=what, detail=f"'{key}' has shape {tuple(state[key].shape)} but the architecture's is {tuple(tensor.shape)}",
                fix=fix))
    for key in state:
        if key not in expected:
            fail(MSG_ARCH_MISMATCH.format(what=what, detail=f"the weights have '{key}', which the architecture does not", fix=fix))
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            fail(f"{what}: tensor '{key}' contains NaN or infinite values.")
    module.load_state_dict(state, strict=True)
    return _private_copy(module)


@dataclass(frozen=True)
class _Bundle:
    module: nn.Module
    mask: Mask | None
    labels: tuple[str, ...] | None
    preprocess: Preprocessor | None
    image_processor: ImageProcessor | None = None


def _read_bundle(directory: Path) -> _Bundle:
    config_path = directory / paths.BUNDLE_CONFIG
    if not config_path.is_file():
        fail(f"'{directory}' is a directory without {paths.BUNDLE_CONFIG}; a bundle holds config.json and model.safetensors.")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        fail(f"'{config_path}' is not valid JSON: {error}.")
    if not isinstance(config, dict):
        fail(f"'{config_path}' must hold a JSON object.")
    if "architecture" not in config:
        fail(f"'{config_path}' has no \"architecture\" entry; see README, 'Bundles'.")
    meta = config.get("ticketaudit", {})
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if labels is not None and (not isinstance(labels, list) or len(labels) < 2 or len(set(map(str, labels))) != len(labels)):
        fail(f"'{config_path}': ticketaudit.labels must be a list of at least 2 distinct labels.")
    skeleton = build_architecture(str(config["architecture"]), dict(config.get("arguments", {})))
    weights_path = directory / paths.BUNDLE_WEIGHTS
    if not weights_path.is_file():
        fail(MSG_FILE_MISSING.format(what="bundle weights", path=weights_path))
    state = _read_weights(weights_path, allow_pickle=False)
    assert isinstance(state, dict)  # safetensors never yields a module
    module = _load_state(skeleton, state, what=f"bundle '{directory}'",
                         fix="The config.json arguments must describe the saved weights.")
    mask = None
    mask_path = directory / paths.BUNDLE_MASK
    if mask_path.is_file():
        mask_state = _read_weights(mask_path, allow_pickle=False)
        assert isinstance(mask_state, dict)
        mask = Mask(mask_state, model=module)
        module = mask.apply(module)
    preprocess_path = directory / paths.BUNDLE_PREPROCESS
    preprocess = Preprocessor.from_file(preprocess_path) if preprocess_path.is_file() else None
    return _Bundle(module, mask, tuple(map(str, labels)) if labels else None, preprocess,
                   image_processor_in(directory))


def image_processor_in(directory: Path) -> ImageProcessor | None:
    """The ``preprocessor_config.json`` of a model directory, checked (None when it has none)."""
    path = directory / PROCESSOR_FILE
    return ImageProcessor.from_file(path) if path.is_file() else None


def _dense(module: nn.Module, **found: Any) -> LoadedModel:
    """A loaded dense model: every weight kept (an all-ones mask)."""
    return LoadedModel(module=module, mask=Mask.ones(module), **found)


def load_dense(source: ModelSource, *, factory: str | None = None, allow_pickle: bool = False) -> LoadedModel:
    """Load the dense (unpruned) model from a module, bundle directory or weights file."""
    if isinstance(source, nn.Module):
        module = _private_copy(source)
        return _dense(module, format="module", sha256=_hash_module(module), source="<nn.Module>")
    path = Path(source)
    if path.suffix.lower() == ".gguf" and path.is_file():
        module, tokenizer = read_gguf(path)
        return _dense(module, format="gguf", sha256=sha256_path(path), source=str(path), tokenizer=tokenizer,
                      quantization=gguf_bits_per_weight(path))
    if path.is_dir() and is_huggingface_dir(path):
        hf = read_huggingface(path)
        return _dense(hf.module, format="huggingface", sha256=sha256_path(path), source=str(path), labels=hf.labels,
                      tokenizer=hf.tokenizer, image_processor=image_processor_in(path) if hf.image else None)
    if path.is_dir() and not (path / paths.BUNDLE_CONFIG).is_file() and (path / paths.BUNDLE_WEIGHTS).is_file():
        path = path / paths.BUNDLE_WEIGHTS  # weights without an architecture: a state_dict (needs --factory)
    elif path.is_dir():
        bundle = _read_bundle(path)
        return _dense(bundle.module, format="bundle", sha256=sha256_path(path), source=str(path),
                      labels=bundle.labels, preprocess=bundle.preprocess, image_processor=bundle.image_processor)
    weights = _read_weights(path, allow_pickle=allow_pickle)
    if isinstance(weights, nn.Module):
        module = _private_copy(weights)
        return _dense(module, format="pickled-module", sha256=sha256_path(path), source=str(path))
    if factory is None:
        fail(MSG_NEEDS_FACTORY.format(path=path))
    plain, _ = _split_torch_prune(weights)
    module = _load_state(
        resolve_factory(factory),
        plain,
        what=f"dense weights '{path}'",
        fix=f"Check that --factory {factory} builds the architecture the weights were saved from.",
    )
    return _dense(module, format="state_dict", sha256=sha256_path(path), source=str(path))


def _differences(dense: nn.Module, ticket: nn.Module) -> str | None:
    """The first difference in parameter names or shapes between two modules (None: the same)."""
    dense_state, ticket_state = dense.state_dict(), ticket.state_dict()
    for key, tensor in dense_state.items():
        if key not in ticket_state:
            return f"the dense model has '{key}' but the ticket does not"
        if ticket_state[key].shape != tensor.shape:
            return (
                f"'{key}' has shape {tuple(ticket_state[key].shape)} in the ticket but {tuple(tensor.shape)} in "
                "the dense model"
            )
    for key in ticket_state:
        if key not in dense_state:
            return f"the ticket has '{key}', which the dense model does not"
    return None


def _check_same_architecture(dense: nn.Module, ticket: nn.Module) -> None:
    """A ticket given as weights over the dense model's architecture must match it exactly."""
    difference = _differences(dense, ticket)
    if difference is not None:
        fail(MSG_ARCH_MISMATCH.format(what="the ticket", detail=difference, fix=MSG_OWN_ARCHITECTURE))


def _same_shape(dense: nn.Module, ticket: nn.Module) -> bool:
    """Whether a ticket that carries its own architecture (bundle, Hugging Face, module) has the dense
    model's shapes; when not, it is audited on predictions only."""
    return _differences(dense, ticket) is None


def _check_same_metadata(
    dense: LoadedModel, *, labels: tuple[str, ...] | None, preprocess: Preprocessor | None, source: Path
) -> None:
    """Both models read the same inputs and name their outputs alike, or the audit would compare a
    model with a reordered copy of itself: a ticket's own metadata that differs is refused, named."""
    if labels is not None and dense.labels is not None and tuple(labels) != tuple(dense.labels):
        what = (
            "the same labels in another order: the ticket's output i would be scored as the dense model's"
            if sorted(labels) == sorted(dense.labels)
            else "different labels"
        )
        fail(
            f"the ticket '{source}' lists labels {list(labels)} but the dense model '{dense.source}' lists "
            f"{list(dense.labels)} ({what}). A ticket is a pruned copy of the dense model: save it with the dense "
            "model's labels in the same order."
        )
    if labels is not None and dense.labels is None:
        fail(
            f"the ticket '{source}' lists labels {list(labels)} but the dense model '{dense.source}' lists none. "
            "Give both models the same label list (or neither)."
        )
    if preprocess is not None and dense.preprocess is not None and preprocess != dense.preprocess:
        fail(
            f"the ticket '{source}' has its own preprocess.json, which differs from the dense model's: "
            f"{_preprocess_difference(dense.preprocess, preprocess)}. Both models must read the table the same way; "
            "copy the dense model's preprocess.json into the ticket (or remove the ticket's)."
        )
    if preprocess is not None and dense.preprocess is None:
        fail(
            f"the ticket '{source}' has a preprocess.json but the dense model '{dense.source}' has none. "
            "Give both models the same preprocess.json (or neither)."
        )


def _preprocess_difference(dense: Preprocessor, ticket: Preprocessor) -> str:
    if dense.columns != ticket.columns:
        return f"columns {dense.columns} (dense) vs {ticket.columns} (ticket)"
    for a, b in zip(dense.inputs, ticket.inputs):
        if a != b:
            return f"input '{a.column}' is {_describe_spec(a)} (dense) vs {_describe_spec(b)} (ticket)"
    return "they differ"  # pragma: no cover - equal specs and columns mean equal preprocessors


def _describe_spec(spec: InputSpec) -> str:
    if spec.kind == "numeric":
        return f"numeric, mean {spec.mean}, std {spec.std}"
    return f"one-hot over {list(spec.categories)}"


MSG_EMPTY_TICKET_DIR = (
    "'{path}' holds no config.json (a bundle or a Hugging Face model), no model.safetensors and no "
    "mask.safetensors (what ticketaudit prune saves for a state_dict dense model). Point --ticket at one of those."
)


def _load_weights_directory(path: Path, *, dense: LoadedModel, factory: str | None) -> LoadedModel:
    """A directory with ``model.safetensors`` (the ticket's own weights, over the dense model's
    architecture) and/or ``mask.safetensors`` (alone: ticket = dense weights x mask)."""
    weights_path, mask_path = path / paths.BUNDLE_WEIGHTS, path / paths.BUNDLE_MASK
    if not weights_path.is_file() and not mask_path.is_file():
        fail(MSG_EMPTY_TICKET_DIR.format(path=path))
    module, fmt = dense.module, "mask-directory"
    if weights_path.is_file():
        state = _read_weights(weights_path, allow_pickle=False)
        assert isinstance(state, dict)  # safetensors never yields a module
        module = _ticket_from_state(state, path=weights_path, dense=dense, factory=factory)[0]
        fmt = "weights-directory"
    the_mask = _read_mask_file(mask_path, model=module) if mask_path.is_file() else Mask.from_zeros(module)
    return LoadedModel(
        module=the_mask.apply(module),
        mask=the_mask,
        format=fmt,
        sha256=sha256_path(path),
        source=str(path),
        labels=dense.labels,
        preprocess=dense.preprocess,
        tokenizer=dense.tokenizer,
        image_processor=dense.image_processor,
    )


def _read_mask_file(path: Path, *, model: nn.Module) -> Mask:
    if not path.exists():
        fail(MSG_FILE_MISSING.format(what="mask file", path=path))
    if path.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        fail(
            MSG_UNKNOWN_EXTENSION.format(
                what="mask file", path=path, ext=path.suffix or "(none)", allowed=".safetensors, .pt, .pth"
            )
        )
    tensors = _read_weights(path, allow_pickle=False)
    assert isinstance(tensors, dict)
    return Mask(tensors, model=model)


def load_ticket(
    source: ModelSource | None,
    *,
    dense: LoadedModel,
    mask: str | Path | None = None,
    factory: str | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load the ticket: a pruned model in any contract format, or the dense model times ``mask``."""
    if source is None and mask is None:
        fail("give the ticket: --ticket MODEL, or --mask MASKFILE to prune the dense model.")
    if source is not None and mask is not None:
        fail("give either --ticket or --mask, not both: with --mask the ticket is the dense weights times the mask.")
    if mask is not None:
        the_mask = _read_mask_file(Path(mask), model=dense.module)
        return _ticket(dense, the_mask.apply(dense.module), the_mask, "mask-file", sha256_path(Path(mask)), str(mask),
                       compare_shapes=False)
    assert source is not None
    if isinstance(source, nn.Module):
        module = _private_copy(source)
        return _ticket(dense, module, Mask.from_zeros(module), "module", _hash_module(module), "<nn.Module>")
    path = Path(source)
    if path.suffix.lower() == ".gguf" and path.is_file():
        return _gguf_ticket(path, dense)
    if path.is_dir() and not (path / paths.BUNDLE_CONFIG).is_file():
        return _load_weights_directory(path, dense=dense, factory=factory)
    if path.is_dir():
        return _huggingface_ticket(path, dense) if is_huggingface_dir(path) else _bundle_ticket(path, dense)
    weights = _read_weights(path, allow_pickle=allow_pickle)
    if isinstance(weights, nn.Module):
        module = _private_copy(weights)
        return _ticket(dense, module, Mask.from_zeros(module), "pickled-module", sha256_path(path), str(path))
    module, the_mask, fmt = _ticket_from_state(weights, path=path, dense=dense, factory=factory)
    return _ticket(dense, module, the_mask, fmt, sha256_path(path), str(path), compare_shapes=False)


def _ticket(dense: LoadedModel, module: nn.Module, mask: Mask, fmt: str, sha256: str, source: str, *,
            compare_shapes: bool = True, **own: Any) -> LoadedModel:
    """A ticket: its module and mask, with what it shares with the dense model (labels, preprocessing, tokenizer,
    image processor) unless ``own`` gives its own."""
    shared = {"labels": dense.labels, "preprocess": dense.preprocess, "tokenizer": dense.tokenizer,
              "image_processor": dense.image_processor, "quantization": None}
    extra = {"same_shape": _same_shape(dense.module, module)} if compare_shapes else {}
    return LoadedModel(module=module, mask=mask, format=fmt, sha256=sha256, source=source, **{**shared, **own},
                       **extra)


def _huggingface_ticket(path: Path, dense: LoadedModel) -> LoadedModel:
    """A Hugging Face directory; with a ``mask.safetensors`` beside it (what ``ticketaudit prune`` saves), that mask."""
    hf = read_huggingface(path)
    _check_same_metadata(dense, labels=hf.labels, preprocess=None, source=path)
    module, the_mask = hf.module, Mask.from_zeros(hf.module)
    if (path / paths.BUNDLE_MASK).is_file():
        the_mask = _read_mask_file(path / paths.BUNDLE_MASK, model=hf.module)
        module = the_mask.apply(hf.module)
    _check_same_tokenizer(dense, hf.tokenizer, source=path)
    return _ticket(dense, module, the_mask, "huggingface", sha256_path(path), str(path), preprocess=None,
                   tokenizer=hf.tokenizer or dense.tokenizer)


def _gguf_ticket(path: Path, dense: LoadedModel) -> LoadedModel:
    """A GGUF twin of the dense model (quantised; dequantised to float32 here): its mask from its exact zeros."""
    module, tokenizer = read_gguf(path)
    _check_same_tokenizer(dense, tokenizer, source=path)
    _check_same_architecture(dense.module, module)
    return _ticket(dense, module, Mask.from_zeros(module), "gguf", sha256_path(path), str(path), tokenizer=tokenizer,
                   quantization=gguf_bits_per_weight(path))


def _check_same_tokenizer(dense: LoadedModel, tokenizer: Any, *, source: Path) -> None:
    """A language model and its ticket must read text the same way, or their answers are not comparable."""
    difference = tokenizer_difference(dense.tokenizer, tokenizer)
    if difference is not None:
        fail(f"the ticket '{source}' and the dense model '{dense.source}' have different tokenizers: {difference}. "
             "Save the dense model's tokenizer beside the ticket (tokenizer.save_pretrained(ticket_dir)).")


def _bundle_ticket(path: Path, dense: LoadedModel) -> LoadedModel:
    bundle = _read_bundle(path)
    _check_same_metadata(dense, labels=bundle.labels, preprocess=bundle.preprocess, source=path)
    the_mask = bundle.mask if bundle.mask is not None else Mask.from_zeros(bundle.module)
    return _ticket(dense, bundle.module, the_mask, "bundle", sha256_path(path), str(path), tokenizer=None)


def _ticket_from_state(
    state: dict[str, torch.Tensor], *, path: Path, dense: LoadedModel, factory: str | None
) -> tuple[nn.Module, Mask, str]:
    """A ticket state_dict over the dense model's architecture (or ``factory``'s): the module, its mask
    (from ``torch.nn.utils.prune`` pairs, else its exact zeros) and the format's name."""
    skeleton = resolve_factory(factory) if factory else dense.module
    plain, prune_masks = _split_torch_prune(state)
    module = _load_state(skeleton, plain, what=f"ticket weights '{path}'", fix=MSG_OWN_ARCHITECTURE)
    _check_same_architecture(dense.module, module)
    if not prune_masks:
        return module, Mask.from_zeros(module), "zeroed-weights"
    full = {n: prune_masks.get(n, torch.ones_like(p)) for n, p in prunable_parameters(module).items()}
    unknown = [n for n in prune_masks if n not in full]
    if unknown:
        fail(
            f"torch-prune mask '{unknown[0]}_mask' is on a tensor with fewer than 2 dimensions; "
            "ticketaudit prunes weight matrices only."
        )
    return module, Mask(full, model=module), "torch-prune"
