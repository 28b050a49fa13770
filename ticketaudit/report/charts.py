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


SEQUENTIAL = ((247, 251, 255), (8, 48, 107))
DIVERGING = ((33, 102, 172), (247, 247, 247), (178, 24, 43))
CELL = 48
HEATMAP_LEFT = 90


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def colour(value: float | None, *, low: float, high: float, diverging: bool) -> str:
    """Fill for a value: light-to-dark blue on [low, high], or blue-white-red around 0 when diverging."""
    if value is None or not math.isfinite(value):
        return "#ffffff"
    t = min(1.0, max(0.0, (value - low) / (high - low))) if high > low else 0.5
    if not diverging:
        return _mix(*SEQUENTIAL, t)
    return _mix(DIVERGING[0], DIVERGING[1], t * 2) if t < 0.5 else _mix(DIVERGING[1], DIVERGING[2], t * 2 - 1)


def heatmap(heads: list[dict[str, Any]], key: str, *, title: str, diverging: bool) -> dict[str, Any]:
    """Layers (rows) x heads (columns) grid of ``key``; pruned heads are drawn hatched, with no value."""
    layers = 1 + max(h["layer"] for h in heads)
    columns = 1 + max(h["head"] for h in heads)
    values = [h[key] for h in heads if h[key] is not None]
    if diverging:
        limit = _nice_limit(values) if values else 0.02
        low, high = -limit, limit
    else:
        low, high = 0.0, 1.0
    cell = CELL if columns <= 16 else max(10, 560 // columns)
    cells = []
    for h in heads:
        fill = "#ffffff" if h["pruned"] else colour(h[key], low=low, high=high, diverging=diverging)
        cells.append({"x": HEATMAP_LEFT + h["head"] * cell, "y": 24 + h["layer"] * cell, "value": h[key],
                      "pruned": h["pruned"], "fill": fill, "label": f"layer {h['layer']}, head {h['head']}",
                      "dark": h[key] is not None and not h["pruned"] and _is_dark(fill)})
    steps = 6
    legend = [{"x": HEATMAP_LEFT + i * 26, "fill": colour(low + (high - low) * i / (steps - 1), low=low, high=high,
                                                       diverging=diverging)} for i in range(steps)]
    width = max(HEATMAP_LEFT + columns * cell + 20, HEATMAP_LEFT + steps * 26 + 150)
    top = 24 + layers * cell
    return {"title": title, "cells": cells, "cell": cell, "left": HEATMAP_LEFT, "width": width,
            "height": top + 56, "rows": [{"y": 24 + i * cell + cell / 2 + 4, "label": f"layer {i}"} for i in range(layers)],
            "columns": [{"x": HEATMAP_LEFT + j * cell + cell / 2, "label": str(j)} for j in range(columns)],
            "show_values": columns <= 16, "legend": legend, "legend_y": top + 22, "low": low, "high": high,
            "diverging": diverging}


def _is_dark(fill: str) -> bool:
    r, g, b = (int(fill[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b < 128


def pareto(candidates: list[dict[str, Any]], *, dense_accuracy: float | None) -> dict[str, Any]:
    """Scatter of overall accuracy (x) against accuracy-gap widening (y, lower is better), one point
    per candidate; points no other candidate beats on both axes are marked as the Pareto front."""
    points = [c for c in candidates if c["accuracy"] is not None and c["gap_widening"]["value"] is not None]
    width, height, left, top, plot_w, plot_h = WIDTH, 330, 70, 34, WIDTH - 300, 240
    xs = [p["accuracy"] for p in points] + ([dense_accuracy] if dense_accuracy is not None else [])
    ys = [p["gap_widening"]["value"] for p in points] + [0.0]
    x_low, x_high = (min(xs) - 0.01, max(xs) + 0.01) if xs else (0.0, 1.0)
    y_low, y_high = (min(ys) - 0.01, max(ys) + 0.01) if ys else (0.0, 1.0)

    def x(value: float) -> float:
        return round(left + (value - x_low) / (x_high - x_low) * plot_w, 1)

    def y(value: float) -> float:
        return round(top + (y_high - value) / (y_high - y_low) * plot_h, 1)

    drawn = []
    for i, p in enumerate(points):
        acc, gap = p["accuracy"], p["gap_widening"]["value"]
        dominated = any(q["accuracy"] >= acc and q["gap_widening"]["value"] <= gap
                        and (q["accuracy"] > acc or q["gap_widening"]["value"] < gap) for q in points)
        drawn.append({"label": p["name"], "x": x(acc), "y": y(gap), "front": not dominated, "index": i + 1,
                      "accuracy": acc, "gap": gap, "verdict": p.get("verdict", "pass" if p["passes_policy"] else "fail")})
    ticks_x = [x_low + (x_high - x_low) * k / 4 for k in range(5)]
    ticks_y = [y_low + (y_high - y_low) * k / 4 for k in range(5)]
    return {"width": width, "height": height, "left": left, "top": top, "right": left + plot_w,
            "bottom": top + plot_h, "points": drawn, "zero_y": y(0.0),
            "dense_x": x(dense_accuracy) if dense_accuracy is not None else None,
            "ticks_x": [{"x": x(t), "label": f"{t * 100:.1f}%"} for t in ticks_x],
            "ticks_y": [{"y": y(t), "label": f"{t * 100:+.1f}"} for t in ticks_y],
            "legend_x": left + plot_w + 20}


FOREST_TITLES = {"accuracy": "Accuracy", "tpr": "True positive rate", "fpr": "False positive rate"}


def _forest_rows(document: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    rows = []
    for group in document["subgroups"]:
        m = group["metrics"].get(metric)
        if m is None:
            continue
        rows.append({"label": group["group"], "delta": m["delta"], "low": m["ci"][0], "high": m["ci"][1],
                     "insufficient": group["insufficient"] or m["insufficient"]})
    overall = document["performance"]["overall"]["metrics"].get(metric)
    if overall is not None:
        rows.insert(0, {"label": "overall", "delta": overall["delta"], "low": overall["ci"][0],
                        "high": overall["ci"][1], "insufficient": False})
    return rows


def forests(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Forest plots of the paired change per group: accuracy, and TPR and FPR for binary tasks."""
    metrics = ["accuracy", "tpr", "fpr"] if document["performance"]["task"] == "binary" else ["accuracy"]
    return [forest(_forest_rows(document, m), title=FOREST_TITLES[m], harm="increase" if m == "fpr" else "decrease")
            for m in metrics]


def attention_maps(attention: dict[str, Any]) -> dict[str, Any]:
    """Heat maps of entropy per layer x head: dense, ticket and their difference."""
    heads = attention["heads"]
    unpruned = [{**h, "pruned": False} for h in heads]  # the dense model has every head
    return {"dense": heatmap(unpruned, "dense", title="Attention entropy, dense model", diverging=False),
            "ticket": heatmap(heads, "ticket", title="Attention entropy, ticket", diverging=False),
            "delta": heatmap(heads, "delta", title="Change in attention entropy (ticket − dense)", diverging=True)}


TREND_WIDTH, TREND_HEIGHT, TREND_LEFT, TREND_TOP, TREND_BOTTOM = 360, 150, 48, 14, 34


def trend(points: list[dict[str, Any]], *, limit: float | None = None) -> dict[str, Any]:
    """A small line chart of one group's delta (ticket − dense) across audits, with interval bars.

    ``points``: ``{"label", "delta", "low", "high"}`` in audit order (None where the group is absent).
    ``limit``: the symmetric y range, shared by every group's chart so they compare at a glance.
    """
    limit = limit or _nice_limit([v for p in points for v in (p["delta"], p["low"], p["high"])])
    inner_width = TREND_WIDTH - TREND_LEFT - 12
    step = inner_width / max(len(points) - 1, 1)

    def y(value: float | None) -> float | None:
        if value is None or not math.isfinite(value):
            return None
        share = (limit - max(-limit, min(limit, value))) / (2 * limit)
        return round(TREND_TOP + share * (TREND_HEIGHT - TREND_TOP - TREND_BOTTOM), 1)

    drawn = [{**p, "x": round(TREND_LEFT + (i * step if len(points) > 1 else inner_width / 2), 1), "y": y(p["delta"]),
              "y_low": y(p["low"]), "y_high": y(p["high"])} for i, p in enumerate(points)]
    path = " ".join(f"{'M' if i == 0 or drawn[i - 1]['y'] is None else 'L'}{p['x']},{p['y']}"
                    for i, p in enumerate(drawn) if p["y"] is not None)
    ticks = [{"y": y(t), "label": f"{t * 100:+g}" if t else "0"} for t in (limit, 0.0, -limit)]
    return {"width": TREND_WIDTH, "height": TREND_HEIGHT, "points": drawn, "path": path, "ticks": ticks,
            "left": TREND_LEFT, "right": TREND_WIDTH - 12, "zero": y(0.0), "label_y": TREND_HEIGHT - 8}


def trend_limit(values: list[float | None]) -> float:
    """The shared y range of a page of trend charts."""
    return _nice_limit(values)


PIXEL_MAP_SIDE = 128
"""Drawn width and height of an attribution map (pixels of the page)."""


def pixel_map(grid: list[list[float]], *, limit: float, diverging: bool) -> dict[str, Any]:
    """Cells of an attribution map (rows x columns of regions) filled on [0, limit], or [-limit, limit] when
    diverging, so maps drawn with the same ``limit`` compare by eye."""
    rows, columns = len(grid), len(grid[0]) if grid else 0
    cell = PIXEL_MAP_SIDE / max(rows, columns, 1)
    low = -limit if diverging else 0.0
    cells = [{"x": round(j * cell, 2), "y": round(i * cell, 2), "fill": colour(value, low=low, high=limit,
                                                                                diverging=diverging)}
             for i, row in enumerate(grid) for j, value in enumerate(row)]
    return {"cells": cells, "cell": round(cell + 0.05, 2), "width": round(columns * cell, 2),
            "height": round(rows * cell, 2)}


def map_limit(grids: list[list[list[float]]], *, absolute: bool = False) -> float:
    """The largest (absolute) value over several maps: one colour scale for all of them."""
    values = [abs(v) if absolute else v for grid in grids for row in grid for v in row if v is not None]
    return max([v for v in values if math.isfinite(v)] or [0.0]) or 1.0
