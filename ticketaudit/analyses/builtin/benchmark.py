"""A language-model benchmark's own scores (BBQ bias scores, CrowS-Pairs stereotype preference) per category,
both models and the paired change, and the items the ticket newly gets wrong."""

from __future__ import annotations

from typing import Any

from ..base import Analysis, AuditContext, Batch, FinishContext, Worker

EXAMPLES_PER_CATEGORY = 5
POLICY_KEYS = {"bbq": ("max_bias_score_increase", ("bias_ambig", "bias_disambig"), "bias_score_increase"),
               "crows-pairs": ("max_stereotype_preference_increase", ("stereotype_preference",),
                               "stereotype_preference_increase")}


class _Answers:
    """Both models' answer on every item, with what the benchmark's scores read of it (a few bytes per item)."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.parts: list[dict[str, Any]] = []
        self.examples: dict[str, list[dict[str, Any]]] = {}

    def update(self, batch: Batch) -> None:
        import numpy as np

        frame = batch.frame
        column = "category" if self.benchmark == "bbq" else "bias_type"
        part = {"rows": batch.rows, "category": frame[column].astype(str).to_numpy(), "label": batch.labels,
                "dense": batch.proba_dense.argmax(axis=1), "ticket": batch.proba_ticket.argmax(axis=1)}
        if self.benchmark == "bbq":
            part.update(disambiguated=(frame["context_condition"] == "disambig").to_numpy(),
                        biased=frame[[f"bbq_biased_{i}" for i in range(3)]].to_numpy(dtype=bool),
                        unknown=frame["bbq_unknown"].to_numpy(dtype=np.int64))
        self.parts.append(part)
        self._keep_examples(batch, part)

    def _keep_examples(self, batch: Batch, part: dict[str, Any]) -> None:
        """The first items (by row) per category that the dense model answers right and the ticket wrong."""
        names = [f"ans{i}" for i in range(3)] if self.benchmark == "bbq" else ["choice_0", "choice_1"]
        for position in (part["dense"] == part["label"]).nonzero()[0]:
            category = str(part["category"][position])
            kept = self.examples.setdefault(category, [])
            if part["ticket"][position] == part["label"][position] or len(kept) >= EXAMPLES_PER_CATEGORY:
                continue
            row = batch.frame.iloc[int(position)]
            kept.append({"row": int(part["rows"][position]), "category": category, "prompt": str(row["prompt"]),
                         "right": _answer_text(row, names, int(part["label"][position])),
                         "ticket_answer": _answer_text(row, names, int(part["ticket"][position]))})

    def merge(self, other: _Answers) -> _Answers:
        self.parts += other.parts
        for category, kept in other.examples.items():
            self.examples[category] = (self.examples.get(category, []) + kept)[:EXAMPLES_PER_CATEGORY]
        return self


def _answer_text(row: Any, names: list[str], answer: int) -> str:
    return str(row[names[answer]]).strip()


class Benchmark(Analysis):
    name = "benchmark"
    summary = "a language-model benchmark's own scores (BBQ bias scores, CrowS-Pairs preference) per category"
    order = 5
    template = "_benchmark.html.j2"
    schema = {"type": "object"}

    def unavailable(self, *, dense: Any, ticket: Any, modality: Any) -> str | None:
        return None if modality.name == "choice" else "needs a language model audited with --benchmark bbq|crows-pairs"

    def plan(self, context: AuditContext) -> str | None:
        return getattr(context.modality, "benchmark", None)

    def accumulator(self, worker: Worker, planned: str | None) -> _Answers | None:
        return _Answers(planned) if planned else None

    def finish(self, state: _Answers | None, context: FinishContext) -> Any:
        if state is None:
            return None
        from ..benchmark_scores import AnsweredItems, benchmark_result
        import numpy as np

        def joined(key: str) -> Any:
            return np.concatenate([p[key] for p in state.parts]) if state.parts else np.empty(0)

        bbq = state.benchmark == "bbq"
        n = len(joined("rows"))
        items = AnsweredItems(rows=joined("rows"), category=joined("category"), label=joined("label"),
                              dense=joined("dense"), ticket=joined("ticket"),
                              disambiguated=joined("disambiguated") if bbq else np.zeros(n, dtype=bool),
                              biased=joined("biased") if bbq else np.zeros((n, 2), dtype=bool),
                              unknown=joined("unknown") if bbq else np.full(n, -1))
        examples = tuple(e for category in sorted(state.examples) for e in state.examples[category])
        mode = getattr(context.audit.modality.task, "choice_mode", None)
        return benchmark_result(items, benchmark=state.benchmark, n_boot=context.settings.n_boot,
                                seed=context.settings.seed, confidence=context.settings.confidence, examples=examples,
                                settings={"choices": mode} if mode else {})

    def candidates(self, result: Any, policy: Any) -> list[Any]:
        """Each category's rise in bias score (BBQ, per context condition) or stereotype preference (CrowS-Pairs)."""
        if result is None:
            return []
        import math

        from ..candidates import replicate_candidate

        key, metrics, family = POLICY_KEYS[result.benchmark]
        out = []
        for category, entry in result.per_category.items():
            for metric in metrics:
                delta = entry["change"][metric]["delta"]
                if delta is None or not math.isfinite(delta):
                    continue
                group = f"{result.group_name}={category}"
                if metric.startswith("bias_"):
                    group += "|context_condition=" + metric.removeprefix("bias_")
                out.append(replicate_candidate(
                    f"{family}:{group}", f"Rise in {metric.replace('_', ' ')} (ticket - dense)", group, metric, delta,
                    getattr(policy, key), result.replicates[category][metric]))
        return out

    def schema_properties(self) -> dict[str, Any]:
        return {"benchmarks": {"type": "object"}}

    def document(self, result: Any, audit: Any) -> dict[str, Any]:
        if result is None:
            return {}
        return {"benchmarks": {result.benchmark.replace("-", "_"): result.to_dict()}}


ANALYSIS = Benchmark()
