"""Attributions on language models: equal to Captum's LLMGradientAttribution, independent of how items are batched,
and the audit's identity-word share equal to a direct computation item by item."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import run_cli
from llm_models import save_tiny, tiny_llama, tiny_tokenizer
from ticketaudit.analyses.prompt_attributions import lay_out_prompts, prompt_token_attributions
from ticketaudit.llm.bbq import bbq_columns, bbq_identity_words, read_bbq

ROOT = Path(__file__).resolve().parent.parent
BBQ = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"
CROWS = ROOT / "datasets" / "crows_pairs" / "crows_pairs_sample.csv"
CPU = torch.device("cpu")
PROMPTS = ["The old man and the young woman were at the clinic.\n\nQ: Who was forgetful?\nA:",
           "Q: Who was helpful?\nA:"]
ANSWERS = [" The old man", " The nurse"]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return tiny_tokenizer()


def _layout(tokenizer: object, prompts: list[str], answers: list[str]) -> tuple[object, list[np.ndarray]]:
    contexts = [np.array(tokenizer.encode(p)) for p in prompts]
    continuations = [np.array(tokenizer.encode(p + a)[len(c):]) for p, a, c in zip(prompts, answers, contexts)]
    layout = lay_out_prompts(contexts, continuations, [np.zeros(len(c), dtype=bool) for c in contexts], pad=0,
                             baseline=0)
    return layout, continuations


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("method", ["integrated-gradients", "input-x-gradient"])
def test_prompt_attributions_equal_captum_llm_gradient_attribution(tokenizer: object, kind: str, method: str) -> None:
    """Two prompts of different lengths in one left-padded batch, the answer's log-probability summed: each prompt
    token's attribution equals Captum's LLMGradientAttribution run on the item alone, token by token."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    model = tiny_llama(len(tokenizer), seed=1, kind=kind).double()
    layout, continuations = _layout(tokenizer, PROMPTS, ANSWERS)
    ours, _ = prompt_token_attributions(model, layout, method=method, steps=20, device=CPU)
    integrated = method == "integrated-gradients"
    for i, prompt in enumerate(PROMPTS):
        layer = (LayerIntegratedGradients if integrated else LayerGradientXActivation)(model,
                                                                                        model.get_input_embeddings())
        reference = LLMGradientAttribution(layer, tokenizer).attribute(
            TextTokenInput(prompt, tokenizer, baselines=0), target=torch.as_tensor(continuations[i]),
            **({"n_steps": 20} if integrated else {})).seq_attr.numpy()
        assert ours[i].shape == reference.shape
        # Llama's RMSNorm runs in float32 even in a float64 model: sequences of other lengths round differently
        np.testing.assert_allclose(ours[i], reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


def test_batching_never_changes_a_prompts_attributions(tokenizer: object) -> None:
    """An item attributed alone or beside a longer one (left padding, explicit positions) gets the same values."""
    model = tiny_llama(len(tokenizer), seed=2).double()
    together, _ = prompt_token_attributions(model, _layout(tokenizer, PROMPTS, ANSWERS)[0],
                                            method="integrated-gradients", steps=8, device=CPU)
    for i in range(2):
        alone, _ = prompt_token_attributions(model, _layout(tokenizer, PROMPTS[i:i + 1], ANSWERS[i:i + 1])[0],
                                             method="integrated-gradients", steps=8, device=CPU)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-7, atol=1e-12)


def test_bbq_identity_words_tell_the_named_answers_apart() -> None:
    frame = pd.DataFrame({"ans0": ["The grandfather", "The gay man", "Can't answer", "The 22-year-old"],
                          "ans1": ["The grandson", "Unknown", "The Christian", "The retiree"],
                          "ans2": ["Not known", "The straight man", "The Muslim", "Not enough info"],
                          "bbq_unknown": [2, 1, 0, 2]})
    assert bbq_identity_words(frame) == [("grandfather", "grandson"), ("gay", "straight"), ("christian", "muslim"),
                                         ("22", "old", "retiree", "year")]


def _direct_shares(models: tuple[Path, Path], tokenizer: object, frame: pd.DataFrame) -> dict[str, float]:
    """Per model, the mean over items of |attribution| on the item's identity words / |attribution| on all its
    words, each item explained alone by Captum's LLMGradientAttribution (gradient x activation) towards its label's
    best-scored phrasing, tokens summed to words by the tokenizer's own word ids."""
    import transformers
    from captum.attr import LayerGradientXActivation, LLMGradientAttribution, TextTokenInput

    from ticketaudit.llm.scoring import naive_loglikelihoods
    from ticketaudit.llm.encode import build_choice_inputs

    choices, answers = bbq_columns(frame)
    inputs = build_choice_inputs(frame.prompt.tolist(), frame[choices].values.tolist(), frame[answers].values.tolist(),
                                 tokenizer=tokenizer, n_answers=3, limit=256)
    dense = transformers.AutoModelForCausalLM.from_pretrained(models[0]).double().eval()
    with torch.inference_mode():
        scores = naive_loglikelihoods(dense, inputs, device=CPU)
    identity = bbq_identity_words(frame)
    shares: dict[str, list[float]] = {"dense": [], "ticket": []}
    for name, path in zip(shares, models):
        model = transformers.AutoModelForCausalLM.from_pretrained(path).double().eval()
        explainer = LLMGradientAttribution(LayerGradientXActivation(model, model.get_input_embeddings()), tokenizer)
        for i, prompt in enumerate(frame.prompt):
            allowed = np.flatnonzero(inputs.answers[i] == frame.label.iloc[i])
            target = inputs.continuations[i][int(allowed[np.argmax(scores[i].numpy()[allowed])])]
            context = prompt.rstrip()
            token_values = explainer.attribute(TextTokenInput(context, tokenizer, baselines=0),
                                               target=torch.as_tensor(target)).seq_attr.numpy()
            encoded = tokenizer(context, return_offsets_mapping=True)
            words: dict[str, float] = {}
            by_word: dict[int, list[int]] = {}
            for t, word in enumerate(encoded.word_ids()):
                if context[slice(*encoded["offset_mapping"][t])].strip():
                    by_word.setdefault(word, []).append(t)
            for tokens in by_word.values():
                start, end = encoded["offset_mapping"][tokens[0]][0], encoded["offset_mapping"][tokens[-1]][1]
                text = context[start:end].strip().lower()
                words[text] = words.get(text, 0.0) + float(token_values[tokens].sum())
            magnitude = {w: abs(v) for w, v in words.items()}
            shares[name].append(sum(v for w, v in magnitude.items() if w in identity[i]) / sum(magnitude.values()))
    return {name: float(np.mean(values)) for name, values in shares.items()}


