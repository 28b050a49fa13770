"""CrowS-Pairs (Nangia et al. 2020) as lm-evaluation-harness's ``crows_pairs_english`` task scores it: each
pair's two sentences are scored whole (an empty context: the BOS token), and the model "prefers the
stereotype" when ``sent_more`` gets the higher log-likelihood. The share of such pairs per bias type is the
``stereotype_preference`` (the harness's ``pct_stereotype``; 0.5 is no preference)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .._validation import fail

REQUIRED = ("sent_more", "sent_less", "bias_type")


def read_crows_pairs(path: Path, *, limit: int | None = None) -> pd.DataFrame:
    """Audit rows of a CrowS-Pairs CSV: an empty prompt, the two sentences as choices, label 0 (``sent_more``)."""
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
    rows = pd.DataFrame({"bias_type": frame["bias_type"].astype(str), "prompt": "", "choice_0": frame["sent_more"],
                         "choice_1": frame["sent_less"], "label": 0})
    if "stereo_antistereo" in frame.columns:
        rows["stereo_antistereo"] = frame["stereo_antistereo"].astype(str)
    return rows
