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


def _module_graph() -> dict[str, set[str]]:
    """Every ticketaudit module and the ticketaudit modules it imports anywhere in its body (type-checking and
    function-level imports included: a cycle through them is still a knot for the reader)."""
    files: dict[str, tuple[Path, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = (path, parts[:-1])

    def resolve(target: str) -> str:
        while target not in files and "." in target:
            target = target.rsplit(".", 1)[0]
        return target

    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, (path, package) in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = (".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                        if node.level else (node.module or ""))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {resolve(t) for t in targets if t.startswith("ticketaudit")} - {name}
    return graph


def test_the_package_has_no_import_cycle() -> None:
    graph = _module_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            assert cycle is None, " -> ".join(cycle)


LAYERS = {  # a module (prefix) and the modules (prefixes) above it that it must never import
    "ticketaudit.config": ("ticketaudit.analyses", "ticketaudit.checks", "ticketaudit.audit", "ticketaudit.report",
                           "ticketaudit.workflow", "ticketaudit.outputs", "ticketaudit.cli"),
    "ticketaudit.analyses": ("ticketaudit.checks", "ticketaudit.audit", "ticketaudit.report", "ticketaudit.workflow",
                             "ticketaudit.outputs", "ticketaudit.cli"),
    "ticketaudit.llm": ("ticketaudit.analyses", "ticketaudit.checks", "ticketaudit.audit", "ticketaudit.report",
                        "ticketaudit.workflow", "ticketaudit.outputs", "ticketaudit.cli"),
    "ticketaudit.tickets": ("ticketaudit.analyses", "ticketaudit.audit", "ticketaudit.report", "ticketaudit.workflow",
                            "ticketaudit.cli"),
    "ticketaudit.checks": ("ticketaudit.audit", "ticketaudit.report", "ticketaudit.workflow", "ticketaudit.outputs"),
    "ticketaudit.report": ("ticketaudit.audit", "ticketaudit.workflow", "ticketaudit.outputs", "ticketaudit.cli"),
    "ticketaudit.workflow": ("ticketaudit.audit", "ticketaudit.outputs", "ticketaudit.cli"),
}


def test_each_layer_imports_only_downward() -> None:
    """models/tickets -> engine -> analyses -> checks -> results -> report / workflow outputs -> outputs -> cli;
    configuration is data and never imports the analyses; no output renderer imports another's writer."""
    offenders = [f"{module} imports {target}" for module, targets in _module_graph().items()
                 for layer, above in LAYERS.items() if module == layer or module.startswith(layer + ".")
                 for target in targets if any(target == a or target.startswith(a + ".") for a in above)]
    assert not offenders, offenders


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0  # type: ignore[operator]


def test_no_function_body_is_over_60_lines_and_audit_over_40() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = 40 if (path.name, node.name) == ("audit.py", "audit") else 60
                if _body_lines(node) > limit:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({_body_lines(node)} lines)")
    assert not long, long


def test_the_checks_can_fail() -> None:
    """The cycle and size checks above catch what they claim to, on a made-up package."""
    tree = ast.parse("def f():\n" + "    x = 1\n" * 61)
    assert _body_lines(tree.body[0]) == 61  # type: ignore[arg-type]


def test_the_architecture_page_names_only_modules_that_exist() -> None:
    """ARCHITECTURE.md's diagram and notes name real files (a renamed module makes the page fail the suite)."""
    import re

    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:[a-z_]+/)*[a-z_]+\.py)\b", text))
    assert len(named) > 20
    missing = [name for name in sorted(named) if not (PACKAGE / name).exists() and not (PACKAGE.parent / name).exists()
               and "*" not in name]
    assert not missing, missing
    for folder in re.findall(r"\b(analyses|engine|modalities|tickets|models|report|workflow)/", text):
        assert (PACKAGE / folder).is_dir(), folder
