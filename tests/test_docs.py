"""The documentation: every relative link in the README and the docs pages resolves, and the front page reaches
what reviewers and engineers look for within three clicks. (The Sphinx build itself, warnings as errors, runs in
``.ci/run``.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)|\{doc\}`([^`]+)`")
PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]


def _targets(page: Path) -> list[Path]:
    """The files a page links to (markdown links, images, MyST {doc} roles); web links and anchors left out."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    out = []
    for link, image, doc in LINK.findall(text):
        target = (link or image or doc).split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue
        path = page.parent / target
        out.append(path if (link or image) else path.with_suffix(".md"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    generated = {DOCS / "reference" / "cli.md", DOCS / "auto_examples" / "index.md"}  # written by the build
    missing = [str(t) for t in _targets(page) if not t.exists() and t.resolve() not in generated]
    assert not missing, missing


def test_the_link_checker_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[a](missing.md) {doc}`other` ![i](img.png) [web](https://example.org) [anchor](#x)\n")
    assert [t.name for t in _targets(page) if not t.exists()] == ["missing.md", "other.md", "img.png"]


def _reachable(start: Path, clicks: int) -> set[Path]:
    seen, frontier = {start.resolve()}, {start.resolve()}
    for _ in range(clicks):
        frontier = {t.resolve() for page in frontier if page.suffix == ".md" for t in _targets(page) if t.exists()} - seen
        seen |= frontier
    return seen


@pytest.mark.parametrize("words", ["**inconclusive** — neither", "`subgroups[].metrics.<metric>.ci`",
                                   "## The steps"])
def test_the_front_page_reaches_it_in_three_clicks(words: str) -> None:
    """The meaning of "inconclusive", the JSON field of a group's interval, the steps of a plug-in."""
    pages = _reachable(DOCS / "index.md", 3)
    assert any(words in page.read_text(encoding="utf-8") for page in pages if page.suffix == ".md"), words
