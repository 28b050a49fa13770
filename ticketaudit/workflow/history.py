"""Audits of successive tickets or releases side by side (``ticketaudit history``): one offline HTML page
with each audit's verdict and headline numbers, and per group the trend of its deltas (ticket − dense)
with their intervals, every chart on the same scale."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import InvalidInputError
from .reports import total_checks, counts, load_report

TREND_METRICS = (("accuracy", "Accuracy"), ("tpr", "True-positive rate"), ("fpr", "False-positive rate"))


def _natural(path: Path) -> list[object]:
    """``v2`` before ``v10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def report_files(sources: Sequence[str | Path]) -> list[Path]:
    """The report files of ``DIR`` (its ``*.json``, in natural name order) or of the files, as given."""
    if not sources:
        raise InvalidInputError("give a directory of report JSON files, or two or more report files, oldest first.")
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(source.glob("*.json"), key=_natural)
            if not found:
                raise InvalidInputError(f"directory '{source}' holds no .json report; write them with "
                                        "ticketaudit report --json.")
            files += found
        else:
            files.append(source)
    return files


def _labels(files: Sequence[Path]) -> list[str]:
    """Each file's name without .json; with its folder where names repeat (``v1/report``, ``v2/report``)."""
    stems = [f.stem for f in files]
    return [f"{f.parent.name}/{f.stem}" if stems.count(f.stem) > 1 else f.stem for f in files]


def load_history(sources: Sequence[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    """(label, validated document) per audit, in the order given."""
    files = report_files(sources)
    return list(zip(_labels(files), (load_report(f) for f in files)))


def history_context(audits: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """What the page shows, read from the documents: a row per audit and a trend per group and metric."""
    from ..report import charts

    releases = []
    for label, document in audits:
        overall = document.get("performance", {}).get("overall", {}).get("metrics", {}).get("accuracy", {})
        releases.append({"label": label, "created": document.get("created"), "verdict": document["verdict"],
                         "counts": counts(document), "checks": total_checks(document),
                         "sparsity": document["models"]["ticket"]["sparsity"], "rows": document["data"]["rows"],
                         "dense": overall.get("dense"), "ticket": overall.get("ticket"), "delta": overall.get("delta"),
                         "ci": overall.get("ci"), "tool_version": document["tool_version"],
                         "ticket_sha256": document["models"]["ticket"]["sha256"]})
    groups: dict[str, None] = {}
    for _, document in audits:
        groups.update(dict.fromkeys(g["group"] for g in document["subgroups"]))
    metrics = []
    for metric, title in TREND_METRICS:
        series = {}
        for group in groups:
            points = []
            for label, document in audits:
                found = next((g for g in document["subgroups"] if g["group"] == group), None)
                estimate = (found or {}).get("metrics", {}).get(metric, {})
                ci = estimate.get("ci") or [None, None]
                points.append({"label": label, "delta": estimate.get("delta"), "low": ci[0], "high": ci[1],
                               "n": (found or {}).get("n"), "status": (found or {}).get("status")})
            if any(p["delta"] is not None for p in points):
                series[group] = points
        if series:
            limit = charts.trend_limit([v for pts in series.values() for p in pts for v in (p["delta"], p["low"], p["high"])])
            metrics.append({"name": metric, "title": title,
                            "groups": [{"group": g, "points": pts, "chart": charts.trend(pts, limit=limit)}
                                       for g, pts in series.items()]})
    return {"releases": releases, "metrics": metrics}


def render_history(audits: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The self-contained HTML page (same offline rules and CSP as the report)."""
    from ..report.render import render_page

    return render_page("history.html.j2", **history_context(audits))
