"""Pruning methods that reach a requested sparsity exactly: global and layer-wise magnitude, the
magnitude-anchored fair methods (group-balanced, worst-group; ``anchored``), and structured (neuron)
pruning.

Saliency of weight w for group g: I_g(w) = sum over g's rows of (w * dm/dw)^2, m the row's logit
margin (first-order Taylor importance, Molchanov et al. 2019, of the decision rather than the loss).
It does not depend on the inputs' scale, unlike magnitude: the fair methods use it to pick which
pruned weights to give back to a harmed group whose useful weights are small.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import fail
from ..choices import PRUNING_METHODS
from ..tickets.mask import Mask, prunable_parameters
from .anchored import anchored_keep

METHODS = PRUNING_METHODS
SALIENCY_BATCH = 256
"""Rows per vectorised per-row gradient computation (memory, not results)."""
MICRO_BATCH = 8
SALIENCY_ROWS = 4000
"""Rows per group that measure saliency (a seeded sample beyond that): the ranking settles long before."""


@dataclass(frozen=True, eq=False)
class Calibration:
    """Rows used to choose masks (and to fine-tune): float32 inputs, labels, and a group id per row."""

    features: torch.Tensor
    labels: torch.Tensor
    groups: np.ndarray
    group_names: tuple[str, ...]


def _flatten(scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([s.detach().flatten().to(torch.float64) for s in scores.values()])


def _unflatten(flat: torch.Tensor, model: nn.Module) -> Mask:
    tensors, offset = {}, 0
    for name, param in prunable_parameters(model).items():
        tensors[name] = flat[offset:offset + param.numel()].view_as(param).clone()
        offset += param.numel()
    return Mask(tensors, model=model)


def _top(scores: torch.Tensor, alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Boolean keep-vector of the ``n_keep`` highest scores among ``alive`` (ties by position)."""
    ranked = torch.where(alive, scores, torch.full_like(scores, -torch.inf))
    order = torch.argsort(ranked, descending=True, stable=True)
    keep = torch.zeros_like(alive)
    keep[order[:n_keep]] = True
    return keep


def select_weights(model: nn.Module, scores: Mapping[str, torch.Tensor], *, density: float | Mapping[str, float],
                   per_layer: bool = False, previous: Mask | None = None) -> Mask:
    """Keep exactly round(density * N) prunable weights with the highest ``scores`` — over the whole model,
    or per tensor when ``per_layer`` or ``density`` is a {name: density} mapping. Weights ``previous``
    pruned stay pruned."""
    return _unflatten(_select(model, _flatten(scores), density=density, per_layer=per_layer,
                              alive=_alive(model, previous)), model)


def _alive(model: nn.Module, previous: Mask | None) -> torch.Tensor:
    total = sum(p.numel() for p in prunable_parameters(model).values())
    return (_flatten(previous) > 0) if previous is not None else torch.ones(total, dtype=torch.bool)


def _parts(model: nn.Module) -> dict[str, slice]:
    """Each prunable tensor's slice of the flat vectors."""
    parts, offset = {}, 0
    for name, param in prunable_parameters(model).items():
        parts[name] = slice(offset, offset + param.numel())
        offset += param.numel()
    return parts


def _select(model: nn.Module, scores: torch.Tensor, *, density: float | Mapping[str, float], per_layer: bool,
            alive: torch.Tensor) -> torch.Tensor:
    if not per_layer and not isinstance(density, Mapping):
        return _top(scores, alive, int(round(density * scores.numel())))
    keep = torch.zeros_like(alive)
    for name, part in _parts(model).items():
        share = density[name] if isinstance(density, Mapping) else density
        keep[part] = _top(scores[part], alive[part], int(round(share * (part.stop - part.start))))
    return keep


def _densities(sparsity: float | Mapping[str, float]) -> float | dict[str, float]:
    return {n: 1 - s for n, s in sparsity.items()} if isinstance(sparsity, Mapping) else 1 - sparsity


def group_saliency(model: nn.Module, calibration: Calibration, *, seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """I_g(w) = sum over g's rows of (w * dm_i/dw)^2, m_i the row's logit margin (top class minus the
    next): how much the row's decision moves when w is removed, for right and wrong rows alike.

    MLPs get exact per-row gradients (``torch.func`` vmap of grad); other models sum the squared
    gradients of micro-batches of ``MICRO_BATCH`` rows (cheaper; cross terms within a micro-batch
    are kept). At most ``SALIENCY_ROWS`` rows per group, drawn with ``seed``.
    """
    work = _trainable_copy(model)
    params = {n: p.detach() for n, p in work.named_parameters()}
    prunable = list(prunable_parameters(work))
    per_row = _per_row_gradients(work) if linear_chain(work) else None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A1]))
    result: dict[int, dict[str, torch.Tensor]] = {}
    for group in np.unique(calibration.groups):
        members = np.flatnonzero(calibration.groups == group)
        if len(members) > SALIENCY_ROWS:
            members = np.sort(rng.choice(members, size=SALIENCY_ROWS, replace=False))
        rows = torch.as_tensor(members)
        totals = {n: torch.zeros_like(params[n]) for n in prunable}
        if per_row is not None:
            for start in range(0, len(rows), SALIENCY_BATCH):
                grads = per_row(params, calibration.features[rows[start:start + SALIENCY_BATCH]])
                for name in prunable:
                    totals[name] += ((params[name] * grads[name]) ** 2).sum(dim=0)
        else:
            weights = dict(prunable_parameters(work))
            for start in range(0, len(rows), MICRO_BATCH):
                work.zero_grad()
                top = torch.topk(work(calibration.features[rows[start:start + MICRO_BATCH]]), 2, dim=1).values
                (top[:, 0] - top[:, 1]).sum().backward()
                with torch.no_grad():
                    for name in prunable:
                        totals[name] += (weights[name] * weights[name].grad) ** 2
        result[int(group)] = totals
    return result


