"""Benchmark: ticketaudit's Wanda and SparseGPT against the authors' code, same model and calibration batch (issue:
fairness-aware pruning for language models, item 3).

The authors' layer statistics and pruning step run unchanged from a checkout of locuslab/wanda (``lib/layerwrapper.py``
``WrappedGPT``, ``lib/sparsegpt.py`` ``SparseGPT.fasterprune``, the SparseGPT authors' code vendored there; Wanda's
mask selection is the dozen lines of ``lib/prune.py::prune_wanda``, quoted below). Their driver (``prune_wanda``,
``prune_sparsegpt``) calls decoder layers the way transformers 4.3x did (no ``position_embeddings``), so this script
drives the same loop — statistics of every linear layer of a block from its inputs, prune each, then feed the pruned
block's outputs to the next — with the block inputs ticketaudit captures. Prints, per method and pattern, the share
of weights whose keep / prune decision differs, the largest relative difference of SparseGPT's updated weights that
both kept, and each model's loss per token on held-out tokens; the authors' code runs as written (float32) and with
its float32 casts made float64, which tells precision (ticketaudit accumulates in float64) from method.

Run: git clone https://github.com/locuslab/wanda /tmp/wanda
     python bench/llm_pruning_reference.py --authors /tmp/wanda [--model tiny|smollm2] [--methods wanda,sparsegpt]
     [--patterns 50%,2:4] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

os.environ.setdefault("TQDM_DISABLE", "1")


def authors_prune(model: nn.Module, batches: list[torch.Tensor], *, method: str, sparsity: float,
                  pattern: tuple[int, int] | None) -> dict[str, torch.Tensor]:
    """The authors' statistics and pruning step, block by block, on ``model`` in place; keep masks by name."""
    from ticketaudit.pruning.sequential import _output, _with_hidden, decoder_blocks, first_block_inputs

    blocks = decoder_blocks(model)
    prefix = next(name for name, m in model.named_modules() if m is blocks)
    calls = first_block_inputs(model, batches)
    masks: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(blocks):
        subset, wrapped = _authors_statistics(layer, calls, method=method)
        for name, linear in subset.items():
            masks[f"{prefix}.{index}.{name}.weight"] = _authors_step(linear, wrapped[name], method=method,
                                                                      sparsity=sparsity, pattern=pattern)
        with torch.no_grad():
            calls = [_with_hidden(call, _output(layer(*call[0], **call[1]))) for call in calls]
    return masks


