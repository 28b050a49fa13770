"""The demo report in a real headless Chromium: no console errors, no network, basic accessibility,
and a screenshot saved under reports/ for review. Skipped (with the reason) where no Chromium exists."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
BROWSER_SERVICE_HOSTS = ("google.com", "googleapis.com", "gstatic.com", "googleusercontent.com")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Outline(HTMLParser):
    """Collects what the accessibility checks need from the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.lang = None
        self.headings: list[int] = []
        self.tables = self.table_headers = self.svgs = self.svg_roles = self.svg_titles = 0
        self.scripts = 0
        self.external: list[str] = []
        self._in_svg = False
        self._label: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "html":
            self.lang = attributes.get("lang")
        if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        self.tables += tag == "table"
        self.table_headers += tag == "th"
        self.scripts += tag == "script"
        if tag == "svg":
            self.svgs += 1
            self.svg_roles += attributes.get("role") == "img"
            self._in_svg = True
            self._label = attributes.get("aria-labelledby")
        if tag == "title" and self._in_svg and self._label and attributes.get("id") == self._label:
            self.svg_titles += 1  # the chart's own accessible title (marks may carry tooltips too)
        for name in ("src", "href"):
            value = attributes.get(name) or ""
            if value and not value.startswith(("#", "data:")):
                self.external.append(value)

    def handle_endtag(self, tag):
        if tag == "svg":
            self._in_svg = False


def _demo_report(tmp_path: Path) -> Path:
    existing = ROOT / "reports" / "demo" / "report.html"
    if existing.is_file():
        return existing
    assert run_cli(["demo", "--out", str(tmp_path / "demo"), "--quiet"]).code == 0
    return tmp_path / "demo" / "report.html"


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no Chromium here: install Debian's 'chromium' package (.ci/run does)")
def test_demo_report_in_headless_chromium(tmp_path: Path) -> None:
    report = _demo_report(tmp_path)
    netlog = tmp_path / "net.json"
    dump = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                           "--v=0", f"--log-net-log={netlog}", "--dump-dom", report.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert dump.returncode == 0, dump.stderr[-2000:]
    console = [line for line in dump.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    events = json.loads(netlog.read_text())["events"]
    urls = {e["params"]["url"] for e in events if isinstance(e.get("params"), dict) and "url" in e["params"]}
    page_requests = [u for u in urls if not u.startswith("file:")
                     and not any(host in u.split("/")[2] for host in BROWSER_SERVICE_HOSTS if "//" in u)]
    assert page_requests == [], page_requests

    outline = Outline()
    outline.feed(dump.stdout)
    assert outline.lang == "en"
    assert outline.headings[0] == 1 and all(b - a <= 1 for a, b in zip(outline.headings, outline.headings[1:]))
    assert outline.tables >= 5 and outline.table_headers >= 5 * outline.tables
    assert outline.svgs >= 1 and outline.svg_roles == outline.svgs == outline.svg_titles
    assert outline.scripts == 0 and outline.external == []  # no JavaScript at all: readable without it
    verdict = json.loads(report.with_name("report.json").read_text())["verdict"]
    assert f'<div class="verdict {verdict}" role="status">' in dump.stdout
    assert f"<strong>{verdict.upper()}</strong>" in dump.stdout

    screenshot = ROOT / "reports" / "demo-report-chromium.png"
    shot = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1100,4200",
                           f"--screenshot={screenshot}", report.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0 and screenshot.stat().st_size > 50_000, shot.stderr[-2000:]
