"""The import direction of DESIGN.md: analyses never import jinja2; the report layer never torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ticketaudit"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("folder", "forbidden"), [("analyses", "jinja2"), ("report", "torch"), ("tickets", "jinja2")])
def test_layer_does_not_import(folder: str, forbidden: str) -> None:
    offenders = [p.name for p in (PACKAGE / folder).glob("*.py") if forbidden in _imports(p)]
    assert not offenders


def test_no_assert_on_user_input_in_validation() -> None:
    for name in ("_validation.py", "data.py", "inputs.py", "config.py", "cli.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Assert)], name