def _authors_statistics(layer: nn.Module, calls: list[Any], *, method: str) -> tuple[dict[str, nn.Linear], dict]:
    """The block's linear layers and the authors' statistics of each (``WrappedGPT`` or ``SparseGPT``), collected
    by running the block on ``calls`` as their driver does."""
    from lib.layerwrapper import WrappedGPT
    from lib.sparsegpt import SparseGPT

    subset = {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
    wrapped = {name: (WrappedGPT if method == "wanda" else SparseGPT)(m) for name, m in subset.items()}
    handles = [subset[name].register_forward_hook(
        lambda _, inp, out, w=wrapped[name]: w.add_batch(inp[0].data, out.data)) for name in subset]
    with torch.no_grad():
        for args, kwargs in calls:
            layer(*args, **kwargs)
    for handle in handles:
        handle.remove()
    return subset, wrapped


def _authors_step(linear: nn.Linear, wrapped: Any, *, method: str, sparsity: float,
                  pattern: tuple[int, int] | None) -> torch.Tensor:
    """The authors' pruning of one linear layer from its collected statistics, in place; its keep mask."""
    prune_n, prune_m = (pattern[1] - pattern[0], pattern[1]) if pattern else (0, 0)
    if method == "sparsegpt":
        wrapped.fasterprune(sparsity, prune_n=prune_n, prune_m=prune_m, percdamp=0.01, blocksize=128)
        return linear.weight.data != 0
    # lib/prune.py::prune_wanda (use_variant off), verbatim but for names
    W_metric = torch.abs(linear.weight.data) * torch.sqrt(wrapped.scaler_row.reshape((1, -1)))
    W_mask = (torch.zeros_like(W_metric) == 1)
    if prune_n != 0:
        for ii in range(W_metric.shape[1]):
            if ii % prune_m == 0:
                tmp = W_metric[:, ii:(ii + prune_m)].float()
                W_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
    else:
        sort_res = torch.sort(W_metric, dim=-1, stable=True)
        indices = sort_res[1][:, :int(W_metric.shape[1] * sparsity)]
        W_mask.scatter_(1, indices, True)
    linear.weight.data[W_mask] = 0
    return ~W_mask


def same_inputs(model: nn.Module, batches: list[torch.Tensor], *, method: str, pattern: tuple[int, int] | None,
                blocks: int) -> tuple[int, int]:
    """Decisions that differ when both prune the same blocks from the same inputs (ticketaudit's statistics and
    pruned outputs feed the next block), over the first ``blocks`` blocks: (differing, total)."""
    from ticketaudit.pruning import sequential as seq

    model = copy.deepcopy(model)
    calls = seq.first_block_inputs(model, batches)
    differ = total = 0
    for block in list(seq.decoder_blocks(model))[:blocks]:
        linears = seq.block_linears(block)
        stats = seq._collect(block, linears, calls, [0] * len(calls), None, hessian=method == "sparsegpt")
        subset, wrapped = _authors_statistics(copy.deepcopy(block), calls, method=method)
        for name, (layer, _) in linears.items():
            their_kept = _authors_step(subset[name], wrapped[name], method=method, sparsity=0.5, pattern=pattern)
            with torch.no_grad():
                kept = seq._prune_one(layer.weight, stats[name], method=method, sparsity=0.5, pattern=pattern)
            differ, total = differ + int((kept != their_kept).sum()), total + kept.numel()
        with torch.inference_mode():
            calls = [seq._with_hidden(c, seq._output(block(*c[0], **c[1]))) for c in calls]
    return differ, total


def loss_per_token(model: nn.Module, tokens: torch.Tensor) -> float:
    with torch.inference_mode():
        return float(model(input_ids=tokens, labels=tokens).loss)


def models(kind: str) -> tuple[nn.Module, list[torch.Tensor], torch.Tensor]:
    """The dense model, the calibration batches and held-out tokens."""
    if kind == "smollm2":
        from ticketaudit.demo_llm import smollm2_path
        from ticketaudit.prune_language import LENGTH, SEQUENCES, calibration_text
        from ticketaudit.pruning.language import calibration_batches
        from ticketaudit.tickets.load import load_dense

        dense = load_dense(smollm2_path())
        text, _ = calibration_text(None)
        batches = calibration_batches(dense.tokenizer, text, sequences=SEQUENCES + 4, length=LENGTH)
        return dense.module.float().eval(), batches[:SEQUENCES], torch.cat(batches[SEQUENCES:])
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=256)
    model = transformers.LlamaForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 512, (20, 128), generator=generator)
    return model, list(tokens[:16, None, :].unbind(0)), tokens[16:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", type=Path, required=True, help="a checkout of github.com/locuslab/wanda")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--methods", default="wanda,sparsegpt")
    parser.add_argument("--blocks", type=int, default=4, help="blocks compared on the same inputs")
    parser.add_argument("--patterns", default="50%,2:4", help="50%% (unstructured) and/or 2:4")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(args.authors))
    torch.cuda.synchronize = lambda *_, **__: None  # the authors' SparseGPT syncs a GPU it assumes
    from ticketaudit.pruning.sequential import prune_layerwise

    dense, batches, held_out = models(args.model)
    print(f"model {args.model}, {len(batches)} calibration sequences; dense loss per token "
          f"{loss_per_token(dense, held_out):.4f}")
    patterns = [None if p == "50%" else (2, 4) for p in args.patterns.split(",")]
    for method in args.methods.split(","):
        for pattern in patterns:
            label = f"{method} {'2:4' if pattern else '50%'}"
            differ, total = same_inputs(dense, batches, method=method, pattern=pattern, blocks=args.blocks)
            print(f"{label}, same block inputs (first {args.blocks} blocks): decisions differing {differ}/{total} "
                  f"({differ / total:.2e})")
            ours = copy.deepcopy(dense)
            our_masks = prune_layerwise(ours, batches, method=method, sparsity=0.5, pattern=pattern)
            for precision in ("float32", "float64"):
                theirs = copy.deepcopy(dense)
                with _authors_in(precision):
                    their_masks = authors_prune(theirs, batches, method=method, sparsity=0.5, pattern=pattern)
                differ = sum(int((our_masks[n] != their_masks[n]).sum()) for n in our_masks)
                total = sum(m.numel() for m in our_masks.values())
                updated = (f"largest relative difference of the kept weights "
                           f"{_relative_difference(ours, theirs, our_masks):.2e}; " if method == "sparsegpt" else "")
                print(f"{label}, whole model, authors in {precision}: decisions differing {differ}/{total} ({differ / total:.2e}); {updated}loss per "
                      f"token ours {loss_per_token(ours, held_out):.4f}, authors {loss_per_token(theirs, held_out):.4f}")


@contextlib.contextmanager
def _authors_in(precision: str) -> Iterator[None]:
    """The authors' code as written (float32), or with its ``.float()`` casts and float32 buffers made float64 — to
    tell precision from a difference of method."""
    if precision == "float32":
        yield
        return
    cast, default = torch.Tensor.float, torch.get_default_dtype()
    torch.Tensor.float = torch.Tensor.double  # type: ignore[method-assign]
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.Tensor.float = cast  # type: ignore[method-assign]
        torch.set_default_dtype(default)


def _relative_difference(ours: nn.Module, theirs: nn.Module, masks: dict[str, Any]) -> float:
    """The largest |ours - theirs| / max |theirs| over the pruned layers' weights both kept."""
    mine, other = dict(ours.named_parameters()), dict(theirs.named_parameters())
    with torch.no_grad():
        return max(float(((mine[n] - other[n]) * ((mine[n] != 0) & (other[n] != 0))).abs().max()
                         / other[n].abs().max().clamp_min(1e-12)) for n in masks)


if __name__ == "__main__":
    main()
