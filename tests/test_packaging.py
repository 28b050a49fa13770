"""A non-editable wheel ships templates/ and datasets/ and renders a report (slow: builds a wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import pathlib, torch, ticketaudit as ta
    from ticketaudit._resources import templates_dir
    from ticketaudit.datasets import load_adult
    assert "site" in ta.__file__, ta.__file__
    assert "_data" in str(templates_dir()), templates_dir()
    test = load_adult("test")
    assert len(test) == 16281, len(test)
    frame = test[["age", "hours-per-week", "sex"]].head(400).assign(y=(test["income"].head(400) == ">50K").astype(int))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    result = ta.audit(dense=model, ticket=model, data=frame, target="y", sensitive="sex",
                      features=["age", "hours-per-week"], n_boot=100)
    html = ta.render_html(result, pathlib.Path("report.html"))
    assert "ticketaudit report" in html and result.verdict == "pass"
    print("ok")
""")


@pytest.mark.slow
def test_installed_wheel_renders_a_report(tmp_path: Path) -> None:
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True)
    wheel = next(wheels.glob("ticketaudit-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); " + SCRIPT],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok") and (tmp_path / "report.html").stat().st_size > 5000
