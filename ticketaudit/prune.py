"""``ticketaudit prune`` / ``ta.prune``: fairness-aware alternatives to global magnitude pruning,
saved as bundles and compared with the dense model on held-out rows."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import save as save_tensors
from torch import nn

from . import paths
from ._version import __version__
from ._io import check_not_input, write_atomically
from ._validation import as_list, fail
from .config import Policy
from .data import load_table
from .images import ImageProcessor, absolute_images, table_folder
from .pruning.alternatives import DEFAULT_BUDGET_SECONDS, AlternativesResult, PruneSettings, find_alternatives
from .tickets import LoadedModel, load_dense
from .tickets.bundle import bundle_files
from .tickets.huggingface import is_huggingface_module

SCHEMA_VERSION = "1.0"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PruneResult:
    """The alternatives found for a dense model; ``to_dict()`` is the JSON ``ticketaudit prune`` writes."""

    alternatives: AlternativesResult
    dense: LoadedModel
    settings: PruneSettings
    data: dict[str, Any]
    seed: int
    policy: Policy

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {"schema_version": SCHEMA_VERSION, "tool_version": __version__,
                "dense": {"sha256": self.dense.sha256, "format": self.dense.format}, "data": self.data,
                "settings": {"methods": list(s.methods), "sparsity": s.sparsity, "recover": s.recover,
                             "rounds": s.rounds, "rewind_to": s.rewind_to, "seeds": s.seeds, "sweep": list(s.sweep), "data_fractions": list(s.data_fractions),
                             "epochs": s.epochs, "seed": self.seed},
                "policy": self.policy.to_dict(),
                "alternatives": self.alternatives.to_dict()}


def slug(name: str) -> str:
    """A directory name for a candidate."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def prune(*, dense: nn.Module | str | Path, data: pd.DataFrame | str | Path, target: str,
          sensitive: str | Sequence[str], sparsity: float, methods: str | Sequence[str] = "all",
          recover: str = "none", train_data: pd.DataFrame | str | Path | None = None,
          features: str | Sequence[str] | None = None, policy: Policy | None = None, seed: int = 0,
          n_boot: int = 1000, rounds: int = 1, rewind_to: str = "dense", seeds: int = 1,
          sweep: Sequence[float] = (), data_fractions: Sequence[float] = (), epochs: int = 3,
          budget_seconds: float | None = DEFAULT_BUDGET_SECONDS,
          factory: str | None = None, allow_pickle: bool = False, batch_size: int = 1024, image: str | None = None,
          image_processor: str | Path | None = None,
          dense_ensemble: str | Sequence[str | Path] | None = None, text: str | None = None) -> PruneResult:
    """Find a ticket with each method at ``sparsity`` and compare them on ``data`` (held out). ``image`` names the
    image column of an image model (paths relative to each table's folder), ``image_processor`` its
    preprocessor_config.json when the model directory has none; ``text`` the text column of a Hugging Face text
    model. With ``seeds`` M > 1, ``dense_ensemble`` gives
    more dense models (same architecture and classes) for the compute-fair comparison with K = round(M (1 - s))
    dense models; without them, ``train_data`` trains the missing ones."""
    method_list = as_list(methods, option="--method") or []
    settings = PruneSettings(methods=tuple(method_list), sparsity=sparsity, recover=recover, rounds=rounds,
                             rewind_to=rewind_to, seeds=seeds, sweep=tuple(sweep),
                             data_fractions=tuple(data_fractions), epochs=epochs,
                             budget_seconds=budget_seconds)
    sensitive_columns = as_list(sensitive, option="--sensitive") or []
    feature_list = as_list(features, option="--features")
    loaded = load_dense(dense, factory=factory, allow_pickle=allow_pickle)
    if image_processor is not None:
        loaded = dataclasses.replace(loaded, image_processor=ImageProcessor.from_file(image_processor))
    if isinstance(dense_ensemble, str):
        dense_ensemble = as_list(dense_ensemble, option="--dense-ensemble")
    others = [load_dense(path, factory=factory, allow_pickle=allow_pickle) for path in dense_ensemble or ()]
    grouping = (*sensitive_columns, target)
    table = load_table(data, text_columns=grouping)
    train_frame = load_table(train_data, text_columns=grouping).frame if train_data is not None else None
    if target in sensitive_columns:
        fail(f"the target column '{target}' cannot also be a sensitive column.")
    inputs_of = None
    if is_huggingface_module(loaded.module) or text is not None or image is not None or loaded.image_processor:
        from .modalities import choose_modality

        modality = choose_modality(loaded, target=target, sensitive=sensitive_columns, features=feature_list,
                                   text=text, image=image).build(
            loaded, probe=table.frame.iloc[:1], target=target, features=None, text=text, image=image,
            root=table_folder(data))
        inputs_of, batch_size = modality.matrix, modality.matrix_batch_size(batch_size)
        if train_frame is not None and image is not None:
            train_frame = absolute_images(train_frame, column=image, root=table_folder(train_data))
    alternatives = find_alternatives(
        loaded, frame=table.frame, target=target, sensitive=sensitive_columns, features=feature_list,
        settings=settings, policy=policy or Policy(), seed=seed, n_boot=n_boot, train_frame=train_frame,
        batch_size=batch_size, explicit_methods=method_list != ["all"], inputs_of=inputs_of, dense_ensemble=others)
    data_info = {"rows": int(len(table.frame)), "sha256": table.sha256, "target": target,
                 "sensitive": sensitive_columns, "train_rows": None if train_frame is None else int(len(train_frame))}
    return PruneResult(
        alternatives=alternatives, dense=loaded, settings=settings, data=data_info, seed=seed, policy=policy or Policy()
    )


