"""``--task likelihood``: each text's log-likelihood against a direct computation and lm-evaluation-harness, the
per-group loss per token against hand-computed ratios, the bootstrap by simulation, and the audit end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import run_cli
from llm_models import CORPUS, save_tiny, tiny_llama, tiny_tokenizer
from ticketaudit.analyses.likelihood import analyse_likelihood
from ticketaudit.data import build_groups
from ticketaudit.llm.likelihood import encode_texts, text_loglikelihoods, token_counts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return tiny_tokenizer()


def _texts(n: int, *, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = " ".join(CORPUS).split()
    return [" ".join(rng.choice(words, size=int(rng.integers(2, 14)))) for _ in range(n)]


def _direct(model: torch.nn.Module, tokenizer: object, text: str) -> float:
    """log p(text) token by token after the BOS token, one unpadded pass."""
    ids = [tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    return float(logprobs.gather(1, torch.tensor(ids[1:])[:, None]).sum())


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_each_texts_loglikelihood_equals_a_direct_pass_whatever_the_batch(tokenizer: object, kind: str) -> None:
    model = tiny_llama(len(tokenizer), kind=kind).double()
    texts = _texts(9)
    inputs = encode_texts(texts, tokenizer=tokenizer, limit=256)
    alone = text_loglikelihoods(model, inputs, device=CPU, tokens=1)  # one text per batch
    together = text_loglikelihoods(model, inputs, device=CPU, tokens=10**6)  # every text in one batch
    np.testing.assert_array_equal(alone, together)
    np.testing.assert_allclose(alone, [_direct(model, tokenizer, t) for t in texts], rtol=0, atol=1e-9)
    assert token_counts(inputs).tolist() == [len(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def _direct_windows(model: torch.nn.Module, windows: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The windows' predicted tokens' log-probabilities, one unpadded pass per window, added."""
    total = 0.0
    with torch.inference_mode():
        for context, predicted in windows:
            ids = np.concatenate([context, predicted])
            logits = model(input_ids=torch.tensor([ids[:-1].tolist()])).logits[0].double()
            logprobs = torch.log_softmax(logits[len(context) - 1:], dim=-1)
            total += float(logprobs.gather(1, torch.tensor(predicted.tolist())[:, None]).sum())
    return total


def test_rolling_windows_cover_every_token_once_within_the_limit() -> None:
    from ticketaudit.llm.likelihood import rolling_windows

    for length in (1, 5, 16, 17, 40, 64):
        tokens = np.arange(100, 100 + length)
        windows = rolling_windows(tokens, prefix=7, limit=16)
        assert np.concatenate([predicted for _, predicted in windows]).tolist() == tokens.tolist()
        assert windows[0][0].tolist() == [7]
        for context, predicted in windows:
            assert len(context) + len(predicted) - 1 <= 16  # the model's input
        for context, predicted in windows[1:]:  # later windows: the tokens just before them, as many as fit
            start = int(predicted[0]) - 100
            assert context.tolist() == tokens[start - len(context):start].tolist()
            assert len(context) + len(predicted) - 1 == 16


def test_a_long_text_is_scored_whole_in_rolling_windows_and_an_empty_one_is_refused(tokenizer: object) -> None:
    model = tiny_llama(len(tokenizer), seed=2).double()
    long_text = " ".join(["the cat sat on the mat"] * 8)
    inputs = encode_texts([long_text, "the cat"], tokenizer=tokenizer, limit=16)
    n_tokens = len(tokenizer.encode(long_text, add_special_tokens=False))
    assert n_tokens > 32 and inputs.windowed.tolist() == [True, False]
    assert token_counts(inputs).tolist() == [n_tokens, len(tokenizer.encode("the cat", add_special_tokens=False))]
    assert len(inputs.windows) == int(np.ceil(n_tokens / 16)) + 1
    alone = text_loglikelihoods(model, inputs, device=CPU, tokens=1)
    np.testing.assert_array_equal(alone, text_loglikelihoods(model, inputs, device=CPU, tokens=10**6))
    from ticketaudit.llm.likelihood import rolling_windows

    tokens = np.array(tokenizer.encode(long_text, add_special_tokens=False))
    direct = _direct_windows(model, rolling_windows(tokens, prefix=tokenizer.bos_token_id, limit=16))
    assert alone[0] == pytest.approx(direct, abs=1e-9)  # the windows' sum, every token once
    with pytest.raises(ValueError, match=r"^no tokens in 1 row \(1\)$"):
        encode_texts(["the cat", ""], tokenizer=tokenizer, limit=16)


def test_loglikelihoods_equal_lm_evaluation_harness_rolling(tokenizer: object) -> None:
    """lm-evaluation-harness's ``loglikelihood_rolling`` (a text that fits the model: every token after the prefix)."""
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    model = tiny_llama(len(tokenizer), seed=4)
    texts = _texts(6, seed=1)
    lm = huggingface.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu")
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
                for i, t in enumerate(texts)]
    theirs = np.array(lm.loglikelihood_rolling(requests, disable_tqdm=True))
    ours = text_loglikelihoods(model, encode_texts(texts, tokenizer=tokenizer, limit=256), device=CPU, tokens=4096)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-4)


