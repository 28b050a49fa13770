"""Words as the audit matches them: identity terms in texts and prompts, lower-cased."""

from __future__ import annotations

import re

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
"""A word for matching identity terms: letters and digits (apostrophes inside)."""


def words_of(value: str) -> list[str]:
    """The lower-cased words of ``value`` (for lexicons and for matching)."""
    return [w.lower() for w in WORD.findall(value)]
