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


def _loaded_after(statement: str) -> set[str]:
    import subprocess
    import sys

    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


HEAVY = {"captum", "matplotlib", "scipy.stats", "fairlearn", "sklearn", "ray", "transformers"}


def test_the_cli_and_the_package_start_without_torch() -> None:
    """``ticketaudit --help`` and ``schema`` answer without loading torch or any analysis library."""
    loaded = _loaded_after("import ticketaudit, ticketaudit.cli")
    assert not loaded & (HEAVY | {"torch", "pandas"}), sorted(loaded & (HEAVY | {"torch", "pandas"}))


def test_an_audit_imports_heavy_libraries_only_when_it_uses_them() -> None:
    """Captum (which pulls matplotlib), scipy.stats, fairlearn and scikit-learn load on first use."""
    loaded = _loaded_after("from ticketaudit import audit")
    assert "torch" in loaded and not loaded & HEAVY, sorted(loaded & HEAVY)


@pytest.mark.parametrize("first", ["ticketaudit.audit", "ticketaudit.prune", "ticketaudit.demo", "ticketaudit.cli"])
def test_ta_audit_is_the_function_whatever_was_imported_first(first: str) -> None:
    """``ticketaudit.audit`` names both a submodule and the function; the package keeps the function."""
    import subprocess
    import sys

    code = (f"import importlib; importlib.import_module({first!r}); import ticketaudit as ta, ticketaudit.audit; "
            "import sys; assert callable(ta.audit) and ta.audit.__module__ == 'ticketaudit.audit', ta.audit; "
            "assert sys.modules['ticketaudit.audit'].AuditResult is ta.AuditResult")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