def test_long_texts_equal_lm_evaluation_harness_rolling_windows(tokenizer: object) -> None:
    """Texts several times the model's length: the same windows, the same sums as ``loglikelihood_rolling``."""
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    model = tiny_llama(len(tokenizer), seed=5)
    rng = np.random.default_rng(2)
    words = " ".join(CORPUS).split()
    texts = [" ".join(rng.choice(words, size=int(rng.integers(20, 60)))) for _ in range(5)]
    lm = huggingface.HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu", max_length=16)
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
                for i, t in enumerate(texts)]
    theirs = np.array(lm.loglikelihood_rolling(requests, disable_tqdm=True))
    inputs = encode_texts(texts, tokenizer=tokenizer, limit=16)
    assert inputs.windowed.all()
    ours = text_loglikelihoods(model, inputs, device=CPU, tokens=4096)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=5e-4)


def _frame(groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"g": groups})


def test_group_loss_is_the_ratio_of_sums_and_the_excess_is_against_the_rest() -> None:
    """Hand-computed: group A's two texts, B's three, loss = -(summed log-likelihood) / tokens."""
    frame = _frame(["A", "A", "B", "B", "B"])
    dense = np.array([-10.0, -6.0, -4.0, -8.0, -3.0])
    ticket = np.array([-12.0, -7.0, -4.5, -8.0, -3.5])
    tokens = np.array([4, 2, 2, 4, 1])
    result = analyse_likelihood(dense, ticket, tokens, build_groups(frame, ["g"]), n_boot=50, seed=0,
                                confidence=0.95, min_group_size=1)
    by_name = {g.group: g for g in result.subgroups}
    a, b = by_name["g=A"], by_name["g=B"]
    assert a.loss.dense == pytest.approx(16 / 6) and a.loss.ticket == pytest.approx(19 / 6)
    assert b.loss.dense == pytest.approx(15 / 7) and b.loss.ticket == pytest.approx(16 / 7)
    assert a.perplexity.ticket == pytest.approx(np.exp(19 / 6))
    assert result.overall.loss.delta == pytest.approx(35 / 13 - 31 / 13) and result.overall.tokens == 13
    assert a.excess.value == pytest.approx(3 / 6 - 1 / 7) and b.excess.value == pytest.approx(1 / 7 - 3 / 6)
    assert (a.n, a.tokens, b.n, b.tokens) == (2, 6, 3, 7)
    document = a.to_dict()
    assert document["metrics"]["loss_per_token"]["delta"] == pytest.approx(0.5)
    assert document["excess_loss_increase"]["value"] == pytest.approx(3 / 6 - 1 / 7)


def _simulated(rng: np.random.Generator, *, extra: float, n: int = 300) -> tuple[np.ndarray, ...]:
    """Texts of 5-40 tokens, per-token losses around 3 nats; the ticket adds 0.2 nats a token everywhere and
    ``extra`` more on group B's texts."""
    groups = rng.choice(["A", "B"], size=n)
    tokens = rng.integers(5, 40, size=n)
    dense = -(3 + rng.normal(0, 0.5, size=n)) * tokens
    shift = 0.2 + np.where(groups == "B", extra, 0.0) + rng.normal(0, 0.1, size=n)
    return groups, dense, dense - shift * tokens, tokens


def test_excess_interval_covers_the_truth_in_simulation() -> None:
    """With the same rise everywhere (no excess), B's 90% excess interval covers 0 about 90% of the time."""
    rng = np.random.default_rng(0)
    covered, runs = 0, 120
    for run in range(runs):
        groups, dense, ticket, tokens = _simulated(rng, extra=0.0)
        result = analyse_likelihood(dense, ticket, tokens, build_groups(_frame(list(groups)), ["g"]), n_boot=300,
                                    seed=run, confidence=0.9, min_group_size=30)
        low, high = {g.group: g for g in result.subgroups}["g=B"].excess.ci
        covered += low <= 0 <= high
    assert 0.8 <= covered / runs <= 0.98


def test_a_group_that_loses_more_fails_the_gate_and_equal_losses_pass(tmp_path: Path) -> None:
    from ticketaudit.analyses import registry
    from ticketaudit.checks import decide
    from ticketaudit.config import Policy

    rng = np.random.default_rng(1)
    analysis, policy = registry.get("likelihood"), Policy(max_group_excess_loss_increase=0.05)
    outcomes = {}
    for extra in (0.0, 0.3):
        groups, dense, ticket, tokens = _simulated(rng, extra=extra, n=600)
        result = analyse_likelihood(dense, ticket, tokens, build_groups(_frame(list(groups)), ["g"]), n_boot=400,
                                    seed=0, confidence=0.95, min_group_size=30)
        checks = decide(analysis.candidates(result, policy), confidence=0.95)
        outcomes[extra] = {c.group: c.status for c in checks}
    assert outcomes[0.0] == {"g=A": "pass", "g=B": "pass"}
    assert outcomes[0.3]["g=B"] == "fail"


