"""Weights files (``.safetensors``, ``.pt``, ``.pth``, ``.bin``, ``.ckpt``): a state_dict over the dense model's
architecture (or ``--factory``'s), ``torch.nn.utils.prune`` pairs, or, with ``--allow-pickle`` only, a pickled
module. Also the readers the other formats share (weights, masks, a factory)."""

from __future__ import annotations

import copy
import importlib
import pickle
import sys
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import sha256_path
from .._validation import MSG_FILE_MISSING, MSG_PICKLE_REFUSED, MSG_UNKNOWN_EXTENSION, fail
from ..exceptions import UnsafeInputError
from .checks import MSG_ARCH_MISMATCH, MSG_OWN_ARCHITECTURE, check_same_architecture
from .mask import Mask, prunable_parameters
from .model import Format, LoadedModel, dense_model, private_copy, ticket_model

WEIGHT_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
MSG_NEEDS_FACTORY = (
    "'{path}' holds only weights (a state_dict); ticketaudit needs the architecture too. "
    "Pass --factory MODULE:FUNC (a function returning the untrained nn.Module), or save a bundle."
)


def dense_from_weights(path: Path, *, factory: str | None, allow_pickle: bool) -> LoadedModel:
    """The dense model from a weights file: a pickled module (``allow_pickle``) or a state_dict over ``factory``."""
    weights = read_weights(path, allow_pickle=allow_pickle)
    if isinstance(weights, nn.Module):
        module = private_copy(weights)
        return dense_model(module, format="pickled-module", sha256=sha256_path(path), source=str(path))
    if factory is None:
        fail(MSG_NEEDS_FACTORY.format(path=path))
    plain, _ = _split_torch_prune(weights)
    module = load_state(resolve_factory(factory), plain, what=f"dense weights '{path}'",
                        fix=f"Check that --factory {factory} builds the architecture the weights were saved from.")
    return dense_model(module, format="state_dict", sha256=sha256_path(path), source=str(path))


def ticket_from_weights(path: Path, *, dense: LoadedModel, factory: str | None, allow_pickle: bool) -> LoadedModel:
    """The ticket from a weights file: a pickled module (``allow_pickle``) or a state_dict over the dense model's
    architecture, its mask from ``torch.nn.utils.prune`` pairs or else its exact zeros."""
    weights = read_weights(path, allow_pickle=allow_pickle)
    if isinstance(weights, nn.Module):
        module = private_copy(weights)
        return ticket_model(dense, module, Mask.from_zeros(module), "pickled-module", sha256_path(path), str(path))
    module, the_mask, fmt = ticket_from_state(weights, path=path, dense=dense, factory=factory)
    return ticket_model(dense, module, the_mask, fmt, sha256_path(path), str(path), compare_shapes=False)


def ticket_from_mask(path: Path, *, dense: LoadedModel) -> LoadedModel:
    """``--mask``: the ticket is the dense weights times the mask."""
    the_mask = read_mask_file(path, model=dense.module)
    module = the_mask.apply(dense.module, share_kept=True)  # an audit only reads the ticket
    return ticket_model(dense, module, the_mask, "mask-file", sha256_path(path), str(path), compare_shapes=False)


def ticket_from_state(
    state: dict[str, torch.Tensor], *, path: Path, dense: LoadedModel, factory: str | None
) -> tuple[nn.Module, Mask, str]:
    """A ticket state_dict over the dense model's architecture (or ``factory``'s): the module, its mask
    (from ``torch.nn.utils.prune`` pairs, else its exact zeros) and the format's name."""
    skeleton = resolve_factory(factory) if factory else dense.module
    plain, prune_masks = _split_torch_prune(state)
    module = load_state(skeleton, plain, what=f"ticket weights '{path}'", fix=MSG_OWN_ARCHITECTURE)
    check_same_architecture(dense.module, module)
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


def read_weights(path: Path, *, allow_pickle: bool) -> dict[str, torch.Tensor] | nn.Module:
    """A state_dict (or, with ``allow_pickle``, a pickled module) from a weights file."""
    if not path.exists():
        fail(MSG_FILE_MISSING.format(what="model file", path=path))
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_EXTENSIONS:
        fail(MSG_UNKNOWN_EXTENSION.format(what="model file", path=path, ext=suffix or "(none)",
                                          allowed=", ".join(WEIGHT_EXTENSIONS) + " or a bundle directory"))
    if suffix == ".safetensors":
        return read_safetensors(path)
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


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Named tensors of a safetensors file (never code); a truncated or corrupt file is refused, named."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        fail(f"'{path}' is not a readable safetensors file; it may be truncated or corrupt ({error}). Re-export it.")


def read_mask_file(path: Path, *, model: nn.Module) -> Mask:
    """A mask file (``.safetensors``, ``.pt``, ``.pth``; never pickled code) validated against ``model``."""
    if not path.exists():
        fail(MSG_FILE_MISSING.format(what="mask file", path=path))
    if path.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        fail(
            MSG_UNKNOWN_EXTENSION.format(
                what="mask file", path=path, ext=path.suffix or "(none)", allowed=".safetensors, .pt, .pth"
            )
        )
    tensors = read_weights(path, allow_pickle=False)
    assert isinstance(tensors, dict)
    return Mask(tensors, model=model)


def load_state(skeleton: nn.Module, state: dict[str, torch.Tensor], *, what: str, fix: str) -> nn.Module:
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
    return private_copy(module)


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


FORMAT = Format(name="weights file", matches=lambda path: True, dense=dense_from_weights, ticket=ticket_from_weights)
"""The last resort: anything that is not a directory or GGUF file is read as weights (or refused by its extension)."""