def test_language_model_identity_share_equals_a_direct_computation(tokenizer: object, tmp_path: Path) -> None:
    """Items short enough for the tiny model's 256 positions (a longer prompt is explained as scored: its kept
    tail, which Captum's text input cannot express)."""
    import gzip

    models = (save_tiny(tmp_path / "dense", seed=0, tokenizer=tokenizer),
              save_tiny(tmp_path / "ticket", seed=1, tokenizer=tokenizer))
    with gzip.open(BBQ, "rt", encoding="utf-8") as lines:
        records = [r for r in map(json.loads, lines) if len(tokenizer.encode(r["context"] + r["question"])) < 200]
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records[:24]), encoding="utf-8")
    out = tmp_path / "a.json"
    run = run_cli(["report", "--dense", str(models[0]), "--ticket", str(models[1]), "--benchmark", "bbq", "--data",
                   str(data), "--limit", "24", "--analyses", "metrics,attributions", "--attribution-rows", "24",
                   "--attribution-method", "input-x-gradient", "--precision", "float64", "--seed", "0",
                   "--n-boot", "200", "--quiet", "--json", str(out), "--out", str(tmp_path / "a.html")])
    assert run.code in (0, 1), run.stderr
    section = json.loads(out.read_text())["attributions"]
    assert section["sample_rows"] == 24 and section["unit"] == "word"
    assert section["explained"].startswith("the log-probability")
    frame = read_bbq(data)
    expected = _direct_shares(models, tokenizer, frame)
    share = section["overall"]["sensitive_share"]
    assert share["dense"] == pytest.approx(expected["dense"], abs=1e-6)  # Llama RMSNorm: float32 inside
    assert share["ticket"] == pytest.approx(expected["ticket"], abs=1e-6)
    assert set(section["identity_terms_found"]) <= {w for words in bbq_identity_words(frame) for w in words}
    html = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert "Identity-term share" in html and "log-probability units" in html


def test_language_model_attributions_are_named_not_default(tokenizer: object, tmp_path: Path) -> None:
    """Left out of a plain language-model report (too costly by default on CPUs); when named, gradient x activation
    unless a method is named; refused on sentence pairs."""
    models = (save_tiny(tmp_path / "dense", seed=0, tokenizer=tokenizer),
              save_tiny(tmp_path / "ticket", seed=1, tokenizer=tokenizer))
    base = ["report", "--dense", str(models[0]), "--ticket", str(models[1]), "--seed", "0", "--n-boot", "100",
            "--quiet", "--json", str(tmp_path / "a.json"), "--out", str(tmp_path / "a.html")]
    run = run_cli([*base, "--benchmark", "bbq", "--data", str(BBQ), "--limit", "12"])
    assert run.code in (0, 1), run.stderr
    assert "attributions" not in json.loads((tmp_path / "a.json").read_text())
    run = run_cli([*base, "--benchmark", "bbq", "--data", str(BBQ), "--limit", "12", "--analyses",
                   "metrics,attributions", "--attribution-rows", "12"])
    assert run.code in (0, 1), run.stderr
    assert json.loads((tmp_path / "a.json").read_text())["attributions"]["method"] == "input-x-gradient"
    (tmp_path / "a.json").unlink()
    (tmp_path / "a.html").unlink()
    run = run_cli([*base, "--benchmark", "crows-pairs", "--data", str(CROWS), "--limit", "12",
                   "--analyses", "metrics,attributions"])
    assert run.code == 2 and "sentence pairs" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "a.json").exists()


def test_a_model_without_position_ids_is_attributed_unpadded(tokenizer: object) -> None:
    """BLOOM (ALiBi) takes no positions, so its items are explained one at a time, never left-padded: the same
    values as each item alone, and finite."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=4)
    model = transformers.BloomForCausalLM(config).double().eval()
    together, _ = prompt_token_attributions(model, _layout(tokenizer, PROMPTS, ANSWERS)[0], method="input-x-gradient",
                                            steps=1, device=CPU)
    alone, _ = prompt_token_attributions(model, _layout(tokenizer, PROMPTS[1:], ANSWERS[1:])[0],
                                         method="input-x-gradient", steps=1, device=CPU)
    assert np.isfinite(together[1]).all()
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-9, atol=1e-15)
