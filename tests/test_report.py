"""The HTML report: self-contained, strict CSP, every piece of data-derived text escaped."""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pandas as pd
import torch

import ticketaudit as ta
from ticketaudit.models import MLP

PAYLOAD = '<script>alert(1)</script><img src=x onerror=alert(2)>"\''


def test_payloads_in_group_names_and_labels_are_escaped(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame[PAYLOAD] = rng.choice([PAYLOAD, "plain"], size=n)
    frame["y"] = (frame.a > 0).astype(int)
    torch.manual_seed(0)
    dense = MLP(in_features=2, hidden=[4], out_features=2)
    result = ta.audit(dense=dense, ticket=dense, data=frame, target="y", sensitive=[PAYLOAD], features=["a", "b"],
                      n_boot=100)
    html = ta.render_html(result, tmp_path / "r.html")
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;" in html
    assert (tmp_path / "r.html").read_text() == html


def test_html_is_self_contained_and_accessible(tmp_path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=200), "g": rng.choice(["x", "y"], size=200)})
    frame["y"] = (frame.a > 0).astype(int)
    dense = MLP(in_features=1, hidden=[3], out_features=2)
    html = ta.render_html(ta.audit(dense=dense, ticket=dense, data=frame, target="y", sensitive="g", features=["a"],
                                   n_boot=100))
    assert re.search(r"<html lang=\"en\">", html)
    assert "default-src 'none'" in unescape(html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<script" not in html
    headings = [int(h) for h in re.findall(r"<h([1-6])", html)]
    assert headings[0] == 1 and all(b - a <= 1 for a, b in zip(headings, headings[1:]))
    assert html.count("<svg") == html.count("<title id=") and 'role="img"' in html
    assert html.count("<th") > 10


def test_the_report_renders_from_its_json_document_alone(fx, tmp_path) -> None:
    """Rendering reads the JSON document (plus provenance), not Python result objects: a saved report.json
    renders to the same HTML, and a document that breaks the schema is refused."""
    import json

    from conftest import FEATURES

    result = ta.audit(dense=fx.dense, ticket=fx.ticket, data=fx.frame, target="y", sensitive=["sex", "race"],
                      features=FEATURES, n_boot=200, attribution_rows=100)
    saved = json.loads(ta.render_json(result))
    assert ta.render_html(saved, provenance=result.provenance) == ta.render_html(result)
    assert "Importance per column" in ta.render_html(saved)
    import jsonschema
    import pytest

    with pytest.raises(jsonschema.ValidationError):
        ta.render_html({**saved, "verdict": "maybe"})
