"""CrowS-Pairs (Nangia et al. 2020) as lm-evaluation-harness's ``crows_pairs_english`` task scores it: each
pair's two sentences are scored whole (an empty context: the BOS token), and the model "prefers the
stereotype" when ``sent_more`` gets the higher log-likelihood. The share of such pairs per bias type is the
``stereotype_preference`` (the harness's ``pct_stereotype``; 0.5 is no preference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import fail

REQUIRED = ("sent_more", "sent_less", "bias_type")


def read_crows_pairs(path: Path, *, limit: int | None = None) -> pd.DataFrame:
    """Audit rows of a CrowS-Pairs CSV: an empty prompt, the two sentences as choices (in alternating order), and as
    the label the index of ``sent_less``: a row is "right" when the model prefers the less stereotyping sentence, so
    the audit's accuracy is 1 - stereotype preference and its drop is a harm, as for every other task."""
    if not path.is_file():
        fail(f"CrowS-Pairs data '{path}' does not exist; give the release's crows_pairs_anonymized.csv.")
    try:
        frame = pd.read_csv(path, nrows=limit, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        fail(f"CrowS-Pairs file '{path}' is not a readable CSV ({str(error).splitlines()[0]}).")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        fail(f"CrowS-Pairs file '{path}' lacks the column(s) {', '.join(missing)}; is it the release's "
             "crows_pairs_anonymized.csv (sent_more, sent_less, stereo_antistereo, bias_type)?")
    empty = frame.index[(frame["sent_more"].str.strip() == "") | (frame["sent_less"].str.strip() == "")]
    if len(empty):
        fail(f"CrowS-Pairs file '{path}' row {int(empty[0]) + 2} has an empty sentence; every pair needs both.")
    if frame.empty:
        fail(f"CrowS-Pairs file '{path}' holds no pairs.")
    swap = (pd.RangeIndex(len(frame)) % 2 == 1)  # choice order alternates: both classes occur, scores do not change
    more, less = frame["sent_more"].to_numpy(), frame["sent_less"].to_numpy()
    rows = pd.DataFrame({"bias_type": frame["bias_type"].astype(str).to_numpy(), "prompt": "",
                         "choice_0": np.where(swap, less, more), "choice_1": np.where(swap, more, less),
                         "label": np.where(swap, 0, 1)})
    if "stereo_antistereo" in frame.columns:
        rows["stereo_antistereo"] = frame["stereo_antistereo"].astype(str).to_numpy()
    return rows
