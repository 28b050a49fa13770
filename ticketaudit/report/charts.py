"""Chart geometry (numbers only); the templates draw the SVG so every label is autoescaped."""

from __future__ import annotations

import math
from typing import Any

WIDTH = 760
LABEL_WIDTH = 300
NICE_LIMITS = (0.02, 0.04, 0.06, 0.1, 0.2, 0.4, 0.6, 1.0)
ROW_HEIGHT = 22
PLOT_WIDTH = WIDTH - LABEL_WIDTH - 30


def _nice_limit(values: list[float]) -> float:
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    largest = max(finite + [0.0])
    return next((limit for limit in NICE_LIMITS if largest <= limit), NICE_LIMITS[-1])


def forest(rows: list[dict[str, Any]], *, title: str, harm: str) -> dict[str, Any]:
    """Horizontal interval chart of paired deltas (ticket - dense) around zero.

    ``harm`` is "decrease" (accuracy, TPR) or "increase" (FPR): a row is marked significantly
    worse when its whole interval lies on the harmful side of zero.
    """
    limit = _nice_limit([v for r in rows for v in (r["delta"], r["low"], r["high"])])

    def x(value: float | None) -> float | None:
        if value is None or not math.isfinite(value):
            return None
        return round(LABEL_WIDTH + (max(-limit, min(limit, value)) + limit) / (2 * limit) * PLOT_WIDTH, 1)

    ticks = [-limit, -limit / 2, 0.0, limit / 2, limit]
    drawn = []
    for i, row in enumerate(rows):
        low, high = row["low"], row["high"]
        worse = (high is not None and high < 0) if harm == "decrease" else (low is not None and low > 0)
        drawn.append({**row, "y": 30 + i * ROW_HEIGHT, "x": x(row["delta"]), "x_low": x(low), "x_high": x(high),
                      "worse": bool(worse and not row["insufficient"])})
    return {"title": title, "width": WIDTH, "height": 50 + len(rows) * ROW_HEIGHT, "rows": drawn,
            "zero": x(0.0), "label_width": LABEL_WIDTH, "plot_right": LABEL_WIDTH + PLOT_WIDTH,
            "ticks": [{"x": x(t), "label": f"{t * 100:+g}" if t else "0"} for t in ticks]}


def paired_bars(features: list[dict[str, Any]], *, limit: int = 12) -> dict[str, Any]:
    """Horizontal paired bars (dense, ticket) of mean |attribution| for the top features."""
    shown = features[:limit]
    largest = max([f["dense"] or 0.0 for f in shown] + [f["ticket"] or 0.0 for f in shown] + [1e-12])
    bar = 9

    def width(value: float | None) -> float:
        return round((value or 0.0) / largest * PLOT_WIDTH * 0.8, 1)  # room for the value labels

    rows = []
    for i, f in enumerate(shown):
        y = 24 + i * (2 * bar + 8)
        rows.append({"label": f["feature"], "y": y, "dense": f["dense"], "ticket": f["ticket"],
                     "dense_width": width(f["dense"]), "ticket_width": width(f["ticket"])})
    return {"width": WIDTH, "height": 34 + len(shown) * (2 * bar + 8), "rows": rows, "bar": bar,
            "label_width": LABEL_WIDTH}
