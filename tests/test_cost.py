"""Attribution budgets from counted multiply-adds (issue: defaults that finish, item 2): the sample and the steps a
``--attribution-budget`` allows, per modality, on deliberately expensive models; deterministic by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ticketaudit.analyses import cost


def _cnn(groups: int = 1) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(64, 64, 3, padding=1, groups=groups), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 2))


def test_convolutions_are_counted_by_their_groups() -> None:
    pixels = np.zeros((1, 3, 64, 64), dtype=np.float32)
    dense, depthwise = cost.row_cost(_cnn(), pixels), cost.row_cost(_cnn(groups=64), pixels)
    first = 64 * 64 * 64 * 3 * 9  # outputs x (in / groups) x kernel
    assert dense.macs["conv"] == pytest.approx(first + 64 * 64 * 64 * 64 * 9)
    assert depthwise.macs["conv"] == pytest.approx(first) and depthwise.macs["grouped_conv"] == pytest.approx(64 ** 3 * 9)
    assert dense.macs["matmul"] == pytest.approx(64 * 2, abs=200)
    # float64 convolutions are priced far above float32 ones; depthwise above dense per multiply-add
    assert dense.seconds(passes=1, precision="float64") > 5 * dense.seconds(passes=1, precision="float32")
    per_mac = {k: 1 / cost.THROUGHPUT[k]["float32"] for k in ("conv", "grouped_conv")}
    assert per_mac["grouped_conv"] > per_mac["conv"]


@pytest.mark.parametrize("method, passes", [("integrated-gradients", 3 * 50 + 1), ("saliency", 3),
                                            ("feature-ablation", 13), ("occlusion", 13), ("gradient-shap", 151)])
def test_forward_passes_per_method(method: str, passes: float) -> None:
    assert cost.forward_passes(method, steps=50, inputs=12) == passes


def _expensive_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096),
                               torch.nn.ReLU(), torch.nn.Linear(4096, 2))


@pytest.mark.parametrize("budget", [1.0, 10.0, 120.0])
def test_tables_expensive_model_fits_the_budget(budget: float) -> None:
    """A 17M-multiply-add MLP: IG at 50 steps on 2,000 rows would take about 2 minutes per model."""
    row = cost.row_cost(_expensive_mlp(), np.zeros((1, 64), dtype=np.float32))
    plan = cost.budgeted(row, method="integrated-gradients", steps=50, inputs=64, precision="float32",
                         budget_seconds=budget, population=2000, floor=50)
    assert plan.seconds <= budget * 1.5 or plan.rows == cost.MIN_ROWS
    assert plan == cost.budgeted(row, method="integrated-gradients", steps=50, inputs=64, precision="float32",
                                 budget_seconds=budget, population=2000, floor=50)  # no clock: the same every time
    if plan.rows >= 50:
        assert plan.steps == 50 and not plan.floor_missed
    float64 = cost.budgeted(row, method="integrated-gradients", steps=50, inputs=64, precision="float64",
                            budget_seconds=budget, population=2000, floor=50)
    assert (float64.rows, float64.steps) <= (plan.rows, plan.steps)


def test_images_expensive_model_gives_up_steps_then_rows() -> None:
    """A 224-px CNN of ~3.9e9 multiply-adds an image: IG at 50 steps is ~40 s per image and model, so 120 s buys
    few images; steps drop to MIN_STEPS first, then the sample, never past 1.5x the budget (or MIN_ROWS)."""
    row = cost.row_cost(_cnn(), np.zeros((1, 3, 224, 224), dtype=np.float32))
    plan = cost.budgeted(row, method="integrated-gradients", steps=50, inputs=256, precision="float32",
                         budget_seconds=120, population=600, floor=50)
    assert plan.steps == cost.MIN_STEPS and plan.floor_missed
    assert plan.seconds <= 120 * 1.5 or plan.rows == cost.MIN_ROWS
    saliency = cost.budgeted(row, method="saliency", steps=50, inputs=256, precision="float32", budget_seconds=120,
                             population=600, floor=50)
    assert saliency.rows > plan.rows and saliency.seconds <= 120


def test_text_expensive_model_scales_with_the_budget() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    from ticketaudit.inputs import TokenInputs

    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    minilm = BertForSequenceClassification(config).eval()  # MiniLM-L6-H384 size, untrained
    tokens = TokenInputs(np.ones((1, 32), dtype=np.int32), np.ones((1, 32), dtype=np.int8))
    row = cost.row_cost(minilm, tokens)
    assert 3e8 < row.macs["matmul"] < 1.5e9  # ~21M weights x 32 tokens, plus attention
    rows = [cost.budgeted(row, method="layer-integrated-gradients", steps=50, inputs=32, precision="float32",
                          budget_seconds=s, population=10**6, floor=50) for s in (120, 960, 3840)]
    assert rows[0].rows < rows[1].rows < rows[2].rows and rows[2].rows == pytest.approx(4 * rows[1].rows, rel=0.02)
    assert rows[1].steps == rows[2].steps == 50 and rows[0].steps < 50  # 120 s: fewer steps before fewer rows
    assert all(plan.seconds <= budget for plan, budget in zip(rows, (120, 960, 3840)))


def test_language_model_expensive_model_scales_with_the_budget() -> None:
    """A 12-layer 512-wide causal LM (~55M weights): its counted cost per token covers every layer and the vocabulary
    projection; the budget buys items in proportion and Integrated Gradients gives up steps before items."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ticketaudit.analyses.prompt_attributions import sequence_cost

    config = LlamaConfig(vocab_size=8000, hidden_size=512, intermediate_size=1536, num_hidden_layers=12,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512)
    model = LlamaForCausalLM(config).eval()
    per_layer = 4 * 512 * 512 + 3 * 512 * 1536
    per_token = sequence_cost(model, np.arange(1, 129)) / 128
    assert 12 * per_layer + 512 * 8000 <= per_token <= 1.3 * (12 * per_layer + 512 * 8000)
    row = cost.RowCost({"matmul": per_token * 200})  # a BBQ item: about 200 tokens
    plans = [cost.budgeted(row, method="integrated-gradients", steps=50, inputs=200, precision="float32",
                           budget_seconds=s, population=600, floor=50) for s in (120, 1200, 4800)]
    assert plans[0].steps == cost.MIN_STEPS and plans[0].floor_missed  # 120 s buys few items, at 16 steps
    assert plans[0].rows < plans[1].rows < plans[2].rows
    assert all(p.seconds <= b * 1.5 or p.rows == cost.MIN_ROWS for p, b in zip(plans, (120, 1200, 4800)))
    cheap = cost.budgeted(row, method="input-x-gradient", steps=50, inputs=200, precision="float32",
                          budget_seconds=120, population=600, floor=50)
    assert cheap.rows > 10 * plans[0].rows and cheap.seconds <= 120