def _per_row_gradients(work: nn.Module):  # noqa: ANN202 - a torch.func transform
    from torch.func import functional_call, grad, vmap

    def margin(weights: dict[str, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        top = torch.topk(functional_call(work, weights, (row[None],))[0], 2).values
        return top[0] - top[1]

    return vmap(grad(margin), in_dims=(None, 0))


def _trainable_copy(model: nn.Module) -> nn.Module:
    import copy

    work = copy.deepcopy(model).to(torch.float32).eval()
    for param in work.parameters():
        param.requires_grad_(True)
    return work


def linear_chain(model: nn.Module) -> list[str]:
    """Names of the prunable weights when they form a chain of nn.Linear layers (an MLP), else []."""
    linear_weights = {f"{name}.weight" if name else "weight" for name, m in model.named_modules()
                      if isinstance(m, nn.Linear)}
    params = prunable_parameters(model)
    names = list(params)
    if len(names) < 2 or any(n not in linear_weights for n in names):
        return []
    for first, second in zip(names[:-1], names[1:]):
        if params[first].shape[0] != params[second].shape[1]:
            return []
    return names


def conv_chain(model: nn.Module) -> list[str]:
    """Names of the prunable weights when they are convolutions, each reading the previous one's output
    channels, ending in one nn.Linear that reads the last convolution's channels (after global pooling), else []."""
    convolutions = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1}
    linear_weights = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    params = prunable_parameters(model)
    names = list(params)
    if len(names) < 2 or names[-1] not in linear_weights or any(n not in convolutions for n in names[:-1]):
        return []
    for first, second in zip(names[:-1], names[1:]):
        if params[first].shape[0] != params[second].shape[1]:
            return []
    return names


MSG_NO_CHAIN = ("structured pruning needs a model whose weights form a chain of nn.Linear layers (an MLP), a chain "
                "of convolutions ending in a linear layer (a plain CNN), or BERT-style attention layers (whole heads); "
                "this model has none of them. Choose an unstructured --method.")


@dataclass(frozen=True)
class AttentionLayer:
    """One self-attention layer's weights by name: query, key and value (rows: heads x head size) and the output
    projection (columns: heads x head size)."""

    qkv: tuple[str, str, str]
    output: str
    heads: int


def attention_heads(model: nn.Module) -> list[AttentionLayer]:
    """The self-attention layers of a BERT-style (query/key/value + output.dense) or DistilBERT-style (q_lin, k_lin,
    v_lin, out_lin) Hugging Face model, or the wrapper around one; [] for other models."""
    config = getattr(getattr(model, "model", model), "config", None)
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(heads, int) or heads < 2:
        return []
    params = prunable_parameters(model)
    layers = []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        attention, output = children.get("self"), children.get("output")
        if attention is not None and output is not None and all(hasattr(attention, k) for k in ("query", "key", "value")):
            qkv = tuple(f"{name}.self.{k}.weight" for k in ("query", "key", "value"))
            out = f"{name}.output.dense.weight"
        elif all(k in children for k in ("q_lin", "k_lin", "v_lin", "out_lin")):
            qkv = tuple(f"{name}.{k}.weight" for k in ("q_lin", "k_lin", "v_lin"))
            out = f"{name}.out_lin.weight"
        else:
            continue
        if all(n in params for n in (*qkv, out)) and params[qkv[0]].shape[0] % heads == 0:
            layers.append(AttentionLayer(qkv, out, heads))  # type: ignore[arg-type]
    return layers


def head_mask(model: nn.Module, *, sparsity: float, calibration: Calibration | None) -> Mask:
    """Prune whole attention heads (their query, key and value rows and output-projection columns), least important
    first, until the share of zeroed weights reaches ``sparsity`` or one head is left per layer. A head's importance
    is its largest share, over the groups, of that group's saliency on every head (``group_saliency``): a head one
    group relies on is kept even when the others do not need it. Without calibration rows: the heads' L2 norm."""
    layers = attention_heads(model)
    params = prunable_parameters(model)
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    size = params[layers[0].qkv[0]].shape[0] // layers[0].heads

    def head_total(scores: Mapping[str, torch.Tensor], layer: AttentionLayer, head: int) -> float:
        rows = slice(head * size, (head + 1) * size)
        return float(sum(scores[n][rows].sum() for n in layer.qkv) + scores[layer.output][:, rows].sum())

    if calibration is not None:
        per_group = group_saliency(model, calibration)
        shares = []
        for scores in per_group.values():
            totals = np.array([[head_total(scores, layer, h) for h in range(layer.heads)] for layer in layers])
            shares.append(totals / max(totals.sum(), 1e-300))
        importance = np.max(shares, axis=0)
    else:
        squares = {n: p.detach() ** 2 for n, p in params.items()}
        importance = np.array([[head_total(squares, layer, h) for h in range(layer.heads)] for layer in layers])
    target = sparsity * sum(p.numel() for p in params.values())
    removed = 0
    left = [layer.heads for layer in layers]
    order = sorted((float(importance[i, h]), i, h) for i, layer in enumerate(layers) for h in range(layer.heads))
    for _, i, h in order:
        if removed >= target:
            break
        if left[i] <= 1:  # never silence a whole layer
            continue
        rows = slice(h * size, (h + 1) * size)
        for name in layers[i].qkv:
            removed += int(keep[name][rows].sum())
            keep[name][rows] = False
        removed += int(keep[layers[i].output][:, rows].sum())
        keep[layers[i].output][:, rows] = False
        left[i] -= 1
    return Mask(keep, model=model)


def structured_mask(model: nn.Module, *, sparsity: float) -> Mask:
    """Prune whole units, lowest L2 norm first, until the share of zeroed weights reaches ``sparsity`` (to within
    one unit): hidden neurons of an MLP (a row of one layer and the matching column of the next) or filters of a
    CNN (an output channel of one convolution and the matching input channel of the next layer)."""
    chain = linear_chain(model) or conv_chain(model)
    if not chain:
        fail(MSG_NO_CHAIN)
    params = prunable_parameters(model)
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    units = []
    for first, second in zip(chain[:-1], chain[1:]):
        w_in, w_out = params[first].detach(), params[second].detach()
        norms = torch.sqrt((w_in**2).flatten(1).sum(dim=1) + (w_out**2).transpose(0, 1).flatten(1).sum(dim=1))
        units += [(float(norms[unit]), first, second, unit) for unit in range(w_in.shape[0])]
    target = sparsity * sum(p.numel() for p in params.values())
    removed = 0
    left = {name: params[name].shape[0] for name in chain[:-1]}
    for _, first, second, unit in sorted(units, key=lambda n: (n[0], n[1], n[3])):
        if left[first] <= 1:  # never disconnect a layer
            continue
        newly = int(keep[first][unit].sum()) + int(keep[second][:, unit].sum())
        if removed + newly / 2 > target:
            break
        keep[first][unit] = False
        keep[second][:, unit] = False
        left[first] -= 1
        removed += newly
    return Mask(keep, model=model)


def choose_mask(method: str, model: nn.Module, *, sparsity: float | Mapping[str, float],
                calibration: Calibration | None, min_group_rows: int, previous: Mask | None = None,
                recovered: Callable[[Mask], nn.Module] | None = None) -> Mask:
    """The mask of ``method`` on ``model`` at ``sparsity`` (a share, or per-layer shares). ``recovered``
    (mask -> the fine-tuned ticket) lets the fair methods judge their swaps after recovery."""
    if method == "structured":
        if isinstance(sparsity, Mapping):
            fail("structured pruning takes one --sparsity, not per-layer densities.")
        if attention_heads(model) and not (linear_chain(model) or conv_chain(model)):
            return head_mask(model, sparsity=sparsity, calibration=calibration)
        return structured_mask(model, sparsity=sparsity)
    magnitude = {n: p.detach().abs() for n, p in prunable_parameters(model).items()}
    density = _densities(sparsity)
    if method in ("global-magnitude", "layerwise-magnitude"):
        return select_weights(model, magnitude, density=density, per_layer=method == "layerwise-magnitude",
                              previous=previous)
    if calibration is None:
        fail(f"method '{method}' needs rows with labels and groups to measure saliency.")
    alive = _alive(model, previous)
    per_tensor = isinstance(density, Mapping)
    anchor = _select(model, _flatten(magnitude), density=density, per_layer=False, alive=alive)
    saliency = {group: _flatten(scores) for group, scores in group_saliency(model, calibration).items()}
    keep = anchored_keep(model, anchor=anchor, alive=alive, saliency=saliency,
                            features=calibration.features, labels=calibration.labels, groups=calibration.groups,
                            min_rows=min_group_rows, worst_only=method == "worst-group",
                            layers=list(_parts(model).values()), per_layer_only=per_tensor,
                            recovered=None if recovered is None else lambda keep: recovered(_unflatten(keep, model)))
    return _unflatten(keep, model)


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """Validated method names (``all`` = every method)."""
    if list(methods) == ["all"]:
        return METHODS
    for method in methods:
        if method not in METHODS:
            fail(f"pruning method '{method}' is unknown. Choose from: {', '.join(METHODS)} (or all).")
    if not methods:
        fail("choose at least one pruning method.")
    return tuple(dict.fromkeys(methods))
