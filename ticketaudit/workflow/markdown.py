"""A pull-request summary in GitHub-flavoured Markdown: verdict, the failed and inconclusive checks in
plain words, and a per-group table, kept under GitHub's 65,536-character comment limit (groups that do
not fit are counted, worst first kept). Link-free, and every user-given name is escaped."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..report.formats import interval_points, percent, points, visible_controls
from .reports import as_document, check_sentence, count_words, gate_line, total_checks

LIMIT = 65_000
"""Characters at most: GitHub refuses comments and step summaries over 65,536."""

_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
_LINKABLE = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.\-]*://|\bwww\.|\b(?:mailto|xmpp):)\S+|[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
"""What GitHub would turn into a link: URLs with a scheme, ``www.`` names and e-mail addresses."""


def escape(text: object) -> str:
    """User text as literal Markdown: no formatting, links (URLs and addresses go in code spans, which GitHub never
    links), HTML, table breaks or bidirectional controls."""
    flat = " ".join(visible_controls(str(text)).split())
    pieces, last = [], 0
    for match in _LINKABLE.finditer(flat):
        pieces += [_literal(flat[last:match.start()]), _code(match.group())]
        last = match.end()
    return "".join([*pieces, _literal(flat[last:])])


def _literal(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text.replace("&", "&amp;").replace("<", "&lt;"))


def _code(text: str) -> str:
    """A code span holding ``text`` as it is (its fence longer than any backtick run inside; pipes escaped, as GFM
    tables need even in code)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _headline(document: Mapping[str, Any]) -> list[str]:
    models = document["models"]
    lines = [f"## ticketaudit: {document['verdict'].upper()}", "", f"**{gate_line(document).capitalize()}.**", "",
             f"{count_words(document).replace(', ', ' · ')} of {total_checks(document):,} "
             f"policy checks, on {document['data']['rows']:,} rows; ticket sparsity "
             f"{models['ticket']['sparsity'] * 100:.1f}% (dense {models['dense']['sparsity'] * 100:.1f}%)."]
    overall = document.get("performance", {}).get("overall", {}).get("metrics", {}).get("accuracy")
    if overall:
        confidence = document.get("policy", {}).get("confidence", 0.95)
        lines += ["", f"Overall accuracy {percent(overall['dense'])} → {percent(overall['ticket'])} "
                      f"({points(overall['delta'], unit=False)} pts, {confidence:.0%} interval {interval_points(overall['ci'])} pts)."]
    return lines


def _group_row(group: Mapping[str, Any], metrics: list[str]) -> str:
    cells = [escape(group["group"]), f"{group['n']:,}"]
    accuracy = group["metrics"].get("accuracy", {})
    cells += [percent(accuracy.get("dense")), percent(accuracy.get("ticket"))]
    for metric in metrics:
        estimate = group["metrics"].get(metric, {})
        cells.append(f"{points(estimate.get('delta'), unit=False)} {interval_points(estimate.get('ci'))}")
    cells.append(group.get("status", "—") + (" (too small)" if group.get("insufficient") else ""))
    return "| " + " | ".join(cells) + " |"


def _worst_first(group: Mapping[str, Any]) -> tuple[int, float]:
    rank = {"fail": 0, "inconclusive": 1}.get(group.get("status", ""), 2)
    delta = group["metrics"].get("accuracy", {}).get("delta")
    return rank, delta if delta is not None and math.isfinite(delta) else 0.0


def render_markdown(report: Any, *, limit: int = LIMIT) -> str:
    """The summary of an audit (result, JSON document or report.json path), at most ``limit`` characters."""
    document = as_document(report)
    footer = ["", "_Full report: the HTML and JSON written by this run._", ""]
    lines = _headline(document)
    budget = limit - len("\n".join(footer)) - 200  # room for the "N more" lines
    for status, title in (("fail", "Failed checks"), ("inconclusive", "Inconclusive checks (too few rows to tell)"),
                          ("not_evaluated", "Policy gates not evaluated")):
        checks = [c for c in document["checks"] if c["status"] == status]
        if checks:
            lines += ["", f"### {title}", ""]
            lines += _fitting([f"- {check_sentence(c, quote=escape)}" for c in checks], lines, budget // 2, "checks")
    metrics = [m for m in ("accuracy", "tpr", "fpr") if any(m in g["metrics"] for g in document["subgroups"])]
    header = ["", "### Per group (ticket − dense, pts, with interval)", "",
              "| Group | Rows | Accuracy dense | Accuracy ticket | " + " | ".join(f"Δ {m.upper() if m != 'accuracy' else m}"
                                                                          for m in metrics) + " | Status |",
              "|" + "---|" * (5 + len(metrics))]
    rows = [_group_row(g, metrics) for g in sorted(document["subgroups"], key=_worst_first)]
    if rows:
        lines += header + _fitting(rows, lines + header, budget, "groups")
    text = "\n".join(lines + footer)
    return text if len(text) <= limit else text[: limit - 2] + "…\n"


def _fitting(items: list[str], before: list[str], budget: int, what: str) -> list[str]:
    """As many of ``items`` as fit in ``budget`` characters after ``before``; the rest counted."""
    used = sum(len(line) + 1 for line in before)
    kept: list[str] = []
    for item in items:
        if used + len(item) + 1 > budget:
            kept.append(f"\n… and {len(items) - len(kept):,} more {what} (listed in the HTML and JSON reports).")
            break
        kept.append(item)
        used += len(item) + 1
    return kept
