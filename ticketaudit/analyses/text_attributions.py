"""Attributions on text: LayerIntegratedGradients on each model's token-embedding layer, token
attributions summed to words, and the share of attribution on identity terms.

Words become the units of the tabular comparison: each sampled row is a vector over the sample's
word vocabulary (lower-cased), so cosine, top-k overlap, per-word importance and the identity-term
share (the text counterpart of the sensitive-column share) are computed by the same summary as
columns; Spearman is taken over each row's own words only.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._validation import fail
from ..words import words_of
from ..inputs import encode_texts, text_limit
from .cost import BudgetedSample, RowCost, budgeted, row_cost
from .attributions import captum_class

STEP_TOKENS = 4096
"""Tokens (interpolation steps x rows x sequence length) per forward-and-backward pass: bounds memory on
long texts and large models (about 4 GB of activations for a BERT-base at 512 tokens). Fixed by the
sample's padded length, never by a speed setting, so it never changes an answer between runs."""
TEXT_BUDGET_SECONDS = 120.0
"""The default ``--attribution-budget``."""
MIN_BUDGET_ROWS = 50
"""The fewest rows the time budget leaves to attribute (fewer cannot say anything per group)."""


def default_lexicon(values: dict[str, Sequence[str]]) -> tuple[str, ...]:
    """Identity terms from the sensitive columns' values: each value's words (``Asian-Pac-Islander`` ->
    asian, pac, islander), without ``<missing>``, numbers and single letters."""
    terms: set[str] = set()
    for labels in values.values():
        for label in labels:
            terms |= {w for w in words_of(str(label)) if len(w) > 1 and not w.isdigit() and w != "missing"}
    return tuple(sorted(terms))


def within_budget(sample: Any, population: np.ndarray, *, dense: torch.nn.Module, modality: Any, settings: Any,
                  precision: str, seed: int) -> tuple[Any, BudgetedSample]:
    """The stratified sample cut to the rows that fit ``settings.budget_seconds``: the same rule on every
    stratum (an equal floor share, the rest by size) keeping each stratum's smallest row keys, so the cut
    sample is the one a smaller sample size would have drawn. The cost of a row is the first text's counted
    multiply-adds per token times the sample's mean length (``cost``): no timer, so no machine changes it."""
    from .attributions import cut_sample

    texts = [str(t) for t in sample.features[:, 0]]
    if not texts:
        return sample, BudgetedSample(rows=0, steps=settings.steps, seconds=0.0, floor_missed=False)
    truncation = getattr(modality, "truncation", "head")
    encoded, _ = encode_texts(modality.tokenizer, texts, limit=text_limit(modality.max_length), truncation=truncation)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.float64)
    probe = modality.inputs(pd.DataFrame({modality.column: texts[:1]}))
    per_token = row_cost(dense, probe)
    cost = RowCost({kind: macs / max(lengths[0], 1.0) * float(lengths.mean()) for kind, macs in per_token.macs.items()})
    plan = budgeted(cost, method=settings.method, steps=settings.steps, inputs=int(lengths.mean()),
                    precision=precision, budget_seconds=settings.budget_seconds, population=len(texts),
                    floor=MIN_BUDGET_ROWS)
    return cut_sample(sample, population, plan.rows, seed=seed), plan


@dataclass(frozen=True, eq=False, kw_only=True)
class WordAttributions:
    """Both models' attributions per word of every sampled row, on one word vocabulary."""

    vocabulary: tuple[str, ...]
    dense: np.ndarray
    """(rows, words): the sum of each word's token attributions (0 where the row lacks the word)."""
    ticket: np.ndarray
    present: np.ndarray
    """(rows, words): whether the row has the word."""
    segments: tuple[tuple[tuple[str, int], ...], ...]
    """Per row: its text as (piece, word index or -1) pieces, for highlighting."""
    convergence: dict[str, float]
    """Integrated Gradients' largest convergence delta per model (empty for the other methods)."""


