"""Chart geometry (numbers only); the templates draw the SVG so every label is autoescaped."""

from __future__ import annotations

import math
from typing import Any

WIDTH = 680
LABEL_WIDTH = 250
ROW_HEIGHT = 22
PLOT_WIDTH = WIDTH - LABEL_WIDTH - 30


def _nice_limit(values: list[float]) -> float:
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    limit = max(finite + [0.02])
    step = 0.01 if limit <= 0.1 else 0.05
    return math.ceil(limit / step) * step


def forest(rows: list[dict[str, Any]], *, title: str) -> dict[str, Any]:
    """Horizontal interval chart of paired deltas (ticket - dense) around zero."""
    limit = _nice_limit([v for r in rows for v in (r["delta"], r["low"], r["high"])])

    def x(value: float | None) -> float | None:
        if value is None or not math.isfinite(value):
            return None
        return round(LABEL_WIDTH + (max(-limit, min(limit, value)) + limit) / (2 * limit) * PLOT_WIDTH, 1)

    ticks = [-limit, -limit / 2, 0.0, limit / 2, limit]
    drawn = []
    for i, row in enumerate(rows):
        drawn.append({**row, "y": 30 + i * ROW_HEIGHT, "x": x(row["delta"]), "x_low": x(row["low"]),
                      "x_high": x(row["high"])})
    return {"title": title, "width": WIDTH, "height": 50 + len(rows) * ROW_HEIGHT, "rows": drawn,
            "zero": x(0.0), "label_width": LABEL_WIDTH, "plot_right": LABEL_WIDTH + PLOT_WIDTH,
            "ticks": [{"x": x(t), "label": f"{t * 100:+.0f}" if t else "0"} for t in ticks]}
