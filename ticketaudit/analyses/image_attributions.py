"""Pixel attributions of both models on the same sampled images (Captum), compared per image and per group.

Each image's map is its absolute attribution summed over colour channels. Per image the two models' maps
are compared by cosine, Spearman rank correlation and the overlap of their top 10% pixels; per group
these are design-weighted means of the stratified sample with bootstrap intervals. The maps are also
pooled onto a grid of regions (at most ``GRID`` x ``GRID``): the regions are the "features" whose mean
absolute attribution is compared, and each group's mean map (dense, ticket, difference) is drawn.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any

import numpy as np
import torch

from ..images import ImageInputs, thumbnail
from .cost import BudgetedSample, budgeted, row_cost
from .text_attributions import MIN_BUDGET_ROWS

GRID = 16
"""Regions per side of the pooled maps (fewer for smaller images)."""
TOP_SHARE = 0.1
"""Share of pixels compared as each model's most attributed ones."""
IMAGE_BATCH = 8
"""Images per attribution batch, fixed (not --batch-size): attributions vary in their last bits with the batch."""
MAX_DIFFERING = 4
"""Images whose explanations differ most, drawn with both maps side by side."""
IMAGE_METHODS = ("integrated-gradients", "saliency", "gradient-shap", "occlusion", "input-x-gradient")


def within_budget(sample: Any, population: np.ndarray, *, dense: torch.nn.Module, modality: Any, settings: Any,
                  precision: str, seed: int) -> tuple[Any, BudgetedSample]:
    """The stratified sample cut to the images both models attribute within ``settings.budget_seconds`` (the sample a
    smaller size would draw), from the first image's counted multiply-adds (``cost``), never from a timer."""
    from .attributions import cut_sample

    if not len(sample.rows):
        return sample, BudgetedSample(rows=0, steps=settings.steps, seconds=0.0, floor_missed=False)
    probe = _inputs(sample.features[:1, 0], modality, sample.rows[:1]).pixels()
    plan = budgeted(row_cost(dense, probe), method=settings.method, steps=settings.steps, inputs=GRID * GRID,
                    precision=precision, budget_seconds=settings.budget_seconds, population=len(sample.rows),
                    floor=MIN_BUDGET_ROWS)
    return cut_sample(sample, population, plan.rows, seed=seed), plan


def _inputs(references: np.ndarray, modality: Any, rows: np.ndarray) -> ImageInputs:
    return ImageInputs(np.asarray(references, dtype=object), np.asarray(rows), modality.processor, modality.column)


