"""A Hugging Face model-card fragment for the ticket: YAML front matter whose ``model-index`` holds the
per-group accuracy of the dense model and of the ticket, and a "Bias, Risks, and Limitations" section in
plain words, to paste or merge into the ticket's README."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..report.formats import visible_controls
from .markdown import escape
from .reports import as_document, check_sentence, count_words, gate_line

VERDICT_WORDS = {
    "pass": "the audit ruled out every harm its policy checks for, at the policy's tolerances",
    "fail": "the audit found at least one harm beyond the policy's tolerance that is statistically significant",
    "inconclusive": ("no check failed, but the data could not rule out a harm as large as the tolerance for "
                     "some groups: too few rows to tell"),
}


TASKS = {"tabular": "tabular-classification", "text": "text-classification", "image": "image-classification"}
"""The Hugging Face task of each modality (the ``model-index`` ``task.type``)."""


def _task(document: Mapping[str, Any]) -> dict[str, str]:
    modality = document["data"].get("modality")
    if modality is None:  # a report written before the JSON named its modality
        modality = "text" if str(document["models"]["dense"].get("format", "")).startswith("hugging") else "tabular"
    kind = TASKS.get(str(modality), f"{modality}-classification")
    return {"type": kind, "name": f"{kind.replace('-', ' ').capitalize()} ({document['data']['target']})"}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def model_index(document: Mapping[str, Any], *, model_name: str = "ticket") -> list[dict[str, Any]]:
    """``model-index`` metadata: one result per group (overall first), accuracy of dense and ticket."""
    overall = document.get("performance", {}).get("overall")
    groups = ([overall] if overall else []) + list(document["subgroups"])
    data = document["data"]
    results = []
    for group in groups:
        accuracy = group.get("metrics", {}).get("accuracy", {})
        metrics = [{"type": "accuracy", "value": round(float(accuracy[model]), 6),
                    "name": f"Accuracy, {label} ({group['group']})"}
                   for model, label in (("ticket", "ticket"), ("dense", "dense model")) if _finite(accuracy.get(model))]
        if metrics:
            results.append({"task": _task(document),
                            "dataset": {"type": f"sha256:{data['sha256'][:16]}",
                                        "name": f"Audit data, {group['group']} ({group['n']:,} rows)",
                                        "config": str(group["group"]), "split": data.get("split") or "audit"},
                            "metrics": metrics})
    return [{"name": model_name, "results": results}]


def bias_section(document: Mapping[str, Any]) -> str:
    """The "Bias, Risks, and Limitations" section in plain words, numbers from the report."""
    data, models = document["data"], document["models"]
    overall = document.get("performance", {}).get("overall", {}).get("metrics", {}).get("accuracy", {})
    lines = ["## Bias, Risks, and Limitations", "",
             f"This model is a pruned version (a \"ticket\", {models['ticket']['sparsity'] * 100:.1f}% of weights "
             f"zero) of a dense model. It was audited against the dense model with ticketaudit "
             f"{document['tool_version']} on {data['rows']:,} rows, group by group for "
             f"{', '.join(escape(s) for s in data['sensitive'])} and their intersections.", ""]
    if _finite(overall.get("delta")):
        lines += [f"- Overall accuracy went from {overall['dense'] * 100:.1f}% (dense) to "
                  f"{overall['ticket'] * 100:.1f}% (ticket), a change of {overall['delta'] * 100:+.2f} points.", ""]
    lines += [f"**Audit verdict: {document['verdict']}** — {VERDICT_WORDS[document['verdict']]} "
              f"(checks: {count_words(document)}); {gate_line(document)}.", ""]
    for status, title in (("fail", "Harms found"), ("inconclusive", "What the audit data could not show"),
                          ("not_evaluated", "Policy gates the audit could not evaluate")):
        checks = [c for c in document["checks"] if c["status"] == status]
        if checks:
            lines += [f"### {title}", ""] + [f"- {check_sentence(c, quote=escape)}" for c in checks] + [""]
    small = [g["group"] for g in document["subgroups"] if g.get("insufficient")]
    lines += ["### Limitations", "",
              "- The figures hold for the audit data (sha256 " + data["sha256"][:16] + "…) and the groups it "
              "contains; groups absent from it, or other populations, were not examined.",
              "- Differences are paired (the same rows through both models); intervals are at "
              f"{document.get('policy', {}).get('confidence', 0.95):.0%} confidence and the checks are corrected "
              "for their number."]
    if small:
        lines.append(f"- Too few rows to audit at all: {', '.join(escape(g) for g in small)}.")
    return "\n".join(lines) + "\n"


def render_model_card(report: Any, *, model_name: str = "ticket") -> str:
    """YAML front matter (``model-index``) followed by the bias section, as Markdown, of an audit
    (result, JSON document or report.json path)."""
    import yaml

    document = as_document(report)
    metadata = visible_controls(yaml.safe_dump({"model-index": model_index(document, model_name=model_name)},
                                               sort_keys=False, allow_unicode=True, width=1_000))
    return f"---\n{metadata}---\n\n{bias_section(document)}"
