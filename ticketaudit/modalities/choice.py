"""Causal language models on multiple-choice items: each row is an item (a prompt and its choices), the
model's "logits" are each answer's log-likelihood score, so every analysis reads it like a classifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .._validation import fail, rows_words
from ..llm.encode import build_choice_inputs, model_limit
from .base import Modality

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    import pandas as pd

    from ..images import ImageProcessor
    from ..llm.scoring import ChoiceInputs
    from ..tickets.load import LoadedModel


@dataclass(frozen=True)
class ChoiceTask:
    """Which columns make an item: the prompt (or a Jinja template over the row), the choices, and the answer
    each choice stands for (default: choice j is answer j); ``benchmark`` names the reader that built the rows."""

    prompt: str | None
    choices: tuple[str, ...]
    answers: tuple[str, ...] | None = None
    n_answers: int | None = None
    template: str | None = None
    benchmark: str | None = None
    choice_mode: str | None = None
    """BBQ's choices: ``harness`` (the two named answers and the harness's "unknown" phrasings) or ``original``."""
    score: str = "acc"
    """``acc``: the choice with the highest summed log-likelihood; ``acc_norm``: per character (the harness's)."""
    kind: str = "choice"
    """``choice`` (a prompt and its answers) or ``pair`` (two whole sentences, no prompt)."""
    list_column: bool = False
    """The one column of ``choices`` holds each item's list of choices (JSON array, Parquet list); items may have
    different numbers of choices, up to ``n_answers``."""

    @property
    def has_prompts(self) -> bool:
        """Whether items have a prompt to read (attention): pairs of whole sentences (``--task pair``,
        CrowS-Pairs) have none."""
        return self.kind != "pair" and self.benchmark != "crows-pairs"

    @property
    def answer_count(self) -> int:
        return self.n_answers if self.n_answers is not None else len(self.choices)


@dataclass(frozen=True)
class PromptItem:
    """What the attribution sample keeps of an item: its prompt, its choices with the answer each stands for, and the
    words naming the people it is about (BBQ: the words that tell its two named answers apart)."""

    prompt: str
    choices: tuple[str, ...]
    answers: tuple[int, ...]
    identity: tuple[str, ...]


@dataclass(frozen=True, eq=False, kw_only=True)
class ChoiceModality(Modality):
    """Items encoded as lm-evaluation-harness encodes log-likelihood requests (``llm.encode``)."""

    name: ClassVar[str] = "choice"
    attributable: ClassVar[bool] = True
    attribution_unit: ClassVar[str] = "word"
    has_prompts: ClassVar[bool] = True
    """Whether items have a prompt to read (attention; ``PairModality``: none)."""
    default_batch_size: ClassVar[int] = 4096
    """Tokens held in one choices' pass (each choice's copy of its prompt plus its own tokens)."""
    task: ChoiceTask
    tokenizer: Any
    limit: int

    @classmethod
    def build(cls, dense: LoadedModel, *, probe: pd.DataFrame, target: str, features: list[str] | None,
              text: str | None, image: str | None = None, processor: ImageProcessor | None = None,
              root: Path | None = None, truncation: str = "head", task: ChoiceTask | None = None) -> ChoiceModality:
        assert task is not None
        modality = cls(task=task, tokenizer=dense.tokenizer, limit=model_limit(dense.module.config))
        modality.inputs(probe)  # checks the columns and the tokenizer on the first item
        return modality

    @property
    def benchmark(self) -> str | None:
        return self.task.benchmark


    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(c for c in (self.task.prompt, *self.task.choices) if c is not None)

    def clipped(self, inputs: ChoiceInputs) -> Any:
        return inputs.truncated

    def prompts(self, frame: pd.DataFrame) -> list[str]:
        """Each row's prompt: its prompt column, or the template rendered with the row's columns (a pair: none)."""
        if self.task.kind == "pair":
            return [""] * len(frame)
        if self.task.template is None:
            return frame[str(self.task.prompt)].astype(str).tolist()
        from jinja2.sandbox import SandboxedEnvironment

        template = SandboxedEnvironment(keep_trailing_newline=True).from_string(self.task.template)
        return [template.render(**{str(k): v for k, v in row.items()}) for row in frame.to_dict("records")]

    def inputs(self, frame: pd.DataFrame) -> ChoiceInputs:
        from .._validation import check_columns

        task = self.task
        check_columns("choice", list(task.choices) + list(task.answers or ()) +
                      ([task.prompt] if task.template is None and task.prompt is not None else []),
                      list(frame.columns))
        choices = self._choices(frame)
        empty = [i for i, row in enumerate(choices) if any(not c.strip() for c in row)]
        if empty:
            fail(f"{rows_words(len(empty), empty)} of the data have an empty choice; every item needs every choice "
                 f"({', '.join(task.choices)}).")
        answers = self._answers(frame, choices)
        try:
            return build_choice_inputs(self.prompts(frame), choices, answers, tokenizer=self.tokenizer,
                                       n_answers=task.answer_count, limit=self.limit, normalize=task.score == "acc_norm")
        except ValueError as error:
            fail(f"an item cannot be scored: {error}.")

    def _choices(self, frame: pd.DataFrame) -> list[list[str]]:
        """Each item's choice texts: its list column's list, or its choice columns in order."""
        task = self.task
        return (choice_lists(frame[task.choices[0]], column=task.choices[0]) if task.list_column
                else frame[list(task.choices)].astype(str).to_numpy().tolist())

    def _answers(self, frame: pd.DataFrame, choices: list[list[str]]) -> list[list[int]]:
        """The answer each choice stands for: the answer columns, else choice j is answer j."""
        task = self.task
        return (frame[list(task.answers)].to_numpy(dtype="int64").tolist() if task.answers else
                [list(range(len(row))) for row in choices])

    @property
    def attribution_width(self) -> int:
        return 1

    def attribution_values(self, frame: pd.DataFrame, inputs: Any) -> np.ndarray:
        """Each item as a ``PromptItem``: its prompt is attributed again on its own, towards one of its choices."""
        import numpy as np

        from ..llm.bbq import bbq_identity_words

        task = self.task
        choices = self._choices(frame)
        answers = self._answers(frame, choices)
        identity = (bbq_identity_words(frame) if task.benchmark == "bbq" else [()] * len(frame))
        out = np.empty((len(frame), 1), dtype=object)
        for i, (prompt, row, answer, words) in enumerate(zip(self.prompts(frame), choices, answers, identity)):
            out[i, 0] = PromptItem(prompt, tuple(row), tuple(int(a) for a in answer), words)
        return out

    def provenance(self) -> dict[str, str]:
        out = {"scoring": "summed log-likelihood of each choice (lm-evaluation-harness's encoding); the prompt's "
                          "cache is computed once per item", "length limit": f"{self.limit} tokens (longer prompts "
                                                                             "keep their last tokens)"}
        if self.task.kind == "pair":
            out["task"] = ("pair: each sentence scored whole after the BOS token; the label is the index of the "
                           "sentence to prefer")
        if self.task.score == "acc_norm":
            out["scoring"] += "; acc_norm: each choice's log-likelihood divided by its length in characters"
        if self.task.benchmark:
            out["benchmark"] = self.task.benchmark + (f" (choices: {self.task.choice_mode})"
                                                      if self.task.choice_mode else "")
        return out


def choice_lists(values: Any, *, column: str) -> list[list[str]]:
    """Each item's choices from a list column: lists or arrays (JSONL, Parquet), or JSON arrays written as text
    (CSV). Anything else is refused, naming the first row."""
    import json

    import numpy as np

    out: list[list[str]] = []
    for row, value in enumerate(values):
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                fail(f"row {row} of choice column '{column}' is not a JSON list of choices: {value[:80]!r}.")
        if not isinstance(value, (list, tuple, np.ndarray)):
            fail(f"choice column '{column}' must hold each item's list of choices (a JSON array, or a Parquet list); "
                 f"row {row} holds {type(value).__name__} {str(value)[:60]!r}. Or name one column per choice: "
                 "--choices A,B,C.")
        out.append([str(v) for v in value])
    return out


@dataclass(frozen=True, eq=False, kw_only=True)
class PairModality(ChoiceModality):
    """Pairs of whole sentences (``--task pair``, CrowS-Pairs): each scored after the BOS token alone, so there is
    no prompt for attention to read."""

    has_prompts: ClassVar[bool] = False
    attributable: ClassVar[bool] = False