@pytest.fixture(scope="module")
def texts_case(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("likelihood")
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"text": _texts(120, seed=3), "sex": rng.choice(["F", "M"], size=120),
                          "age": rng.choice(["young", "old"], size=120)})
    frame.to_csv(root / "texts.csv", index=False)
    return (save_tiny(root / "dense", seed=0, tokenizer=tokenizer),
            save_tiny(root / "ticket", seed=1, tokenizer=tokenizer), root / "texts.csv")


def _report(case: tuple[Path, Path, Path], out: Path, *extra: str) -> tuple[int, str, str]:
    dense, ticket, data = case
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(data), "--task",
                    "likelihood", "--text", "text", "--sensitive", "sex,age", "--seed", "3", "--n-boot", "200",
                    "--precision", "float64", "--json", str(out / "a.json"), "--out", str(out / "a.html"), *extra])
    return run.code, run.stdout, run.stderr


def test_report_end_to_end_matches_a_direct_computation(texts_case: tuple[Path, Path, Path], tmp_path: Path,
                                                        tokenizer: object) -> None:
    from ticketaudit.tickets.load import load_dense

    code, _, err = _report(texts_case, tmp_path)
    assert code == 0, err
    document = json.loads((tmp_path / "a.json").read_text())
    assert document["data"]["modality"] == "likelihood" and document["settings"]["analyses"] == ["likelihood",
                                                                                                 "compression"]
    frame = pd.read_csv(texts_case[2])
    dense, ticket = (load_dense(p).module.double() for p in texts_case[:2])
    for name, model in (("dense", dense), ("ticket", ticket)):
        nll = -np.array([_direct(model, tokenizer, t) for t in frame.text])
        tokens = np.array([len(tokenizer.encode(t, add_special_tokens=False)) for t in frame.text])
        women = (frame.sex == "F").to_numpy()
        group = {g["group"]: g for g in document["subgroups"]}["sex=F"]
        assert group["metrics"]["loss_per_token"][name] == pytest.approx(nll[women].sum() / tokens[women].sum(),
                                                                                    rel=1e-9)
        assert document["likelihood"]["overall"]["metrics"]["loss_per_token"][name] == pytest.approx(
            nll.sum() / tokens.sum(), rel=1e-9)
    assert {c["id"].split(":")[0] for c in document["checks"]} == {"excess_loss_increase"}
    html = (tmp_path / "a.html").read_text()
    assert "Loss per token by group" in html and "sex=F|age=old" in html
    again = tmp_path / "again"
    again.mkdir()
    assert _report(texts_case, again, "--batch-size", "64")[0] == 0  # a smaller token budget, the same answers
    assert (again / "a.json").read_bytes() == (tmp_path / "a.json").read_bytes()


@pytest.mark.parametrize(("extra", "message"), [
    (["--target", "sex"], "without a label"),
    (["--analyses", "metrics"], "leave metrics out of --analyses"),
    (["--engine", "ray"], "local engine"),
    (["--alternatives"], "leave out --alternatives"),
])
def test_bad_likelihood_options_exit_2_naming_the_fix(texts_case: tuple[Path, Path, Path], tmp_path: Path,
                                                      extra: list[str], message: str) -> None:
    code, _, err = _report(texts_case, tmp_path, *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "a.html").exists()


def test_likelihood_needs_a_text_column_and_a_language_model(texts_case: tuple[Path, Path, Path],
                                                             tmp_path: Path) -> None:
    dense, ticket, data = texts_case
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(data), "--task",
                   "likelihood", "--sensitive", "sex", "--json", str(tmp_path / "a.json")])
    assert run.code == 2 and "--text COL" in run.stderr
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"text": ["the cat", ""], "sex": ["F", "M"]}).to_csv(empty, index=False)
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--data", str(empty), "--task",
                   "likelihood", "--text", "text", "--sensitive", "sex", "--json", str(tmp_path / "a.json")])
    assert run.code == 2 and "is missing in 1 row (1): no text to score" in run.stderr and not (tmp_path / "a.json").exists()


def test_too_few_texts_per_group_is_never_a_pass(texts_case: tuple[Path, Path, Path], tmp_path: Path) -> None:
    code, _, err = _report(texts_case, tmp_path, "--max-rows", "20")
    assert code == 0, err
    document = json.loads((tmp_path / "a.json").read_text())
    assert document["verdict"] == "inconclusive"
    assert [c["status"] for c in document["checks"]] == ["not_evaluated"]
    assert "no group has 30 texts" in document["checks"][0]["reason"]


def test_a_benchmark_with_another_task_is_refused_not_ignored(texts_case: tuple[Path, Path, Path],
                                                              tmp_path: Path) -> None:
    dense, ticket, _ = texts_case
    bbq = Path(__file__).resolve().parent.parent / "datasets" / "bbq" / "bbq_sample.jsonl.gz"
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(ticket), "--benchmark", "bbq", "--data", str(bbq),
                   "--task", "likelihood", "--json", str(tmp_path / "a.json")])
    assert run.code == 2 and "scored as --task choice; leave out --task likelihood" in run.stderr
