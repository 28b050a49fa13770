"""--device cuda runs every analysis on the GPU (models, attention, Captum) and agrees with the CPU.
Skipped, with the reason, where no CUDA GPU exists (CI's runners have none)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ticketaudit as ta
from attention_models import one_hot_pair, one_hot_table
from text_models import _tokenizer, prune_magnitude, text_table, tiny_bert

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
FEATURES = [f"f{i}" for i in range(12)]
GPU = "cuda"


def _both(**options: object) -> dict[str, ta.AuditResult]:
    return {device: ta.audit(device=device, n_boot=200, seed=0, precision="float32", **options)  # type: ignore[arg-type]
            for device in ("cpu", GPU)}


def _agree(runs: dict[str, ta.AuditResult]) -> None:
    cpu, gpu = (runs[d].to_dict() for d in ("cpu", GPU))
    assert gpu["settings"]["precision"] == "float32"
    assert gpu["verdict"] == cpu["verdict"]
    for group_cpu, group_gpu in zip(cpu["subgroups"], gpu["subgroups"]):
        assert group_gpu["group"] == group_cpu["group"] and group_gpu["n"] == group_cpu["n"]
        for metric in ("accuracy", "tpr", "fpr"):  # a prediction may flip between kernels: one row at most
            if metric not in group_cpu["metrics"]:  # multi-class tasks (BBQ's three answers) have recalls instead
                continue
            for model in ("dense", "ticket"):
                on_cpu, on_gpu = group_cpu["metrics"][metric][model], group_gpu["metrics"][metric][model]
                if on_cpu is not None:
                    assert abs(on_gpu - on_cpu) <= 1.0 / group_cpu["n"] + 1e-9
    attention_cpu, attention_gpu = cpu.get("attention"), gpu.get("attention")
    if attention_cpu is not None:
        np.testing.assert_allclose([h["dense"] for h in attention_gpu["heads"]],
                                   [h["dense"] for h in attention_cpu["heads"]], atol=1e-3)
    if cpu.get("attributions") is not None:
        assert gpu["attributions"]["sample_rows"] == cpu["attributions"]["sample_rows"]


def test_tabular_transformer_on_the_gpu() -> None:
    dense, ticket = one_hot_pair()
    _agree(_both(dense=dense, ticket=ticket, data=one_hot_table(400), target="y", sensitive="group",
                 features=FEATURES, analyses="metrics,attention,attributions", attribution_rows=40))


def test_text_model_on_the_gpu(tmp_path: Path) -> None:
    dense = tiny_bert(seed=0)
    _agree(_both(dense=dense, ticket=prune_magnitude(dense, keep=0.3), tokenizer=_tokenizer(tmp_path),
                 data=text_table(200), target="label", sensitive="group", text="review",
                 analyses="metrics,attention,attributions", attribution_rows=20))


def test_auto_precision_is_the_models_own_on_the_gpu() -> None:
    dense, ticket = one_hot_pair()
    result = ta.audit(dense=dense, ticket=ticket, data=one_hot_table(200), target="y", sensitive="group",
                      features=FEATURES, device=GPU, n_boot=200, seed=0)
    assert result.to_dict()["settings"]["precision"] == "float32"


def test_image_models_on_the_gpu(tmp_path: Path) -> None:
    from image_models import huggingface_vit, write_images

    table = write_images(tmp_path, 60)
    dense, ticket = huggingface_vit(tmp_path)
    _agree(_both(dense=dense, ticket=ticket, data=table.assign(path=[str(tmp_path / p) for p in table["path"]]),
                 image="path", target="label", sensitive="group", analyses="metrics,attention,attributions",
                 attribution_rows=20))


def test_language_model_on_the_gpu(tmp_path: Path) -> None:
    """A causal LM's BBQ audit, attention and prompt attributions on the GPU agree with the CPU."""
    from llm_models import save_tiny, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    dense = save_tiny(tmp_path / "dense", seed=0, tokenizer=tokenizer)
    ticket = save_tiny(tmp_path / "ticket", seed=1, tokenizer=tokenizer)
    bbq = Path(__file__).resolve().parent.parent / "datasets" / "bbq" / "bbq_sample.jsonl.gz"
    runs = _both(dense=dense, ticket=ticket, benchmark="bbq", data=bbq, limit=60,
                 analyses="benchmark,metrics,attention,attributions", attribution_rows=12)
    _agree(runs)
    cpu, gpu = (runs[d].to_dict()["attributions"] for d in ("cpu", GPU))
    assert gpu["method"] == "input-x-gradient"
    assert abs(gpu["overall"]["sensitive_share"]["dense"] - cpu["overall"]["sensitive_share"]["dense"]) < 1e-3
