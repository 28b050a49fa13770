"""What a language-model audit scores: ``--benchmark`` (BBQ, CrowS-Pairs) fills the task, target and groups
from the benchmark's own fields; ``--task choice`` takes them from the user's columns."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._validation import fail
from ..modalities.choice import ChoiceTask
from .bbq import UNKNOWN_RESPONSES, read_bbq
from .crows import read_crows_pairs

BENCHMARKS = ("bbq", "crows-pairs")
TASKS = ("choice", "pair", "likelihood")
PAIR_LABEL = "pair_label"
"""The label ``--task pair`` adds when no --target is given: 1, the second sentence (the one to prefer)."""
SCORES = ("acc", "acc_norm")
BENCHMARK_GROUPS = {"bbq": ("category", "context_condition"), "crows-pairs": ("bias_type",)}


def resolve_task(*, task: str | None, benchmark: str | None, prompt: str | None, choices: Sequence[str] | None,
                 prompt_template: str | Path | None, bbq_choices: str, target: str | None,
                 sensitive: Sequence[str], score: str = "acc") -> tuple[ChoiceTask | None, str | None, tuple[str, ...]]:
    """The items' task with the target and sensitive columns (a benchmark's own unless the user named others)."""
    if score not in SCORES:
        fail(f"--choice-score must be one of {', '.join(SCORES)}; got {score!r}.")
    if benchmark is not None:
        if benchmark not in BENCHMARKS:
            fail(f"--benchmark must be one of {', '.join(BENCHMARKS)}; got {benchmark!r}.")
        if prompt is not None or choices or prompt_template is not None:
            fail("--benchmark fills --prompt, --choices and the template from the benchmark; leave them out.")
        own = "pair" if benchmark == "crows-pairs" else "choice"
        if task is not None and task != own:
            fail(f"--benchmark {benchmark} is scored as --task {own}; leave out --task {task} (--task likelihood "
                 "scores your own texts: --data FILE --text COL --sensitive COL).")
        count = 2 if benchmark == "crows-pairs" else (2 + len(UNKNOWN_RESPONSES) if bbq_choices == "harness" else 3)
        columns = tuple(f"choice_{j}" for j in range(count))
        answers = tuple(f"answer_{j}" for j in range(count)) if benchmark == "bbq" else None
        made = ChoiceTask(prompt="prompt", choices=columns, answers=answers, n_answers=3 if benchmark == "bbq" else 2,
                          benchmark=benchmark, choice_mode=bbq_choices if benchmark == "bbq" else None, score=score)
        return made, target or "label", tuple(sensitive) or BENCHMARK_GROUPS[benchmark]
    if task is None:
        if prompt is not None or choices or prompt_template is not None or score != "acc":
            fail("--prompt, --choices, --prompt-template and --choice-score belong to --task choice; add it.")
        return None, target, tuple(sensitive)
    if task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}; got {task!r}.")
    if task == "likelihood":
        return _likelihood_task(choices=choices, prompt=prompt, prompt_template=prompt_template, target=target,
                                sensitive=sensitive, score=score)
    if task == "pair":
        return _pair_task(choices=choices, prompt=prompt, prompt_template=prompt_template, target=target,
                          sensitive=sensitive, score=score)
    if not choices:
        fail("--task choice needs the choices: --choices COL,COL[,...] (one column per choice), or --choices COL "
             "(one column holding each item's list of choices).")
    if (prompt is None) == (prompt_template is None):
        fail("--task choice needs the prompt: --prompt COL, or --prompt-template FILE.jinja (not both).")
    template = None
    if prompt_template is not None:
        path = Path(prompt_template)
        if not path.is_file():
            fail(f"--prompt-template '{path}' does not exist; give a Jinja file that renders one item's prompt.")
        template = path.read_text(encoding="utf-8")
    if target is None or not sensitive:
        fail("--task choice needs --target COL (the index of the right choice) and --sensitive COL[,COL...].")
    return (ChoiceTask(prompt=prompt, choices=tuple(choices), template=template, score=score), target,
            tuple(sensitive))


def _likelihood_task(*, choices: Sequence[str] | None, prompt: str | None, prompt_template: str | Path | None,
                     target: str | None, sensitive: Sequence[str], score: str) -> tuple[ChoiceTask, str, tuple[str, ...]]:
    """``--task likelihood``: each row's text (``--text COL``) scored whole; no label, no choices."""
    if choices or prompt is not None or prompt_template is not None or target is not None or score != "acc":
        fail("--task likelihood scores each text of --text COL whole, without a label: leave out --target, --prompt, "
             "--prompt-template, --choices and --choice-score.")
    if not sensitive:
        fail("--task likelihood needs the group columns: --sensitive COL[,COL...].")
    return ChoiceTask(prompt=None, choices=(), kind="likelihood"), "", tuple(sensitive)


