"""Sphinx configuration of ticketaudit's documentation: PyData theme, MyST Markdown pages, an example gallery
(sphinx-gallery, run at build time), the CLI reference from the Typer app (each command's own help) and the
Python API from docstrings (autodoc). Built with warnings as errors by ``.ci/run`` (``sphinx-build -W``)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

project = "ticketaudit"
author = "ticketaudit developers"
copyright = "2026, ticketaudit developers"  # noqa: A001 - Sphinx's name

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx_gallery.gen_gallery"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "examples", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.json", "auto_examples/*.md5", "auto_examples/*.pickle", "**.codeobj.json"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]
autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = False

html_theme = "pydata_sphinx_theme"
html_title = "ticketaudit"
html_static_path = ["_static"]
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2, "secondary_sidebar_items": ["page-toc"]}

sphinx_gallery_conf = {
    "examples_dirs": str(HERE / "examples"),
    "gallery_dirs": str(HERE / "auto_examples"),
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}


def _write_schema() -> None:
    """The JSON report's schema, as ``ticketaudit schema`` prints it, for the reference page to include."""
    from ticketaudit.report.schema import report_schema

    generated = HERE / "_generated"
    generated.mkdir(exist_ok=True)
    (generated / "report.schema.json").write_text(json.dumps(report_schema(), indent=2) + "\n", encoding="utf-8")


def _write_cli_reference() -> None:
    """Each command's ``--help`` as the Typer app prints it (sphinx-click cannot read Typer's own Click classes)."""
    from typer.testing import CliRunner

    from ticketaudit.cli import app

    runner = CliRunner()
    parts = ["# Command line\n\nGenerated from the Typer application at build time: each command's `--help`. Exit "
             "codes are on the [exit codes](exit-codes.md) page.\n"]
    for info in app.registered_commands:
        name = info.name or info.callback.__name__
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"},
                               terminal_width=110)
        if result.exit_code != 0:
            raise RuntimeError(f"ticketaudit {name} --help failed: {result.output}")
        parts.append(f"## `ticketaudit {name}`\n\n```text\n{result.output.rstrip()}\n```\n")
    (HERE / "reference" / "cli.md").write_text("\n".join(parts), encoding="utf-8")


_write_schema()
_write_cli_reference()