def candidate_files(result: PruneResult, out: Path) -> dict[Path, bytes]:
    """Every candidate with a mask as a bundle with its own weights (without config.json when the dense
    model is not a bundle: ``--ticket DIR`` then builds the dense model's architecture)."""
    files: dict[Path, bytes] = {}
    if result.dense.format == "huggingface":
        return _huggingface_candidates(result, out)
    config = None
    if result.dense.format == "bundle":
        config = json.loads((Path(result.dense.source) / paths.BUNDLE_CONFIG).read_text(encoding="utf-8"))
    for candidate in result.alternatives.candidates:
        if candidate.mask is None or candidate.module is None:
            continue
        directory = out / slug(candidate.name)
        # the candidate's own weights, always: a recovered candidate is not the dense model x its mask
        files.update(
            bundle_files(
                directory,
                candidate.module,
                mask=candidate.mask,
                architecture=config["architecture"] if config else None,
                arguments=config.get("arguments", {}) if config else None,
                labels=result.dense.labels,
                preprocess=result.dense.preprocess,
                image_processor=result.dense.image_processor.config if result.dense.image_processor else None,
            )
        )
    return files


def _huggingface_candidates(result: PruneResult, out: Path) -> dict[Path, bytes]:
    """Every candidate as a Hugging Face directory: the dense directory's files (tokenizer, config) with the
    candidate's own weights (``save_pretrained``) and its mask, so ``--ticket DIR`` loads what was measured."""
    import tempfile

    from .pruning.tokens import unwrapped

    source = Path(result.dense.source)
    shared = {path.name: path.read_bytes() for path in source.iterdir()
              if path.is_file() and path.name not in (paths.BUNDLE_WEIGHTS, paths.BUNDLE_MASK)}
    files: dict[Path, bytes] = {}
    for candidate in result.alternatives.candidates:
        if candidate.mask is None or candidate.module is None:
            continue
        module, mask = unwrapped(candidate.module, candidate.mask)
        directory = out / slug(candidate.name)
        files.update({directory / name: data for name, data in shared.items()})
        with tempfile.TemporaryDirectory() as tmp:
            module.save_pretrained(tmp, safe_serialization=True)
            for path in Path(tmp).iterdir():
                files[directory / path.name] = path.read_bytes()
        assert mask is not None
        files[directory / paths.BUNDLE_MASK] = save_tensors({k: v.to(torch.uint8).contiguous() for k, v in mask.items()})
    return files


def write_prune(
    result: PruneResult, out: Path, *, command: str | None = None, inputs: Mapping[str, object] | None = None
) -> None:
    """Every candidate's bundle, alternatives.html and alternatives.json, written together (all or none),
    never over one of ``inputs`` (by option)."""
    from .report.render import render_prune  # the report layer (jinja2) only when writing

    files = candidate_files(result, out)
    saved = {c.name: str(out / slug(c.name)) for c in result.alternatives.candidates if c.mask is not None}
    candidates = tuple(dataclasses.replace(c, saved_to=saved.get(c.name)) for c in result.alternatives.candidates)
    result = dataclasses.replace(result, alternatives=dataclasses.replace(result.alternatives, candidates=candidates))
    html, payload = render_prune(result.to_dict(), command=command)
    files[out / "alternatives.html"] = html
    files[out / "alternatives.json"] = payload
    check_not_input({f"--out file '{path.name}'": path for path in files}, inputs or {})
    for directory in {path.parent for path in files}:
        directory.mkdir(parents=True, exist_ok=True)
    write_atomically(files)


__all__ = ["PruneResult", "candidate_files", "prune", "slug", "write_prune"]