def _pair_task(*, choices: Sequence[str] | None, prompt: str | None, prompt_template: str | Path | None,
               target: str | None, sensitive: Sequence[str], score: str) -> tuple[ChoiceTask, str, tuple[str, ...]]:
    """``--task pair``: two whole sentences per row, scored as CrowS-Pairs is (no prompt: each sentence after the
    BOS token); the label is the index of the sentence to prefer (default 1: put the stereotyping one first)."""
    if not choices or len(choices) != 2:
        fail("--task pair needs the two sentence columns: --choices STEREOTYPING,OTHER (the model should not "
             "prefer the first).")
    if prompt is not None or prompt_template is not None:
        fail("--task pair scores each sentence whole; leave out --prompt and --prompt-template (use --task choice "
             "for a prompt and its answers).")
    if not sensitive:
        fail("--task pair needs the group columns: --sensitive COL[,COL...].")
    return (ChoiceTask(prompt=None, choices=tuple(choices), score=score, kind="pair"), target or PAIR_LABEL,
            tuple(sensitive))


def with_pair_label(task: ChoiceTask, items: Any, *, target: str) -> Any:
    """``--task pair``: the label (without --target: 1, the second sentence is the one to prefer), and, as the
    CrowS-Pairs reader does, the two sentences swapped on every other row (label flipped): a sentence's score does
    not depend on its place, and both classes are then present, as every rate needs."""
    if task.kind != "pair":
        return items
    if not isinstance(items, pd.DataFrame):
        fail("--task pair needs the pairs in one JSONL, CSV or Parquet file or a DataFrame.")
    if target == PAIR_LABEL and PAIR_LABEL in items.columns:
        fail(f"the data already has a column '{PAIR_LABEL}'; name it with --target {PAIR_LABEL} if it is the label.")
    first, second = task.choices
    out = items.copy() if target != PAIR_LABEL else items.assign(**{PAIR_LABEL: 1})
    labels = pd.to_numeric(out[target], errors="coerce")
    if not labels.isin([0, 1]).all():
        fail(f"--task pair: the label column '{target}' must hold 0 or 1 (the index of the sentence to prefer).")
    odd = np.arange(len(out)) % 2 == 1
    out.loc[odd, [first, second]] = out.loc[odd, [second, first]].to_numpy()
    out[target] = np.where(odd, 1 - labels.to_numpy(dtype=np.int64), labels.to_numpy(dtype=np.int64))
    return out


def read_items(task: ChoiceTask, data: Any, *, limit: int | None) -> Any:
    """The audit rows: a benchmark's file read by its reader, a JSONL, CSV or Parquet file of items read whole
    (item sets are small; a list column's longest list must be known before scoring), or the data as given."""
    if task.benchmark == "bbq":
        return read_bbq(Path(data), choices=task.choice_mode or "harness", limit=limit)
    if task.benchmark == "crows-pairs":
        return read_crows_pairs(Path(data), limit=limit)
    if not isinstance(data, (str, Path)) or not Path(data).is_file():
        return data
    if not str(data).lower().endswith(ITEM_SUFFIXES):
        return data
    return read_item_file(Path(data), limit=limit, what=f"'{data}'")


ITEM_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet")
"""Files of items read whole (a language model's items; calibration items)."""


def read_item_file(path: Path, *, limit: int | None = None, what: str) -> pd.DataFrame:
    """A JSONL, CSV or Parquet file of items as a frame (at most ``limit`` rows), or exit 2 naming ``what``."""
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            return pd.read_json(path, lines=True, nrows=limit, dtype=False)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, nrows=limit)
        frame = pd.read_parquet(path)
        return frame.iloc[:limit] if limit is not None else frame
    except (ValueError, OSError, ImportError) as error:
        fail(f"{what} is not a readable file of items ({str(error).splitlines()[0]}).")


def with_choice_count(task: ChoiceTask, items: Any, *, target: str) -> ChoiceTask:
    """With one choice column, that column holds each item's list of choices: every item needs two or more and a
    label within its own list; the task's answer count is the longest list."""
    if task.benchmark is not None or len(task.choices) != 1:
        if task.benchmark is None and len(task.choices) < 2:
            fail("--task choice needs two or more choices per item.")
        return task
    if not isinstance(items, pd.DataFrame):
        fail(f"--choices {task.choices[0]} (a list column) needs the items in one JSONL, CSV or Parquet file or a "
             "DataFrame; or name one column per choice: --choices A,B,C.")
    from .._validation import check_columns, rows_words
    from ..modalities.choice import choice_lists

    check_columns("choice", [task.choices[0], target], list(items.columns))
    counts = np.array([len(row) for row in choice_lists(items[task.choices[0]], column=task.choices[0])])
    few = np.flatnonzero(counts < 2)
    if len(few):
        fail(f"{rows_words(len(few), few.tolist())} of the data have fewer than two choices in '{task.choices[0]}'.")
    labels = pd.to_numeric(items[target], errors="coerce").to_numpy(dtype=float)
    outside = np.flatnonzero(~((labels >= 0) & (labels < counts) & (labels == np.floor(labels))))
    if len(outside):
        fail(f"{rows_words(len(outside), outside.tolist())} of the data have a label in '{target}' that is not the "
             f"index (0, 1, ...) of one of the item's own choices in '{task.choices[0]}'.")
    return dataclasses.replace(task, list_column=True, n_answers=int(counts.max()))
