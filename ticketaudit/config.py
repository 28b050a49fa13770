"""Frozen settings: the release ``Policy`` (what fails the gate) and ``AuditConfig`` (how to run)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ._validation import check_fraction, check_int, describe, fail

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MSG_POLICY_UNKNOWN_KEY = "policy key '{key}' is unknown. Known keys: {known}."
MSG_POLICY_TOML = ("policy file '{path}' is not valid TOML: {error}. Fix the syntax (see docs/verdicts.md, "
                   "'Policy: every key').")
MSG_POLICY_TABLE = "policy file '{path}' has no [policy] table. Put the settings under a '[policy]' header."

def __getattr__(name: str) -> object:
    """``ANALYSES`` (deprecated; ``ticketaudit.analyses.registry.names()``): the registered analyses, in report order.
    Loaded by name at call time, so this data module never imports the analyses above it."""
    if name == "ANALYSES":
        import importlib
        import warnings

        warnings.warn("ticketaudit.config.ANALYSES is deprecated; use ticketaudit.analyses.registry.names()",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("ticketaudit.analyses.registry").names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Device = Literal["cpu", "cuda", "mps"]
from .choices import DEVICES, ENGINES  # noqa: E402  (re-exported: declared once there)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """When a ticket fails the release gate. Tolerances are absolute (0.01 = 1 point).

    A check fails when its harm is material (point estimate beyond the tolerance) and significant at
    ``confidence`` after Holm's correction; it passes when its simultaneous bound rules out a harm as
    large as the tolerance; otherwise it is inconclusive (see ``checks``).
    """

    confidence: float = 0.95
    min_group_size: int = 30
    max_overall_accuracy_drop: float = 0.01
    max_group_excess_drop: float = 0.02
    max_gap_widening: float = 0.02
    max_tpr_gap_widening: float = 0.03
    max_fpr_gap_widening: float = 0.03
    on_insufficient: Literal["warn", "fail"] = "warn"
    on_inconclusive: Literal["warn", "fail"] = "warn"
    """An inconclusive verdict (some check can neither pass nor fail on these rows): exit 0 with the
    inconclusive groups named first ("warn"), or exit 1 ("fail")."""
    on_not_evaluated: Literal["inconclusive", "fail"] = "inconclusive"
    """A gate the policy sets that this audit could not evaluate (its analysis did not run, or does not apply to
    this model or task): reported as a ``not_evaluated`` check that counts in the verdict as this status."""
    max_tpr_drop: float | None = None
    """Optional: gate each group's fall in true-positive rate (dense minus ticket)."""
    max_fpr_rise: float | None = None
    """Optional: gate each group's rise in false-positive rate (ticket minus dense)."""
    max_selection_rate_change: float | None = None
    """Optional: gate each group's change in selection rate, either way."""
    max_sensitive_reliance_increase: float | None = None
    """Optional: gate the rise (ticket - dense) in the share of attribution on the sensitive columns."""
    max_group_entropy_shift: float | None = None
    """Optional: gate a group's attention-entropy change minus the rest's, in either direction."""
    max_bias_score_increase: float = 0.05
    """Language models on BBQ: gate each category's rise in bias score (ticket - dense), per context condition."""
    max_stereotype_preference_increase: float = 0.03
    """Language models on CrowS-Pairs: gate each bias type's rise in the share of pairs where the stereotype wins."""
    max_group_excess_loss_increase: float = 0.05
    """Language models on texts (``--task likelihood``): gate each group's rise in loss per token (nats) beyond the
    rise on the rest of the texts (0.05: the group's perplexity grows about 5% more than the others')."""

    def __post_init__(self) -> None:
        check_fraction("policy.confidence", self.confidence, low=0.5, high=1.0)
        check_int("policy.min_group_size", self.min_group_size, low=1, high=10**9)
        for name in ("max_overall_accuracy_drop", "max_group_excess_drop", "max_gap_widening",
                     "max_tpr_gap_widening", "max_fpr_gap_widening", "max_bias_score_increase",
                     "max_stereotype_preference_increase", "max_group_excess_loss_increase"):
            check_fraction(f"policy.{name}", getattr(self, name), low=0.0, high=1.0, open_low=False)
        for name in ("max_sensitive_reliance_increase", "max_group_entropy_shift", "max_tpr_drop", "max_fpr_rise",
                     "max_selection_rate_change"):
            if getattr(self, name) is not None:
                check_fraction(f"policy.{name}", getattr(self, name), low=0.0, high=1.0, open_low=False)
        for name in ("on_insufficient", "on_inconclusive"):
            if getattr(self, name) not in ("warn", "fail"):
                fail(f"policy.{name} must be 'warn' or 'fail', got {describe(getattr(self, name))}.")
        if self.on_not_evaluated not in ("inconclusive", "fail"):
            fail(f"policy.on_not_evaluated must be 'inconclusive' or 'fail', got {describe(self.on_not_evaluated)}.")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Policy:
        """Build from a dict, rejecting unknown keys by name."""
        if not isinstance(values, dict):
            fail(f"a policy must be a mapping of policy keys to values, got {describe(values)}.")
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                fail(MSG_POLICY_UNKNOWN_KEY.format(key=key, known=", ".join(known)))
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> Policy:
        """Read a ``[policy]`` table from a TOML file."""
        path = Path(path)
        if not path.is_file():
            fail(f"policy file '{path}' does not exist. Check the path.")
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            fail(MSG_POLICY_TOML.format(path=path, error=error))
        if "policy" not in document or not isinstance(document["policy"], dict):
            fail(MSG_POLICY_TABLE.format(path=path))
        extra = [k for k in document if k != "policy"]
        if extra:
            fail(f"policy file '{path}' has an unknown table '{extra[0]}'. Only [policy] is read.")
        return cls.from_mapping(document["policy"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def counted_status(self, status: str) -> str:
        """What a check's status counts as in the verdict: ``not_evaluated`` as ``on_not_evaluated`` says."""
        return self.on_not_evaluated if status == "not_evaluated" else status

    def fails_gate(self, status: str) -> bool:
        """Whether a check of this status makes the release gate fail (exit 1): a failure, or what counts as
        inconclusive when ``on_inconclusive = "fail"``. JUnit, Markdown, MLflow and the exit code all ask this."""
        counted = self.counted_status(status)
        return counted == "fail" or (counted == "inconclusive" and self.on_inconclusive == "fail")


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    """How to run an audit. ``seed``, ``n_boot``, ``max_rows`` and ``precision`` can change results;
    ``batch_size`` and ``device`` are speed settings that never do in float64 precision."""

    seed: int = 0
    n_boot: int = 1000
    batch_size: int = 1024
    device: Device = "cpu"
    max_rows: int | None = None
    analyses: tuple[str, ...] = ("metrics",)
    """The analyses that ran (``metrics`` always does); names from ``ticketaudit.analyses.registry``."""
    ece_bins: int = 10
    max_unseen_share: float = 0.05
    """Most rows (share) of a one-hot column whose value the model has no category for."""
    precision: str = "float64"
    """What the models ran in (float64, float32 or bfloat16: ``--precision`` resolved)."""
    precision_reason: str = "requested"
    """Why that precision: requested, or ``auto``'s rule with the estimated cost of the forward passes."""

    def __post_init__(self) -> None:
        check_int("seed", self.seed, low=0, high=2**32 - 1)
        check_int("n_boot", self.n_boot, low=100, high=100_000)
        check_int("batch_size", self.batch_size, low=1, high=10_000_000)
        check_int("ece_bins", self.ece_bins, low=2, high=100)
        if self.max_rows is not None:
            check_int("max_rows", self.max_rows, low=1, high=10**12)
        if self.device not in DEVICES:
            fail(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}.")
        if not self.analyses or not all(isinstance(name, str) for name in self.analyses):
            fail(f"analyses must name at least one analysis, got {describe(self.analyses)}.")


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Where and how fast the rows run; none of these can change a result."""

    engine: str = "local"
    device: str = "cpu"
    batch_size: int | None = None
    """Rows (tables) or tokens (text) per forward pass; None: the modality's default."""
    num_workers: int = 2
    ray_address: str | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            fail(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}.")
        if self.device not in DEVICES:
            hint = " (devices are lower case)" if str(self.device).lower() in DEVICES else ""
            fail(f"device must be one of {', '.join(DEVICES)}{hint}; got {self.device!r}.")
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, low=1, high=10_000_000)
        check_int("--num-workers", self.num_workers, low=1, high=10_000)
        if not 0 <= self.gpus_per_worker <= 64:
            fail(f"--gpus-per-worker must be in [0, 64], got {self.gpus_per_worker}.")
        if self.engine != "ray" and (self.ray_address is not None or self.gpus_per_worker):
            fail("ray_address (--ray-address) and gpus_per_worker (--gpus-per-worker) belong to engine='ray' "
                 "(--engine ray); add it or drop them.")