def _forward(model: torch.nn.Module) -> Any:
    """A classifier's logits (two columns for a one-logit model), for Captum's ``target`` to pick a class."""
    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask).logits
        return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits

    return forward


def _explainer(model: torch.nn.Module, method: str, objective: Any = _forward) -> Any:
    """Captum's layer variant of ``method`` on the model's token-embedding layer."""
    import captum.attr

    layer = model.get_input_embeddings()
    if method in ("integrated-gradients", "layer-integrated-gradients"):
        return captum_class("layer-integrated-gradients")(objective(model), layer)
    return captum.attr.LayerGradientXActivation(objective(model), layer, multiply_by_inputs=method == "input-x-gradient")


def _attribute(module: torch.nn.Module, ids: np.ndarray, mask: np.ndarray, baseline: np.ndarray,
               targets: np.ndarray | None, *, method: str, steps: int, batch_size: int, device: torch.device,
               objective: Any = _forward, row_args: tuple[np.ndarray, ...] = (),
               step_tokens: int = STEP_TOKENS) -> tuple[np.ndarray, float | None]:
    """(rows, tokens) attributions on the token-embedding layer, summed over the embedding dimension;
    Integrated Gradients' largest convergence delta (None for the other methods). ``objective`` builds the
    model's forward (after ids and mask it takes ``row_args``, each sliced with the rows); ``targets``: the class
    each row explains (None: the forward gives one value per row)."""
    model = _explainable(module, device)
    explainer = _explainer(model, method, objective)
    integrated = method in ("integrated-gradients", "layer-integrated-gradients")
    parts, delta_max = [], 0.0
    for start in range(0, len(ids), batch_size):
        rows = slice(start, start + batch_size)
        x = torch.as_tensor(ids[rows], device=device)
        target = None if targets is None else torch.as_tensor(targets[rows], device=device)
        forward_args = tuple(torch.as_tensor(a[rows], device=device) for a in (mask, *row_args))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if integrated:
                out, delta = explainer.attribute(
                    x, baselines=torch.as_tensor(baseline[rows], device=device), target=target,
                    additional_forward_args=forward_args, n_steps=steps,
                    internal_batch_size=max(1, step_tokens // ids.shape[1]), return_convergence_delta=True)
                delta_max = max(delta_max, float(delta.detach().abs().max()))
            else:
                out = explainer.attribute(x, target=target, additional_forward_args=forward_args)
        parts.append(out.detach().sum(-1).to("cpu", torch.float64).numpy())
    return np.concatenate(parts), (delta_max if integrated else None)


def _explainable(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model to explain: itself when it is already in eval mode on ``device`` (Captum's hooks are removed after
    each call, so nothing of it changes; a language model is not copied), else an eval-mode copy on ``device``."""
    if not module.training and all(p.device == device for p in module.parameters()):
        return module
    return copy.deepcopy(module).to(device).eval()


def _encode(tokenizer: Any, texts: list[str], *, max_length: int | None, truncation: str) -> dict[str, Any]:
    """Token ids, masks, offsets and word ids of ``texts`` cut as the audit's own batches cut them, padded on the
    right whatever the tokenizer's padding_side (left padding would shift the real tokens' absolute positions, and
    a row would be explained as it is not scored)."""
    if not getattr(tokenizer, "is_fast", False):
        fail("attributions on text need a fast tokenizer (tokenizer.json) to map tokens back to words; save the "
             "model's tokenizer with tokenizer.save_pretrained(directory) from a fast tokenizer, or leave attributions "
             "out of --analyses.")
    encoded, _ = encode_texts(tokenizer, texts, limit=text_limit(max_length), truncation=truncation, word_ids=True,
                              return_attention_mask=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    width = max(len(ids) for ids in encoded["input_ids"])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    fill = {"input_ids": pad, "attention_mask": 0, "special_tokens_mask": 1, "offset_mapping": (0, 0),
            "word_ids": None, "token_type_ids": 0}
    return {key: [list(row) + [fill.get(key, 0)] * (width - len(row)) for row in rows] for key, rows in encoded.items()}


def attribute_words(dense: torch.nn.Module, ticket: torch.nn.Module, texts: list[str], targets: np.ndarray, *,
                    tokenizer: Any, max_length: int | None, method: str, steps: int, batch_size: int,
                    truncation: str = "head",
                    device: torch.device) -> WordAttributions:
    """Both models' word attributions on ``texts`` for ``targets`` (same rows, target, steps and baseline:
    every non-special token replaced by the padding token)."""
    encoded = _encode(tokenizer, texts, max_length=max_length, truncation=truncation)
    ids = np.asarray(encoded["input_ids"], dtype=np.int64)
    mask = np.asarray(encoded["attention_mask"], dtype=np.int64)
    special = np.asarray(encoded["special_tokens_mask"], dtype=bool)
    baseline = np.where(special, ids, baseline_token(tokenizer))
    token_attr, convergence = {}, {}
    for name, module in (("dense", dense), ("ticket", ticket)):
        token_attr[name], delta = _attribute(module, ids, mask, baseline, targets, method=method, steps=steps,
                                             batch_size=batch_size, device=device)
        if delta is not None:
            convergence[name] = delta
    spans = [_word_spans(text, encoded["word_ids"][i], encoded["offset_mapping"][i], special[i] | (mask[i] == 0))
             for i, text in enumerate(texts)]
    return words_from_tokens(texts, spans, token_attr, convergence)


def baseline_token(tokenizer: Any) -> int:
    """The token every attributed token is replaced by in the baseline: padding, else unknown, else id 0."""
    for token in (tokenizer.pad_token_id, getattr(tokenizer, "unk_token_id", None)):
        if token is not None:
            return int(token)
    return 0


def _word_spans(text: str, word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]],
                skipped: np.ndarray) -> dict[int, tuple[int, int, list[int]]]:
    """Per word of ``text``: its (start, end) characters without surrounding spaces, and its token positions
    (special, padding and whitespace-only tokens belong to no word)."""
    spans: dict[int, tuple[int, int, list[int]]] = {}
    for t, word in enumerate(word_ids):
        if word is None or skipped[t]:
            continue
        start, end = offsets[t]
        piece = text[start:end]
        if not piece.strip():
            continue
        start, end = start + len(piece) - len(piece.lstrip()), end - (len(piece) - len(piece.rstrip()))
        low, high, tokens = spans.get(word, (start, end, []))
        spans[word] = (min(low, start), max(high, end), [*tokens, t])
    return spans


def words_from_tokens(texts: list[str], spans: list[dict[int, tuple[int, int, list[int]]]],
                      token_attr: dict[str, np.ndarray], convergence: dict[str, float]) -> WordAttributions:
    """Token attributions summed to each row's words (``_word_spans``), on one lower-cased vocabulary."""
    vocabulary = tuple(sorted({text[start:end].lower() for text, row in zip(texts, spans)
                               for start, end, _ in row.values()}))
    position = {w: j for j, w in enumerate(vocabulary)}
    shape = (len(texts), len(vocabulary))
    matrices = {name: np.zeros(shape) for name in token_attr}
    present = np.zeros(shape, dtype=bool)
    segments = []
    for i, text in enumerate(texts):
        pieces, cursor = [], 0
        for start, end, tokens in sorted(spans[i].values(), key=lambda span: span[:2]):
            j = position[text[start:end].lower()]
            for name in matrices:
                matrices[name][i, j] += token_attr[name][i, tokens].sum()
            present[i, j] = True
            if start > cursor:
                pieces.append((text[cursor:start], -1))
            pieces.append((text[start:end], j))
            cursor = end
        if cursor < len(text):
            pieces.append((text[cursor:], -1))
        segments.append(tuple(pieces))
    return WordAttributions(vocabulary=vocabulary, dense=matrices["dense"], ticket=matrices["ticket"], present=present,
                            segments=tuple(segments), convergence=convergence)


def identity_columns(vocabulary: Sequence[str], terms: Sequence[str]) -> list[int]:
    """Vocabulary entries that are, or consist of, identity terms (``women's`` matches ``women``)."""
    lexicon = {t.lower() for t in terms}

    def possessive(word: str) -> str:
        return re.sub(r"['’]s$", "", word)

    def names_a_group(word: str) -> bool:
        parts = [possessive(w) for w in words_of(word)]
        return word in lexicon or possessive(word) in lexicon or bool(parts) and all(p in lexicon for p in parts)

    return [j for j, word in enumerate(vocabulary) if names_a_group(word)]


def row_spearman_present(a: np.ndarray, b: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row's attributions over its own words (NaN below 3 words)."""
    from scipy.stats import spearmanr

    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        keep = present[i]
        if keep.sum() >= 3 and np.ptp(a[i, keep]) > 0 and np.ptp(b[i, keep]) > 0:
            out[i] = float(spearmanr(a[i, keep], b[i, keep]).statistic)
    return out


MAX_WORDS = 50
"""Words listed with their importance (the most important first); every word counts in the comparisons."""
MAX_HIGHLIGHTED = 5
"""Rows shown as highlighted text in the report (those whose explanations differ most)."""
CHANGED_WORDS = 5
MIN_WORD_ROWS = 3
"""A word's change in a group is reported once it appears in this many of the group's sampled rows."""


def text_attributions_from_sample(inputs: Any, sample: Any, *, population: np.ndarray, dense: torch.nn.Module,
                                  ticket: torch.nn.Module, tokenizer: Any, max_length: int | None, settings: Any,
                                  batch_size: int, device: torch.device, truncation: str = "head") -> Any:
    """Attribute both models on the sampled texts and compare them word by word (see the module doc)."""
    texts = [str(t) for t in sample.features[:, 0]]
    words = attribute_words(dense, ticket, texts, sample.targets, tokenizer=tokenizer, max_length=max_length,
                            method=settings.method, steps=settings.steps, batch_size=batch_size, device=device,
                            truncation=truncation)
    terms = group_terms(inputs.groups, settings)
    identity = np.zeros(words.present.shape, dtype=bool)
    identity[:, identity_columns(words.vocabulary, terms)] = True
    return summarise_words(inputs, sample, words, identity=identity, terms=terms, population=population,
                           settings=settings, baseline="every word replaced by the padding token")


def group_terms(groups: Any, settings: Any) -> tuple[str, ...]:
    """Identity terms from the sensitive values' words and ``--identity-terms``."""
    return tuple(sorted({*default_lexicon(_column_values(groups)), *(t.lower() for t in settings.identity_terms)}))


def summarise_words(inputs: Any, sample: Any, words: WordAttributions, *, identity: np.ndarray, terms: Sequence[str],
                    population: np.ndarray, settings: Any, baseline: str) -> Any:
    """Word attributions compared as columns are (``attributions.summarise_attributions``); ``identity`` marks, per
    row, the words whose share of attribution is the reliance on identity terms."""
    from .attributions import _row_cosine, summarise_attributions

    raw = {"dense": words.dense, "ticket": words.ticket}
    nan = np.full(len(sample.rows), np.nan)
    per_row = {
        "cosine": _row_cosine(raw["dense"], raw["ticket"]),
        "spearman": row_spearman_present(raw["dense"], raw["ticket"], words.present),
        "sensitive_dense": _identity_share(np.abs(raw["dense"]), identity),
        "sensitive_ticket": _identity_share(np.abs(raw["ticket"]), identity),
        "proxy_dense": nan, "proxy_ticket": nan,
    }
    design = _design(sample.strata, population)
    found = identity & words.present
    extra = {
        "unit": "word",
        "identity_terms": list(terms),
        "identity_terms_found": [words.vocabulary[j] for j in np.flatnonzero(found.any(axis=0))],
        "highlighted": _highlighted(words, per_row["cosine"], sample.rows, sample.strata, inputs.groups),
        "changed_words": _changed_words(words, sample.strata, design, inputs.groups),
    }
    result = summarise_attributions(
        inputs, rows=sample.rows, strata=sample.strata, population=population, columns=words.vocabulary, raw=raw,
        per_row=per_row, settings=settings, sensitive=(), auto_proxies=(), convergence=words.convergence or None,
        baseline=baseline, extra={**extra, "words_total": len(words.vocabulary)})
    return dataclasses.replace(result, features=result.features[:MAX_WORDS])


def _identity_share(magnitude: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """Per row, the share of its attribution on its identity words (NaN for every row when no row has one)."""
    total = magnitude.sum(axis=1)
    if not identity.any():
        return np.full(len(total), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (magnitude * identity).sum(axis=1) / total, np.nan)


def _column_values(groups: Any) -> dict[str, list[str]]:
    """Each sensitive column's value labels, from the strata keys."""
    values: dict[str, list[str]] = {a: [] for a in groups.attributes}
    for key in groups.strata_values:
        for attribute, label in zip(groups.attributes, key):
            values[attribute].append(label)
    return values


def _sig(value: Any) -> float:
    """Six significant digits: the report's precision, whatever the scale of the model's logits."""
    return float(f"{float(value):.6g}")


def _design(strata: np.ndarray, population: np.ndarray) -> np.ndarray:
    sampled = np.bincount(strata, minlength=len(population))
    return population[strata] / sampled[strata]


def _highlighted(words: WordAttributions, cosine: np.ndarray, rows: np.ndarray, strata: np.ndarray,
                 groups: Any) -> list[dict[str, Any]]:
    """The rows whose explanations differ most (lowest cosine), as text pieces with each word's attributions."""
    out = []
    for i in np.lexsort((rows, np.nan_to_num(cosine, nan=2.0)))[:MAX_HIGHLIGHTED]:
        scale = float(max(np.abs(words.dense[i]).max(initial=0), np.abs(words.ticket[i]).max(initial=0)))
        pieces = [{"text": text, **({"dense": _sig(words.dense[i, j]),
                                     "ticket": _sig(words.ticket[i, j])} if j >= 0 else {})}
                  for text, j in words.segments[i]]
        out.append({"row": int(rows[i]), "group": groups.strata_names[strata[i]],
                    "cosine": None if not np.isfinite(cosine[i]) else round(float(cosine[i]), 6),
                    "scale": _sig(scale), "pieces": pieces})
    return out


def _changed_words(words: WordAttributions, strata: np.ndarray, design: np.ndarray,
                   groups: Any) -> list[dict[str, Any]]:
    """Per group: the words whose mean attribution (ticket - dense, over the group's rows that have them,
    design-weighted) changed most."""
    delta = words.ticket - words.dense
    out = []
    everyone = ("overall", tuple(range(len(groups.strata_names))))
    for name, group_strata in (everyone, *((g.name, g.strata) for g in groups.groups)):
        member = np.isin(strata, group_strata)
        present = words.present & member[:, None]
        counts = present.sum(0)
        weight = present * design[:, None]
        mass = weight.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = {model: (matrix * weight).sum(0) / mass for model, matrix in
                    (("dense", words.dense), ("ticket", words.ticket), ("delta", delta))}
        eligible = np.flatnonzero(counts >= MIN_WORD_ROWS)
        order = eligible[np.lexsort((eligible, -np.abs(mean["delta"][eligible])))][:CHANGED_WORDS]
        out.append({"group": name, "words": [
            {"word": words.vocabulary[j], "rows": int(counts[j]), "dense": _sig(mean["dense"][j]),
             "ticket": _sig(mean["ticket"][j]), "delta": _sig(mean["delta"][j])}
            for j in order]})
    return out
