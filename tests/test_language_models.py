"""Causal language models: the scorer against a plain loop and lm-evaluation-harness, the BBQ and CrowS-Pairs
scores against hand-computed cases, and the audit end to end on tiny config-built models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import run_cli
from llm_models import save_tiny, tiny_llama, tiny_tokenizer
from ticketaudit.analyses.benchmark_scores import AnsweredItems, bbq_scores, benchmark_result
from ticketaudit.llm.bbq import UNKNOWN_RESPONSES, biased_answers, bbq_columns, read_bbq
from ticketaudit.llm.encode import build_choice_inputs, encode_item
from ticketaudit.llm.scoring import choice_loglikelihoods, naive_loglikelihoods

ROOT = Path(__file__).resolve().parent.parent
BBQ = ROOT / "datasets" / "bbq" / "bbq_sample.jsonl.gz"
CROWS = ROOT / "datasets" / "crows_pairs" / "crows_pairs_sample.csv"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("llm")
    return (save_tiny(root / "dense", seed=0, tokenizer=tokenizer),
            save_tiny(root / "ticket", seed=1, tokenizer=tokenizer))


def _items(tokenizer: object, frame: pd.DataFrame, *, limit: int = 256) -> object:
    choices, answers = bbq_columns(frame)
    return build_choice_inputs(frame.prompt.tolist(), frame[choices].values.tolist(), frame[answers].values.tolist(),
                               tokenizer=tokenizer, n_answers=3, limit=limit)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("part_bytes", [None, 1], ids=["one-continuation-pass", "a-pass-per-item"])
def test_shared_prompt_scores_equal_one_pass_per_choice(tokenizer: object, kind: str, part_bytes: int | None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The prompt cache copied to every choice gives each choice's log-likelihood of a whole pass, in float64,
    whether a batch's choices continue in one pass or item by item (the memory bound)."""
    import ticketaudit.llm.scoring as scoring

    if part_bytes is not None:
        monkeypatch.setattr(scoring, "CONTINUATION_BYTES", part_bytes)
    model = tiny_llama(len(tokenizer), kind=kind).double()
    frame = read_bbq(BBQ).head(6)
    inputs = _items(tokenizer, frame)
    with torch.inference_mode():
        shared = choice_loglikelihoods(model, inputs, device=CPU)
        whole = naive_loglikelihoods(model, inputs, device=CPU)
    for a, b in zip(shared, whole):
        assert a.shape == (12,)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-9)


