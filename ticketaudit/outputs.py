"""Writing an audit's outputs together: the HTML and JSON, JUnit, Markdown, the model card and the groups table as one
atomic set (never over an input), then the side effects after them (the step summary, the MLflow run). The top of
the output layers: it calls each renderer; none of them calls another."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import check_not_input, write_atomically
from .report.document import document_bytes, report_dict
from .report.render import _audit_inputs, render_html

if TYPE_CHECKING:
    from .audit import AuditResult


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
    from .workflow import junit, markdown, model_card

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
        from .workflow.mlflow_run import log_mlflow

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
