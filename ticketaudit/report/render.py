"""HTML rendering of an audit's JSON document (and the prune and history pages), through Jinja with autoescape."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import jinja2

from .._io import check_not_input, write_atomically
from .._resources import templates_dir
from ..gate import counts, gate_fails, total_checks
from . import charts, formats, schema
from .document import AuditResult, _rounded, document_bytes, render_json, report_dict  # noqa: F401  (imported here)


CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _plugin_template(name: str) -> str | None:
    """Templates of plug-in analyses, loaded as ``analysis:NAME`` from the file the analysis names."""
    if not name.startswith("analysis:"):
        return None
    from ..analyses import registry

    template = registry.get(name.removeprefix("analysis:")).template
    return Path(template).read_text(encoding="utf-8") if template is not None else None


def _shown(value: Any) -> Any:
    """Every value a template prints, with bidirectional controls made visible (before autoescaping)."""
    return formats.visible_controls(value) if isinstance(value, str) else value


def _environment() -> jinja2.Environment:
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(templates_dir())), jinja2.FunctionLoader(_plugin_template)])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, finalize=_shown)
    env.filters.update(pct=formats.percent, pts=formats.points, interval_pts=formats.interval_points,
                       pvalue=formats.p_value, num=formats.number, amount=formats.amount,
                       amount_interval=formats.amount_interval)
    env.globals["charts"] = charts
    return env


def _sections(document: dict[str, Any]) -> list[dict[str, str]]:
    """The report sections of the analyses that ran, in registry order: each its own template."""
    from ..analyses import registry

    ran = set(document["settings"]["analyses"])
    sections = []
    for analysis in registry.analyses():
        if analysis.name in ran and analysis.template is not None:
            builtin = isinstance(analysis.template, str)
            sections.append({"name": analysis.name,
                             "template": analysis.template if builtin else f"analysis:{analysis.name}"})
    return sections


def render_prune(document: dict[str, Any], *, command: str | None = None) -> tuple[bytes, bytes]:
    """(HTML, JSON) of a ``ticketaudit prune`` run from its JSON document, validated against its schema."""
    document = _rounded(document)
    schema.validate_prune(document)
    html = _environment().get_template("alternatives.html.j2").render(
        r=document, csp=CSP, command=command or "ticketaudit (Python API)")
    payload = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return html.encode("utf-8"), payload.encode("utf-8")


def _audit_inputs(provenance: Mapping[str, Any]) -> dict[str, object]:
    return {"dense": provenance.get("dense_source"), "ticket": provenance.get("ticket_source"),
            "data": provenance.get("data_source")}


def render_html(result: AuditResult | Mapping[str, Any], path: str | Path | None = None, *,
                command: str | None = None, provenance: Mapping[str, Any] | None = None) -> str:
    """The self-contained HTML report of an ``AuditResult`` or of its JSON document (a saved
    ``report.json``, loaded); also written (atomically) to ``path`` when given, which must not be one
    of the audit's inputs. The report is rendered from the JSON document alone, plus ``provenance``
    (paths, speed settings: the result's own by default), which the JSON leaves out."""
    if isinstance(result, schema.ValidatedDocument):
        document = result
        provenance = dict(provenance or {})
    elif isinstance(result, Mapping):
        document = _rounded(dict(result))
        schema.validate(document)
        provenance = dict(provenance or {})
    else:
        document = report_dict(result)
        provenance = dict(provenance if provenance is not None else result.provenance)
    html = _environment().get_template("report.html.j2").render(
        r=document, sections=_sections(document), csp=CSP,
        failed=[c for c in document["checks"] if c["status"] == "fail"],
        inconclusive=[c for c in document["checks"] if c["status"] == "inconclusive"],
        gate_fails=gate_fails(document), n_checks=total_checks(document), n_by_status=counts(document), command=command or "ticketaudit (Python API)", provenance=provenance)
    if path is not None:
        check_not_input({"the report path": Path(path)}, _audit_inputs(provenance))
        write_atomically({Path(path): html.encode("utf-8")})
    return html


def render_page(template: str, **context: Any) -> str:
    """A self-contained page from one of the templates, under the report's CSP and filters."""
    return _environment().get_template(template).render(csp=CSP, **context)


def command_line() -> str:
    """The command line that started this process, quoted for a shell."""
    return " ".join(shlex.quote(a) for a in ["ticketaudit", *sys.argv[1:]])
