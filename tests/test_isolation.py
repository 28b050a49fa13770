"""An audit makes no network connection, and data-derived text is escaped everywhere in the HTML."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli

import ticketaudit as ta
from ticketaudit.models import MLP
from ticketaudit.tickets.bundle import save_bundle

PAYLOAD = '<img src=x onerror=alert(1)>'


def test_audit_makes_no_network_connection(fx, monkeypatch, tmp_path) -> None:
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))
    result = ta.audit(dense=fx.dense_dir, ticket=fx.ticket_dir, data=fx.csv, target="y", sensitive="sex,race",
                      features=["x1", "x2", "x3", "x4"], n_boot=100)
    ta.render_html(result, tmp_path / "r.html")
    assert attempts == []


def test_file_label_and_column_names_are_escaped(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    column = f"col{PAYLOAD}"
    frame = pd.DataFrame({column: rng.normal(size=n), "group": rng.choice([PAYLOAD, "b"], size=n)})
    labels = (f"no{PAYLOAD}", f"yes{PAYLOAD}")
    frame["target"] = np.where(frame[column] > 0, labels[1], labels[0])
    torch.manual_seed(0)
    model = MLP(in_features=1, hidden=[3], out_features=2)
    folder = tmp_path / "dir<b>x"
    folder.mkdir()
    dense = save_bundle(folder / "dense", model, architecture="mlp",
                        arguments={"in_features": 1, "hidden": [3], "out_features": 2}, labels=labels)
    data = folder / "data<script>.csv"
    frame.to_csv(data, index=False)
    run = run_cli(["report", "--dense", str(dense), "--ticket", str(dense), "--data", str(data), "--target", "target",
                   "--sensitive", "group", "--features", column, "--n-boot", "100", "--quiet",
                   "--out", str(tmp_path / "r.html")])
    assert run.code == 0, run.stderr
    html = (tmp_path / "r.html").read_text()
    assert "<img" not in html and "<b>" not in html and "<script" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 2


@pytest.mark.parametrize("name", ["sex", "group & <name>"])
def test_sensitive_column_names_render(name: str, tmp_path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=200), name: rng.choice(["x", "y"], size=200)})
    frame["y"] = (frame.a > 0).astype(int)
    model = MLP(in_features=1, hidden=[2], out_features=2)
    html = ta.render_html(ta.audit(dense=model, ticket=model, data=frame, target="y", sensitive=[name],
                                   features=["a"], n_boot=100))
    assert "group &amp; &lt;name&gt;" in html or name == "sex"