def attribute_pixels(module: torch.nn.Module, images: ImageInputs, targets: np.ndarray, *, method: str, steps: int,
                     device: torch.device, dtype: torch.dtype, seed: int) -> tuple[np.ndarray, float | None]:
    """(images, height, width) absolute attributions summed over channels, and IG's largest convergence delta."""
    from .attributions import captum_class
    from .predict import logits_of

    model = copy.deepcopy(module).to(device=device, dtype=dtype).eval()
    for param in model.parameters():
        param.requires_grad_(False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = logits_of(model(x))
        return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits

    explainer = captum_class(method)(forward)
    maps, deltas = [], []
    for start in range(0, len(images), IMAGE_BATCH):
        x = torch.as_tensor(images[start:start + IMAGE_BATCH].pixels(), dtype=dtype, device=device)
        target = torch.as_tensor(targets[start:start + IMAGE_BATCH], dtype=torch.long, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "integrated-gradients":
                out, delta = explainer.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                                                 internal_batch_size=IMAGE_BATCH, return_convergence_delta=True)
                deltas.append(float(delta.detach().abs().max()))
            elif method == "gradient-shap":
                torch.manual_seed(seed)
                out = explainer.attribute(x, baselines=torch.zeros_like(x[:1]), target=target, n_samples=steps,
                                          stdevs=0.1)
            elif method == "occlusion":
                side = max(1, min(x.shape[-2:]) // GRID)
                out = explainer.attribute(x, sliding_window_shapes=(x.shape[1], side, side), strides=side,
                                          baselines=0.0, target=target)
            elif method == "saliency":
                out = explainer.attribute(x, target=target, abs=False)
            else:
                out = explainer.attribute(x, target=target)
        maps.append(out.detach().abs().sum(1).to("cpu", torch.float32).to(torch.float64).numpy())
    return np.concatenate(maps), (max(deltas) if deltas else None)


def grid_of(shape: tuple[int, int]) -> tuple[int, int]:
    return min(GRID, shape[0]), min(GRID, shape[1])


def pooled(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(images, grid rows * grid cols): the mean of each region of the maps (regions split as evenly as possible)."""
    rows = np.array_split(np.arange(maps.shape[1]), grid[0])
    cols = np.array_split(np.arange(maps.shape[2]), grid[1])
    out = np.empty((len(maps), grid[0], grid[1]))
    for i, r in enumerate(rows):
        band = maps[:, r[0]:r[-1] + 1]
        for j, c in enumerate(cols):
            out[:, i, j] = band[:, :, c[0]:c[-1] + 1].mean(axis=(1, 2))
    return out.reshape(len(maps), -1)


def top_overlap(a: np.ndarray, b: np.ndarray, *, share: float = TOP_SHARE) -> np.ndarray:
    """Per image: the share of one model's top ``share`` pixels that are also the other's (ties broken by position)."""
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    k = max(1, int(round(share * flat_a.shape[1])))
    out = np.empty(len(a))
    for i in range(len(a)):
        top_a = np.argsort(-flat_a[i], kind="stable")[:k]
        top_b = np.argsort(-flat_b[i], kind="stable")[:k]
        out[i] = len(np.intersect1d(top_a, top_b, assume_unique=True)) / k
    return out


def image_attributions_from_sample(inputs: Any, sample: Any, *, population: np.ndarray, dense: torch.nn.Module,
                                   ticket: torch.nn.Module, modality: Any, settings: Any, device: torch.device,
                                   precision: str, thumbnails: bool = True) -> Any:
    """Attribute both models on the sampled images and compare their maps (see the module doc)."""
    from .attributions import _row_cosine, _row_spearman, summarise_attributions
    from .predict import DTYPES

    images = _inputs(sample.features[:, 0], modality, sample.rows)
    maps, convergence = {}, {}
    for name, module in (("dense", dense), ("ticket", ticket)):
        maps[name], delta = attribute_pixels(module, images, sample.targets, method=settings.method,
                                             steps=settings.steps, device=device, dtype=DTYPES[precision],
                                             seed=inputs.seed)
        if delta is not None:
            convergence[name] = delta
    shape = maps["dense"].shape[1:]
    grid = grid_of(shape)
    regions = {name: pooled(m, grid) for name, m in maps.items()}
    flat = {name: m.reshape(len(m), -1) for name, m in maps.items()}
    nan = np.full(len(sample.rows), np.nan)
    per_row = {"cosine": _row_cosine(flat["dense"], flat["ticket"]),
               "spearman": _row_spearman(flat["dense"], flat["ticket"]),
               "top_overlap": top_overlap(maps["dense"], maps["ticket"]),
               "sensitive_dense": nan, "sensitive_ticket": nan, "proxy_dense": nan, "proxy_ticket": nan}
    names = tuple(f"region r{i + 1} c{j + 1}" for i in range(grid[0]) for j in range(grid[1]))
    design = population[sample.strata] / np.bincount(sample.strata, minlength=len(population))[sample.strata]
    extra = {"unit": "pixel", "map_grid": list(grid), "image_size": list(shape), "top_share": TOP_SHARE,
             "maps": _group_maps(regions, sample.strata, design, inputs.groups, grid)}
    result = summarise_attributions(
        inputs, rows=sample.rows, strata=sample.strata, population=population, columns=names, raw=regions,
        per_row=per_row, settings=settings, sensitive=(), auto_proxies=(), convergence=convergence or None,
        baseline="a black image after normalisation (zeros)" if settings.method != "occlusion" else "zeros",
        extra=extra, agreements=("top_overlap",))
    differing = []
    for entry in result.disagreements[:MAX_DIFFERING]:
        index = int(np.searchsorted(sample.rows, entry["row"]))
        shown = {**entry, "dense_map": _rounded(regions["dense"][index], grid),
                 "ticket_map": _rounded(regions["ticket"][index], grid)}
        if thumbnails:
            shown["thumbnail"] = thumbnail(sample.features[index, 0], row=entry["row"], column=modality.column)
        differing.append(shown)
    return dataclasses.replace(result, extra={**result.extra, "differing": differing})


def _rounded(values: np.ndarray, grid: tuple[int, int]) -> list[list[float]]:
    return np.round(values.reshape(grid), 8).tolist()


def _group_maps(regions: dict[str, np.ndarray], strata: np.ndarray, design: np.ndarray, groups: Any,
                grid: tuple[int, int]) -> list[dict[str, Any]]:
    """Overall and per group: the design-weighted mean pooled map of each model and their difference."""
    out = []
    for name, member in [("overall", np.ones(len(strata), dtype=bool)),
                         *((g.name, np.isin(strata, g.strata)) for g in groups.groups)]:
        if not member.any():
            continue
        weight = design[member] / design[member].sum()
        d = (regions["dense"][member] * weight[:, None]).sum(0)
        t = (regions["ticket"][member] * weight[:, None]).sum(0)
        out.append({"group": name, "rows": int(member.sum()), "dense": _rounded(d, grid), "ticket": _rounded(t, grid),
                    "difference": _rounded(t - d, grid)})
    return out
