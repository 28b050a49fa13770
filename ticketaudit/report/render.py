"""JSON and HTML rendering of an ``AuditResult``; atomic writing of both files."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jinja2

from .._io import check_not_input, write_atomically
from ..gate import counts, gate_fails, total_checks
from .._resources import templates_dir
from . import charts, formats, schema

if TYPE_CHECKING:
    from ..audit import AuditResult

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _rounded(value: Any) -> Any:
    """Round floats to 12 significant digits so platform noise never changes the bytes."""
    if isinstance(value, float):
        return float(f"{value:.12g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def report_dict(result: AuditResult, *, all_groups: bool = False) -> dict[str, Any]:
    """The validated JSON document of a result (every group listed with ``all_groups``; see ``listing``)."""
    document = _rounded(result.to_dict(all_groups=all_groups))
    schema.validate(document)
    return schema.ValidatedDocument(document)


def render_json(result: AuditResult) -> bytes:
    """The JSON report as bytes (UTF-8, sorted keys, trailing newline)."""
    return document_bytes(report_dict(result))


def document_bytes(document: Mapping[str, Any]) -> bytes:
    """A JSON document as the report writes it (UTF-8, sorted keys, trailing newline)."""
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


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
                       pvalue=formats.p_value, num=formats.number)
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


@dataclass(frozen=True, kw_only=True)
class WorkflowOutputs:
    """The review-workflow outputs of one audit, each optional: JUnit XML, a pull-request summary in
    Markdown (also appended to ``$GITHUB_STEP_SUMMARY`` when set), a model-card fragment, an MLflow run
    (``mlflow``: a tracking URI, "" for MLflow's default, None for none)."""

    junit: Path | None = None
    markdown: Path | None = None
    model_card: Path | None = None
    model_name: str = "ticket"
    mlflow: str | None = None
    groups_table: Path | None = None
    """Every group's numbers as a Parquet table (one row per group), whatever the report lists."""
    all_groups: bool = False
    """List every group in the JSON and HTML, however many (default: ``listing.MAX_LISTED_GROUPS``)."""

    def described(self) -> list[str]:
        """The outputs in words, for the HTML's provenance."""
        words = {"--junit": "JUnit XML", "--markdown": "pull-request summary (Markdown)", "--model-card": "model card",
                 "--groups-table": "every group's numbers (Parquet)"}
        out = [f"{words[option]}: {path}" for option, path in self.paths().items()]
        if self.mlflow is not None:
            out.append(f"MLflow run at {self.mlflow or 'the default tracking URI'}")
        return out

    def paths(self) -> dict[str, Path]:
        """Output option → path, for the checks every output gets (writable, not an input)."""
        named = {"--junit": self.junit, "--markdown": self.markdown, "--model-card": self.model_card,
                 "--groups-table": self.groups_table}
        return {option: Path(path) for option, path in named.items() if path is not None}


def _workflow_files(document: dict[str, Any], outputs: WorkflowOutputs) -> dict[Path, bytes]:
    from ..workflow import junit, markdown, model_card

    files: dict[Path, bytes] = {}
    if outputs.junit is not None:
        files[Path(outputs.junit)] = junit.render_junit(document)
    if outputs.markdown is not None:
        files[Path(outputs.markdown)] = markdown.render_markdown(document).encode("utf-8")
    if outputs.model_card is not None:
        files[Path(outputs.model_card)] = model_card.render_model_card(document, model_name=outputs.model_name).encode("utf-8")
    return files


def groups_table(subgroups: list[dict[str, Any]]) -> bytes:
    """Parquet bytes of every group (a row each): size, status, and per metric dense, ticket, delta, interval, p."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for group in subgroups:
        row: dict[str, Any] = {key: group.get(key) for key in ("group", "attribute", "n", "positives", "insufficient",
                                                               "status", "rows_to_settle")}
        for metric, values in group.get("metrics", {}).items():
            ci = values.get("ci") or [None, None]
            row.update({f"{metric}_dense": values.get("dense"), f"{metric}_ticket": values.get("ticket"),
                        f"{metric}_delta": values.get("delta"), f"{metric}_ci_low": ci[0], f"{metric}_ci_high": ci[1],
                        f"{metric}_p_value": values.get("p_value")})
        for metric, harm in (group.get("minimum_detectable_harm") or {}).items():
            row[f"{metric}_minimum_detectable_harm"] = harm
        rows.append(row)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def write_report(result: AuditResult, *, html_path: Path | None, json_path: Path | None,
                 command: str | None = None, inputs: Mapping[str, object] | None = None,
                 workflow: WorkflowOutputs | None = None) -> None:
    """Render every output in memory, write the files together atomically (never over an input: ``inputs`` by
    option, else the result's own model and data paths), then append the step summary and log the MLflow run when
    asked (a failure there raises ``SideOutputError`` with every file in place)."""
    workflow = workflow or WorkflowOutputs()
    paths = {"--out": html_path, "--json": json_path, **workflow.paths()}
    check_not_input({k: Path(v) for k, v in paths.items() if v is not None},
                    inputs if inputs is not None else _audit_inputs(result.provenance))
    document = report_dict(result, all_groups=workflow.all_groups)
    provenance = {**result.provenance, "workflow_outputs": workflow.described()}
    needs_html = html_path is not None or workflow.mlflow is not None
    html = render_html(document, command=command, provenance=provenance).encode("utf-8") if needs_html else b""
    payload = document_bytes(document)
    outputs: dict[Path, bytes] = {}
    if html_path is not None:
        outputs[Path(html_path)] = html
    if json_path is not None:
        outputs[Path(json_path)] = payload
    outputs.update(_workflow_files(document, workflow))
    if workflow.groups_table is not None:
        outputs[Path(workflow.groups_table)] = groups_table(result.to_dict(all_groups=True)["subgroups"])
    write_atomically(outputs)
    if workflow.markdown is not None:
        _append_step_summary(outputs[Path(workflow.markdown)])
    if workflow.mlflow is not None:  # after the files: a store that fails now loses no output (exit 4)
        from ..workflow.mlflow_run import log_mlflow

        artifacts = {"report.html": html, "report.json": payload,
                     **{path.name: data for path, data in outputs.items() if path.name not in ("report.html", "report.json")}}
        log_mlflow(document, artifacts=artifacts, tracking_uri=workflow.mlflow or None)


def _append_step_summary(markdown: bytes) -> None:
    """GitHub Actions shows what ``$GITHUB_STEP_SUMMARY`` holds on the run's page; a summary that cannot
    be appended is said, never fatal (the outputs are already written)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with open(target, "ab") as handle:
            handle.write(markdown + b"\n")
    except OSError as error:
        print(f"warning: could not append the summary to $GITHUB_STEP_SUMMARY ({target}): {error.strerror}",
              file=sys.stderr)
