"""One MLflow run per audit (optional extra ``ticketaudit[mlflow]``): params that identify it (seed,
policy, model and data hashes), metrics (overall and per-group deltas, the verdict as 0 pass / 1
inconclusive / 2 fail, checks per status) and the reports as artifacts. Written through an
``MlflowClient`` for the given tracking URI, so the caller's global MLflow state is left alone."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..exceptions import InvalidInputError, SideOutputError
from .reports import STATUS_RANK, as_document, counts, gate_fails

EXPERIMENT = "ticketaudit"
MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH = 1000, 100
"""MLflow's limits on one ``log_batch`` call."""
INSTALL_HINT = "--mlflow needs MLflow: pip install 'ticketaudit[mlflow]' (or pip install mlflow)."
_NOT_IN_KEY = re.compile(r"[^\w\-. /]")


def require_mlflow() -> None:
    """Exit 2 before any work when MLflow is not installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise InvalidInputError(INSTALL_HINT) from None


def metric_key(*parts: str) -> str:
    """An MLflow metric or param name whatever the group values hold: letters, digits and ``_-. /`` only, no
    empty, ``.`` or ``..`` path part (MLflow refuses ``a//b``, ``a/``, ``/a``), 250 characters at most."""
    pieces = [_NOT_IN_KEY.sub("_", part) for part in "/".join(parts).split("/")]
    key = "/".join(piece if piece.strip(".") else "_" * max(1, len(piece)) for piece in pieces)[:250]
    return key[:-1] + "_" if key.endswith("/") else key


def check_tracking_uri(uri: str | None) -> None:
    """Exit 2 before any work when a local store (``sqlite:///PATH``, ``file:PATH`` or a plain path) cannot be
    created where the URI points; a remote server is reached only when the audit is done."""
    if not uri:
        return
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if path.exists() and not path.is_file():
            raise InvalidInputError(f"--mlflow {uri}: '{path}' is not a file; point the URI at a database file.")
    elif "://" not in uri or uri.startswith("file:"):
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        if path.exists() and not path.is_dir():
            raise InvalidInputError(f"--mlflow {uri}: '{path}' is not a directory; point the URI at a store folder.")
        path = path / "x"
    else:
        return
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InvalidInputError(f"--mlflow {uri}: directory '{parent}' does not exist or is not writable. Create it, "
                                "or give another tracking URI (e.g. sqlite:///mlflow.db).")


def params(document: Mapping[str, Any]) -> dict[str, str]:
    """What identifies the audit: seed, policy, hashes, target and groups (MLflow params are strings)."""
    settings, data, models = document.get("settings", {}), document["data"], document["models"]
    out = {"seed": settings.get("seed"), "n_boot": settings.get("n_boot"),
           "analyses": ",".join(settings.get("analyses", [])), "target": data["target"],
           "sensitive": ",".join(data["sensitive"]), "rows": data["rows"], "data_sha256": data["sha256"],
           "dense_sha256": models["dense"]["sha256"], "ticket_sha256": models["ticket"]["sha256"],
           "ticket_sparsity": round(models["ticket"]["sparsity"], 6), "schema_version": document["schema_version"],
           "tool_version": document["tool_version"]}
    for name, value in document.get("policy", {}).items():
        if value is not None:
            out[metric_key("policy", name)] = value
    return {key: str(value)[:6000] for key, value in out.items()}


def metrics(document: Mapping[str, Any]) -> dict[str, float]:
    """Verdict, check counts, and every overall and per-group dense, ticket and delta value."""
    return {key: value for key, (value, _) in _named_metrics(document).items()}


def metric_names(document: Mapping[str, Any]) -> list[dict[str, str]]:
    """Which group, metric and field each sanitised per-group metric name holds (logged as a table)."""
    return [{"mlflow_metric": key, **where} for key, (_, where) in _named_metrics(document).items() if where]


def _named_metrics(document: Mapping[str, Any]) -> dict[str, tuple[float, dict[str, str]]]:
    n = counts(document)
    out: dict[str, float] = {"verdict": float(STATUS_RANK[document["verdict"]]), "checks_failed": float(n["fail"]),
                             "checks_inconclusive": float(n["inconclusive"]), "checks_passed": float(n["pass"]),
                             "checks_not_evaluated": float(n["not_evaluated"]),
                             "gate_failed": float(gate_fails(document))}
    named: dict[str, tuple[float, dict[str, str]]] = {key: (value, {}) for key, value in out.items()}
    overall = document.get("performance", {}).get("overall")
    for group in ([overall] if overall else []) + list(document["subgroups"]):
        for name, estimate in group.get("metrics", {}).items():
            for field in ("dense", "ticket", "delta"):
                value = estimate.get(field)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    key = _unique(named, metric_key(str(group["group"]), name, field))
                    named[key] = (float(value), {"group": str(group["group"]), "metric": name, "field": field})
    return named


def _unique(taken: Mapping[str, Any], key: str) -> str:
    """Two group names that sanitise to the same key keep apart (``_2``, ``_3``...)."""
    candidate, i = key, 2
    while candidate in taken:
        candidate, i = f"{key}_{i}", i + 1
    return candidate


def log_mlflow(report: Any, *, artifacts: Mapping[str, bytes] | None = None, tracking_uri: str | None = None,
               experiment: str | None = None, run_name: str | None = None) -> str:
    """Log one finished run of an audit (result, JSON document or report.json path) and return its id;
    ``artifacts`` maps file names to their bytes (default: the JSON report), plus ``metric_names.json`` (which
    group each sanitised metric name holds). A store that cannot be reached or written raises
    ``SideOutputError`` (CLI exit 4), and a run left half-logged is marked FAILED."""
    require_mlflow()
    document = as_document(report)
    if artifacts is None:
        from ..report.document import document_bytes

        artifacts = {"report.json": document_bytes(document)}
    artifacts = {**artifacts, "metric_names.json": json.dumps(metric_names(document), indent=1).encode("utf-8")}
    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    with warnings.catch_warnings():  # MLflow's own deprecated calls: not the user's concern
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _log(document, artifacts=artifacts, tracking_uri=tracking_uri, experiment=experiment, run_name=run_name)


def _log(document: Mapping[str, Any], *, artifacts: Mapping[str, bytes], tracking_uri: str | None, experiment: str,
         run_name: str | None) -> str:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    run_id = None
    try:
        client = MlflowClient(tracking_uri=tracking_uri or None)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=run_name,
                                tags={"ticketaudit.verdict": document["verdict"],
                                      "ticketaudit.gate": "fail" if gate_fails(document) else "pass",
                                      "mlflow.source.name": "ticketaudit",
                                      "ticketaudit.schema_version": document["schema_version"]})
        run_id = run.info.run_id
        stamp = int(time.time() * 1000)
        values = [Metric(k, v, stamp, 0) for k, v in metrics(document).items()]
        for start in range(0, len(values), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=values[start:start + MAX_METRICS_PER_BATCH])
        settings = [Param(k, v) for k, v in params(document).items()]
        for start in range(0, len(settings), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=settings[start:start + MAX_PARAMS_PER_BATCH])
        with tempfile.TemporaryDirectory(prefix="ticketaudit-mlflow-") as folder:
            for name, payload in artifacts.items():
                (Path(folder) / name).write_bytes(payload)
            client.log_artifacts(run_id, folder)
        client.set_terminated(run_id, "FINISHED")
    except Exception as error:  # MLflow raises its own and third-party types for a bad store
        if run_id is not None:
            try:
                client.set_terminated(run_id, "FAILED")
            except Exception:  # the store itself is what failed
                pass
        where = tracking_uri or "the default tracking URI"
        raise SideOutputError(f"cannot log the audit to MLflow at {where}: {type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}. The audit's files are complete; "
                              "log them again with ticketaudit.log_mlflow('report.json', ...) once the store "
                              "answers.") from None
    return run_id