def test_continuation_parts_hold_whole_items_within_the_memory_bound() -> None:
    from ticketaudit.llm.scoring import CONTINUATION_BYTES, _continuation_parts

    choices = [np.arange(n) for n in (3, 5, 2, 4, 4, 6, 2, 3, 3)]  # the longest feeds 5 tokens
    owner = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3])
    per_choice = 2 * (10 + 5) * 1000 + 5 * 2**21  # the cache twice (10 prompt + 5 fed positions), 5 rows of logits
    assert 4 * per_choice <= CONTINUATION_BYTES < 5 * per_choice  # four choices fit a part
    parts = _continuation_parts(choices, owner=owner, context=10, position_bytes=1000, logit_bytes=2**21)
    # items of 3, 2, 1 and 3 choices: 3 (+2 would be 5), then 2 + 1 (+3 would be 6), then 3
    assert [part.tolist() for part in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    one_item = _continuation_parts(choices[:3], owner=owner[:3], context=10, position_bytes=1000,
                                   logit_bytes=2**40)  # over the bound alone: still one part
    assert [part.tolist() for part in one_item] == [[0, 1, 2]]


def test_batch_size_never_changes_an_items_scores(tokenizer: object) -> None:
    from ticketaudit.analyses.predict import ModelRunner

    model = tiny_llama(len(tokenizer))
    inputs = _items(tokenizer, read_bbq(BBQ).head(10))
    runner = ModelRunner(model, device=CPU, precision="float64")
    one = runner.probabilities(inputs, batch_size=1)  # one item per batch
    many = runner.probabilities(inputs, batch_size=10**6)  # every item in one batch
    np.testing.assert_array_equal(one, many)
    assert one.shape == (10, 3)


def test_an_empty_context_is_the_bos_token_and_spaces_move_to_the_choice(tokenizer: object) -> None:
    context, choices = encode_item(tokenizer, "", ["He is poor."])
    assert context.tolist() == [tokenizer.bos_token_id]
    assert choices[0].tolist() == tokenizer.encode("He is poor.", add_special_tokens=False)
    context, choices = encode_item(tokenizer, "Q: Who?\nA: ", ["The nurse"])
    assert context.tolist() == tokenizer.encode("Q: Who?\nA:")
    whole = tokenizer.encode("Q: Who?\nA: The nurse")
    assert choices[0].tolist() == whole[len(context):]


def test_overlong_items_keep_their_last_context_tokens_and_are_marked(tokenizer: object) -> None:
    frame = read_bbq(BBQ).head(2)
    inputs = _items(tokenizer, frame, limit=20)
    assert inputs.truncated.all()
    longest = max(len(c) for c in inputs.continuations[0])
    assert len(inputs.contexts[0]) == 21 - longest
    full = _items(tokenizer, frame)
    assert inputs.contexts[0].tolist() == full.contexts[0][-len(inputs.contexts[0]):].tolist()


def test_bbq_reader_builds_the_harness_choices(tokenizer: object) -> None:
    frame = read_bbq(BBQ)
    assert len(frame) == 600 and set(frame.context_condition) == {"ambig", "disambig"}
    choices, answers = bbq_columns(frame)
    assert len(choices) == 12
    row = frame.iloc[0]
    named = [row[c].strip() for c in choices[:2]]
    unknown = int(row["bbq_unknown"])
    assert named == [row[f"ans{i}"] for i in range(3) if i != unknown]
    assert [row[c].strip() for c in choices[2:]] == list(UNKNOWN_RESPONSES)
    assert all(row[a] == unknown for a in answers[2:])
    assert row["prompt"].endswith("\nA:") and "\n\nQ: " in row["prompt"]
    original = read_bbq(BBQ, choices="original")
    assert bbq_columns(original)[0] == ["choice_0", "choice_1", "choice_2"]


def test_bbq_scores_on_a_hand_computed_case() -> None:
    """4 ambiguous items (right answer: unknown = 2) and 4 disambiguated; answer 0 is the biased one."""
    label = np.array([2, 2, 2, 2, 0, 1, 0, 1])
    dis = np.array([False] * 4 + [True] * 4)
    biased = np.zeros((8, 3), dtype=bool)
    biased[:, 0] = True
    unknown = np.full(8, 2)
    predicted = np.array([2, 0, 0, 1, 0, 0, 2, 1])
    scores = bbq_scores(predicted == label, biased[np.arange(8), predicted], predicted != unknown, dis)
    # ambiguous: acc 1/4; non-unknown answers 3, biased 2 -> s = 2*2/3 - 1 = 1/3; bias = (1 - 1/4) * 1/3 = 0.25
    assert scores["acc_ambig"] == pytest.approx(0.25)
    assert scores["bias_ambig"] == pytest.approx(0.25)
    # disambiguated: right on items 4 and 7 -> 0.5; non-unknown 3 (0, 0, 1), biased 2 -> s = 1/3
    assert scores["acc_disambig"] == pytest.approx(0.5)
    assert scores["bias_disambig"] == pytest.approx(1 / 3)
    none_biased = bbq_scores(predicted == label, np.zeros(8, dtype=bool), predicted != unknown, dis)
    assert none_biased["bias_disambig"] == 0.0  # the harness's rule when no answer is biased


def test_biased_answers_follow_the_harness_on_every_shipped_item() -> None:
    """Our biased-answer rule against lm-evaluation-harness's own ``process_docs`` on the 600 shipped items."""
    utils = pytest.importorskip("lm_eval.tasks.bbq.utils")
    import gzip

    records = [json.loads(line) for line in gzip.open(BBQ, "rt", encoding="utf-8") if line.strip()]
    datasets = pytest.importorskip("datasets")
    processed = utils.process_docs(datasets.Dataset.from_list(records))
    for record, doc in zip(records, processed):
        ours = [record[f"ans{i}"] for i in biased_answers(record)]
        assert ours == doc["biased_answers"], record["example_id"]
        assert utils.doc_to_choice(doc) == [c.strip() for c in
                                            read_bbq_row_choices(record)]


def read_bbq_row_choices(record: dict) -> list[str]:
    from ticketaudit.llm.bbq import _choices, unknown_answer

    return _choices(record, unknown_answer(record, where="test"), "harness")[0]


def test_scores_equal_lm_evaluation_harness_on_a_tiny_model(tokenizer: object) -> None:
    """Per-request log-likelihoods of lm-evaluation-harness's hf model on the same tiny model and BBQ items."""
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    model = tiny_llama(len(tokenizer), seed=3)
    frame = read_bbq(BBQ).head(8)
    choices, _ = bbq_columns(frame)
    lm = huggingface.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu")
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=(row["prompt"], row[c]), idx=i)
                for i, (row, c) in enumerate((r, c) for r in frame.to_dict("records") for c in choices)]
    theirs = np.array([r[0] for r in lm.loglikelihood(requests, disable_tqdm=True)]).reshape(8, 12)
    with torch.inference_mode():
        ours = torch.stack(choice_loglikelihoods(model, _items(tokenizer, frame), device=CPU)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()


def test_paired_interval_covers_the_true_change_in_simulation() -> None:
    """CrowS-style preference: dense prefers the stereotype with p = 0.6, the ticket flips 10% of pairs toward it.
    The 90% paired interval covers the true change (0.04) about 90% of the time."""
    rng = np.random.default_rng(0)
    covered, runs = 0, 200
    for run in range(runs):
        n = 400
        dense = (rng.random(n) > 0.6).astype(int)  # 0 = prefers the stereotype (p 0.6); the label is 1 (sent_less)
        flip = (dense == 1) & (rng.random(n) < 0.1)
        ticket = np.where(flip, 0, dense)
        items = AnsweredItems(rows=np.arange(n), category=np.full(n, "age"), label=np.ones(n, dtype=int),
                              dense=dense, ticket=ticket, disambiguated=np.zeros(n, dtype=bool),
                              biased=np.zeros((n, 2), dtype=bool), unknown=np.full(n, -1))
        result = benchmark_result(items, benchmark="crows-pairs", n_boot=300, seed=run, confidence=0.9)
        low, high = result.per_category["age"]["change"]["stereotype_preference"]["ci"]
        covered += low <= 0.04 <= high
    assert 0.84 <= covered / runs <= 0.96


def _report(models: tuple[Path, Path], tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "a.json"
    run = run_cli(["report", "--dense", str(models[0]), "--ticket", str(models[1]), "--json", str(out), "--out",
                   str(tmp_path / "a.html"), "--seed", "0", "--n-boot", "200", "--quiet", *extra])
    return run.code, (json.loads(out.read_text()) if out.exists() else {}), run.stderr


def test_bbq_audit_end_to_end_equals_direct_scoring(models: tuple[Path, Path], tokenizer: object,
                                                    tmp_path: Path) -> None:
    code, doc, err = _report(models, tmp_path, "--benchmark", "bbq", "--data", str(BBQ), "--limit", "240",
                             "--precision", "float64")
    assert code in (0, 1), err
    frame = read_bbq(BBQ, limit=240)
    import transformers

    inputs = _items(tokenizer, frame)
    answers = {}
    for name, path in zip(("dense", "ticket"), models):
        model = transformers.AutoModelForCausalLM.from_pretrained(path).double().eval()
        with torch.inference_mode():
            lls = choice_loglikelihoods(model, inputs, device=CPU)
        answers[name] = np.array([int(frame[bbq_columns(frame)[1][int(v.argmax())]].iloc[i])
                                  for i, v in enumerate(lls)])
    section = doc["benchmarks"]["bbq"]
    assert section["choices"] == "harness"
    for category, entry in section["per_category"].items():
        rows = (frame.category == category).to_numpy()
        for name in ("dense", "ticket"):
            picked = answers[name][rows]
            expected = bbq_scores(picked == frame.label[rows].to_numpy(),
                                  frame[[f"bbq_biased_{i}" for i in range(3)]].to_numpy(bool)[rows][
                                      np.arange(rows.sum()), picked],
                                  picked != frame.bbq_unknown[rows].to_numpy(),
                                  (frame.context_condition[rows] == "disambig").to_numpy())
            for key, value in expected.items():
                assert entry[name][key] == pytest.approx(float(value), abs=1e-6), (category, name, key)
        assert entry["dense"]["n"] == int(rows.sum())
        for key in ("acc_ambig", "bias_ambig", "bias_disambig"):
            change = entry["change"][key]
            assert change["ci"][0] <= change["delta"] + 1e-12 and change["delta"] <= change["ci"][1] + 1e-12
    groups = {g["group"] for g in doc["subgroups"]}
    assert "category=Age" in groups and "context_condition=ambig" in groups
    ids = [c["id"] for c in doc["checks"]]
    assert any(i.startswith("bias_score_increase:category=Age|context_condition=") for i in ids)
    assert "BBQ" in (tmp_path / "a.html").read_text(encoding="utf-8")


def test_same_seed_gives_byte_identical_json(models: tuple[Path, Path], tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _report(models, tmp_path / "a", "--benchmark", "crows-pairs", "--data", str(CROWS), "--limit", "60")
    second = _report(models, tmp_path / "b", "--benchmark", "crows-pairs", "--data", str(CROWS), "--limit", "60",
                     "--batch-size", "64")
    assert first[0] in (0, 1) and first[1] == second[1]
    assert (tmp_path / "a" / "a.json").read_bytes() == (tmp_path / "b" / "a.json").read_bytes()
    section = first[1]["benchmarks"]["crows_pairs"]["per_bias_type"]
    assert sum(e["dense"]["n"] for e in section.values()) == 60


def test_user_items_with_a_prompt_template(models: tuple[Path, Path], tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    rows = [{"who": w, "question": "Who was helpful?", "a": " The nurse", "b": " The doctor", "right": i % 2,
             "group": "x" if i % 3 else "y"} for i, w in enumerate(["The old man", "The young woman"] * 30)]
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    template = tmp_path / "prompt.jinja"
    template.write_text("{{ who }} met someone.\n\nQ: {{ question }}\nA:", encoding="utf-8")
    code, doc, err = _report(models, tmp_path, "--task", "choice", "--data", str(items), "--prompt-template",
                             str(template), "--choices", "a,b", "--target", "right", "--sensitive", "group")
    assert code in (0, 1), err
    assert doc["data"]["rows"] == 60 and "benchmarks" not in doc
    assert {g["group"] for g in doc["subgroups"]} == {"group=x", "group=y"}


@pytest.mark.parametrize(("extra", "words"), [
    (["--data", str(BBQ)], "--benchmark bbq|crows-pairs fills both"),
    (["--data", str(BBQ), "--target", "label", "--sensitive", "category"], "causal language model: say what it answers"),
    (["--benchmark", "bbq", "--data", "missing-folder"], "does not exist"),
    (["--benchmark", "squad", "--data", str(BBQ)], "--benchmark must be one of"),
    (["--task", "choice", "--data", str(BBQ), "--choices", "a"], "needs the prompt"),
    (["--benchmark", "bbq", "--data", str(CROWS)], "is not JSON"),
])
def test_bad_language_model_input_is_exit_2(models: tuple[Path, Path], tmp_path: Path, extra: list[str],
                                            words: str) -> None:
    code, _, err = _report(models, tmp_path, *extra)
    assert code == 2 and words in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_a_ticket_with_another_tokenizer_is_refused(models: tuple[Path, Path], tmp_path: Path) -> None:
    import transformers

    other = tmp_path / "other"
    transformers.AutoModelForCausalLM.from_pretrained(models[1]).save_pretrained(other)
    tokenizer = transformers.AutoTokenizer.from_pretrained(models[1])
    tokenizer.add_tokens(["<extra_token>"])
    tokenizer.save_pretrained(other)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _report((models[0], other), out, "--benchmark", "bbq", "--data", str(BBQ), "--limit", "10")
    assert code == 2 and "different tokenizers" in err and "<extra_token>" in err
    assert not list(out.iterdir())


def test_a_classifier_cannot_run_a_language_model_task(fx: object, tmp_path: Path) -> None:
    run = run_cli(["report", "--dense", str(fx.dense_dir), "--ticket", str(fx.ticket_dir), "--benchmark", "bbq",
                   "--data", str(BBQ), "--out", str(tmp_path / "a.html")])
    assert run.code == 2 and "not one" in run.stderr


def test_a_quantised_checkpoint_without_its_package_is_exit_2(models: tuple[Path, Path], tmp_path: Path) -> None:
    """A GPTQ directory whose package is missing: one message naming the method and the package, no traceback."""
    import shutil

    quantised = tmp_path / "gptq"
    shutil.copytree(models[1], quantised)
    config = json.loads((quantised / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (quantised / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _report((models[0], quantised), out, "--benchmark", "bbq", "--data", str(BBQ), "--limit", "10")
    assert code == 2 and "Traceback" not in err, err
    assert "gptq" in err.lower()
    assert not list(out.iterdir())


def test_acc_norm_divides_each_choices_score_by_its_length(tokenizer: object) -> None:
    """``acc_norm`` as lm-evaluation-harness: log-likelihood / characters (without the leading space), argmax."""
    from ticketaudit.llm.scoring import score_answers

    model = tiny_llama(len(tokenizer), seed=5).double()
    contexts = ["Q: Who was helpful?\nA:"] * 2
    choices = [[" The nurse", " Not enough information"], [" He", " The young woman"]]
    plain = build_choice_inputs(contexts, choices, [[0, 1]] * 2, tokenizer=tokenizer, n_answers=2, limit=256)
    normed = build_choice_inputs(contexts, choices, [[0, 1]] * 2, tokenizer=tokenizer, n_answers=2, limit=256,
                                 normalize=True)
    with torch.inference_mode():
        raw = torch.stack(choice_loglikelihoods(model, plain, device=CPU))
        scores = score_answers(model, normed, device=CPU)
    lengths = torch.tensor([[9.0, 22.0], [2.0, 15.0]], dtype=torch.float64)
    torch.testing.assert_close(scores, raw / lengths)


@pytest.mark.parametrize(("kind", "window"), [("qwen2", None), ("phi3", None), ("gpt_neox", None), ("opt", None),
                                              ("mistral", 16), ("gemma2", 4096), ("gemma2", 16)])
def test_shared_prompt_scores_hold_across_architectures(tokenizer: object, kind: str, window: int | None) -> None:
    """Other decoder families, including sliding-window attention shorter than an item (scored one pass per choice,
    since such a cache keeps only the window) and longer (the shared cache)."""
    import transformers

    common = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "max_position_embeddings": 256, "bos_token_id": 0, "eos_token_id": 0}
    configs = {
        "qwen2": lambda: transformers.Qwen2Config(**common, intermediate_size=64, num_key_value_heads=2),
        "phi3": lambda: transformers.Phi3Config(**common, intermediate_size=64, num_key_value_heads=2, pad_token_id=0),
        "gpt_neox": lambda: transformers.GPTNeoXConfig(**common, intermediate_size=64),
        "opt": lambda: transformers.OPTConfig(**common, ffn_dim=64, word_embed_proj_dim=32, pad_token_id=1),
        "mistral": lambda: transformers.MistralConfig(**common, intermediate_size=64, num_key_value_heads=2,
                                                      sliding_window=window),
        "gemma2": lambda: transformers.Gemma2Config(**common, intermediate_size=64, num_key_value_heads=2, head_dim=8,
                                                    sliding_window=window, pad_token_id=0),
    }
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(configs[kind]()).double().eval()
    inputs = _items(tokenizer, read_bbq(BBQ).head(4), limit=200)
    with torch.inference_mode():
        shared = choice_loglikelihoods(model, inputs, device=CPU)
        whole = naive_loglikelihoods(model, inputs, device=CPU)
    for a, b in zip(shared, whole):
        assert torch.isfinite(a).all()
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)


def _hand_entropies(model: torch.nn.Module, contexts: list[np.ndarray]) -> np.ndarray:
    """(items, layers x heads): per item, each head's attention entropy over causal keys computed directly from
    the eager attention probabilities: query i (i >= 1) sees keys 0..i, H_i / log(i + 1), mean over i >= 1."""
    out = []
    for context in contexts:
        with torch.inference_mode():
            attentions = model(input_ids=torch.as_tensor(context[None]), output_attentions=True).attentions
        row = []
        for layer in attentions:
            probs = layer[0].double()  # (heads, T, T), zero above the diagonal
            plogp = torch.where(probs > 0, probs * probs.clamp(min=1e-300).log(), torch.zeros_like(probs))
            visible = torch.arange(1, probs.shape[-1] + 1, dtype=torch.float64)
            entropy = -plogp.sum(-1)[:, 1:] / visible[1:].log()
            row.extend(entropy.mean(-1).tolist())
        out.append(row)
    return np.array(out)


def test_language_model_attention_entropy_equals_a_direct_computation(models: tuple[Path, Path], tokenizer: object,
                                                                      tmp_path: Path) -> None:
    """Attention for language models: each item's prompt, causal keys only, per layer x head; the JSON's per-head
    means (overall and per group) equal entropies computed by hand from eager attention maps; the token budget
    (--batch-size) changes nothing."""
    code, doc, err = _report(models, tmp_path, "--benchmark", "bbq", "--data", str(BBQ), "--limit", "24",
                             "--analyses", "benchmark,metrics,attention", "--precision", "float64")
    assert code in (0, 1), err
    frame = read_bbq(BBQ, limit=24)
    contexts = list(_items(tokenizer, frame).contexts)
    import transformers

    expected = {}
    for name, path in zip(("dense", "ticket"), models):
        model = transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").double().eval()
        expected[name] = _hand_entropies(model, contexts)
    section = doc["attention"]
    assert section["rows"] == 24 and len(section["heads"]) == 2 * 4
    for k, head in enumerate(section["heads"]):
        assert head["dense"] == pytest.approx(expected["dense"][:, k].mean(), abs=2e-6)
        assert head["ticket"] == pytest.approx(expected["ticket"][:, k].mean(), abs=2e-6)
    ambiguous = (frame.context_condition == "ambig").to_numpy()
    group = next(g for g in section["groups"] if g["group"] == "context_condition=ambig")
    for k, head in enumerate(group["heads"]):
        assert head["dense"] == pytest.approx(expected["dense"][ambiguous, k].mean(), abs=2e-6)
    (tmp_path / "b").mkdir()
    again = _report(models, tmp_path / "b", "--benchmark", "bbq", "--data", str(BBQ), "--limit", "24",
                    "--analyses", "benchmark,metrics,attention", "--precision", "float64", "--batch-size", "300")
    assert again[1]["attention"] == section


def _list_items(path: Path, *, rows: int = 48) -> pd.DataFrame:
    """Items whose choices are one list column with 2 to 4 choices each (as ARC's), labels within each list."""
    rng = np.random.default_rng(3)
    words = [" the nurse", " the doctor", " a teacher", " the old man", " nobody", " the young woman"]
    records = []
    for i in range(rows):
        count = int(rng.integers(2, 5))
        options = [str(w) for w in rng.choice(words, size=count, replace=False)]
        records.append({"question": f"Item {i}: who helped the child?", "options": options,
                        "right": int(rng.integers(0, count)), "group": "x" if i % 3 else "y"})
    frame = pd.DataFrame(records)
    frame.to_json(path, orient="records", lines=True)
    return frame


def test_a_list_column_of_choices_with_different_counts_equals_direct_scoring(models: tuple[Path, Path],
                                                                              tokenizer: object, tmp_path: Path) -> None:
    """--choices COL naming one list column: each item its own 2 to 4 choices; per-group accuracy of both models
    equals picking, by hand, the choice with the highest one-pass-per-choice log-likelihood."""
    frame = _list_items(tmp_path / "items.jsonl")
    code, doc, err = _report(models, tmp_path, "--task", "choice", "--data", str(tmp_path / "items.jsonl"),
                             "--prompt", "question", "--choices", "options", "--target", "right", "--sensitive",
                             "group", "--precision", "float64")
    assert code in (0, 1), err
    import transformers

    inputs = build_choice_inputs(frame.question.tolist(), frame.options.tolist(),
                                 [list(range(len(o))) for o in frame.options], tokenizer=tokenizer, n_answers=4,
                                 limit=256)
    for name, path in zip(("dense", "ticket"), models):
        model = transformers.AutoModelForCausalLM.from_pretrained(path).double().eval()
        with torch.inference_mode():
            picked = np.array([int(v.argmax()) for v in naive_loglikelihoods(model, inputs, device=CPU)])
        for group in ("x", "y"):
            rows = (frame.group == group).to_numpy()
            entry = next(g for g in doc["subgroups"] if g["group"] == f"group={group}")
            assert entry["metrics"]["accuracy"][name] == pytest.approx((picked == frame.right)[rows].mean())


@pytest.mark.parametrize(("change", "words"), [
    (lambda f: f.assign(right=[len(o) for o in f.options]), "not the index (0, 1, ...) of one of the item's own"),
    (lambda f: f.assign(options=[o[:1] for o in f.options]), "fewer than two choices"),
    (lambda f: f.assign(options="the nurse"), "must hold each item's list of choices"),
])
def test_a_bad_list_column_is_exit_2_naming_the_rows(models: tuple[Path, Path], tmp_path: Path, change: object,
                                                     words: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    frame = change(_list_items(data / "items.jsonl"))
    frame.to_json(data / "items.jsonl", orient="records", lines=True)
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = _report(models, out, "--task", "choice", "--data", str(data / "items.jsonl"), "--prompt",
                           "question", "--choices", "options", "--target", "right", "--sensitive", "group")
    assert code == 2 and words in err and "Traceback" not in err, err
    assert not list(out.iterdir())


def test_sentence_pairs_equal_direct_scoring_and_skip_attention(models: tuple[Path, Path], tokenizer: object,
                                                                tmp_path: Path) -> None:
    """--task pair: each sentence scored whole after BOS; without --target the label is 1 (prefer the second), so
    a group's accuracy is its share of pairs where the second sentence is the more likely; attention has no prompt
    to read and says so."""
    pairs = pd.DataFrame({"more": [f"The {w} man was bad at math." for w in ("old", "poor", "tall") * 16],
                          "less": [f"The {w} man was bad at math." for w in ("young", "rich", "short") * 16],
                          "type": ["age", "class", "height"] * 16})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    out = tmp_path / "out"
    out.mkdir()
    code, doc, err = _report(models, out, "--task", "pair", "--data", str(tmp_path / "pairs.csv"), "--choices",
                             "more,less", "--sensitive", "type", "--precision", "float64")
    assert code in (0, 1), err
    assert "attention" not in doc and "attention" not in doc["settings"]["analyses"]
    asked = _report(models, tmp_path, "--task", "pair", "--data", str(tmp_path / "pairs.csv"), "--choices",
                    "more,less", "--sensitive", "type", "--analyses", "metrics,attention")
    assert asked[0] == 2 and "pairs of whole sentences" in asked[2]
    import transformers

    inputs = build_choice_inputs([""] * len(pairs), pairs[["more", "less"]].values.tolist(), [[0, 1]] * len(pairs),
                                 tokenizer=tokenizer, n_answers=2, limit=256)  # in the file's order (no swapping)
    for name, path in zip(("dense", "ticket"), models):
        model = transformers.AutoModelForCausalLM.from_pretrained(path).double().eval()
        with torch.inference_mode():
            second = np.array([bool(v[1] > v[0]) for v in naive_loglikelihoods(model, inputs, device=CPU)])
        for kind in ("age", "class", "height"):
            entry = next(g for g in doc["subgroups"] if g["group"] == f"type={kind}")
            assert entry["metrics"]["accuracy"][name] == pytest.approx(second[(pairs.type == kind).to_numpy()].mean())


@pytest.mark.slow
def test_ray_engine_gives_the_local_report_on_benchmark_items(models: tuple[Path, Path]) -> None:
    """BBQ items go to Ray workers as a Parquet file of fixed row groups: 1 or 2 workers, the local report."""
    ray = pytest.importorskip("ray")
    import ticketaudit as ta

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

    def audit(**engine: object) -> str:
        result = ta.audit(dense=models[0], ticket=models[1], benchmark="bbq", data=BBQ, limit=150, seed=0, n_boot=200,
                          analyses="benchmark,metrics,disagreement,attention", **engine)
        return json.dumps(result.to_dict(), sort_keys=True)

    local = audit()
    assert '"bbq"' in local
    for workers in (1, 2):
        assert audit(engine="ray", num_workers=workers) == local, workers
