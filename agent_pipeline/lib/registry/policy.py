"""The promotion policy (``config/policy.yaml``): which gates a promotion needs, their thresholds,
who may approve, which agents are privileged. Validated at load; nothing has a silent default.

Every model forbids unknown keys, so a typo is an error naming the file and the dotted key
(``config/policy.yaml: gates.no_regression_vs_baseline.max_new_failures: Input should be a valid
integer, got 'ten'``) instead of a threshold quietly ignored. ``required_gates`` must be a
non-empty list of known gate names: a policy can never mean "no gates".

Adding a gate: give it its own section model below, add the field to ``GateSections``
(optional with a default, or required), and add its name to ``KNOWN_GATES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError

# Every gate a policy may require: the blocking checks on ``candidate_evaluation`` with that
# name. A name not listed here is a typo (it would block every promotion as "not run").
KNOWN_GATES: tuple[str, ...] = (
    "no_regression_vs_baseline",
    "critical_cases_pass",
    "routing_is_stable",
    "latency_within_slo",
    "human_approval",
    "safety_probes_pass",
    "survives_agent_faults",
    "generalizes_to_holdout",
    "agrees_with_champion_on_traffic",
    "routing_is_stable",
)

# Gates renamed since an earlier policy: named in the error, so an old policy file says what to change.
RENAMED_GATES: dict[str, str] = {"routing_is_deterministic": "routing_is_stable"}


class Strict(BaseModel):
    """Base of every policy model: unknown keys are errors, values are not coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ApprovalPolicy(Strict):
    """Human sign-off: whether ``human_approval`` needs a recorded approval, and who may give one."""

    required: bool
    approvers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _approvers_when_required(self) -> ApprovalPolicy:
        if self.required and not self.approvers:
            raise ValueError("approval is required but no approvers are listed (nobody could approve)")
        if len(set(self.approvers)) != len(self.approvers):
            raise ValueError("approvers are listed twice")
        return self


class RegressionGate(Strict):
    """``no_regression_vs_baseline``: a metric regresses when candidate < baseline - tolerance."""

    tolerances: dict[str, NonNegativeFloat]
    max_new_failures: NonNegativeInt


class Percentiles(Strict):
    """Latency limits in milliseconds; a percentile not given is not gated."""

    p50: PositiveFloat | None = None
    p90: PositiveFloat | None = None
    p95: PositiveFloat | None = None
    p99: PositiveFloat | None = None

    def limits(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}

    @model_validator(mode="after")
    def _not_empty(self) -> Percentiles:
        if not self.limits():
            raise ValueError("no percentile given (p50, p90, p95 or p99)")
        return self


class LatencyMeasurement(Strict):
    """How ``latency_within_slo`` measures (``lib/evaluation/latency.py`` ``LatencyPlan``): the
    candidate interleaved with the champion, ``rounds`` of ``sample`` texts after ``warmup``."""

    max_ratio_vs_champion: float = Field(default=1.5, ge=1.0)
    ratio_on: list[Literal["p50", "p90", "p95", "p99"]] = Field(default_factory=lambda: ["p50"], min_length=1)
    warmup: NonNegativeInt = 30
    rounds: int = Field(default=7, ge=3)
    sample: int = Field(default=200, ge=10)
    max_spread: PositiveFloat = 0.5
    basis: Literal["cpu", "wall"] = "cpu"


class LatencyGate(Strict):
    """``latency_within_slo``: single-request latency through the whole router, per tier."""

    slo_ms: Percentiles
    slo_ms_by_tier: dict[Literal["fast", "accurate", "cascade", "external"], Percentiles] = Field(default_factory=dict)
    measurement: LatencyMeasurement = Field(default_factory=LatencyMeasurement)

    def slo_for(self, tier: str) -> dict[str, float]:
        return (self.slo_ms_by_tier.get(tier) or self.slo_ms).limits()  # type: ignore[call-overload]


class SafetyGate(Strict):
    """``safety_probes_pass``: attack success rate (ASR) on ``data/safety_probes.csv``."""

    max_asr_critical: NonNegativeFloat
    tolerance: NonNegativeFloat


class ChaosGate(Strict):
    """``survives_agent_faults``: the dispatcher drill against misbehaving loopback agents
    (``lib/evaluation/chaos.py`` ``ChaosSettings``; omitted keys take its defaults)."""

    seed: int = 20261202
    max_requests: PositiveInt = 200
    fault_rate: float = Field(default=0.3, ge=0.0, le=1.0)
    timeout_ms: PositiveFloat = 80.0
    fallback_timeout_ms: PositiveFloat = 500.0
    budget_ms: PositiveFloat = 700.0
    stall_s: PositiveFloat = 1.0
    max_added_p99_ms: PositiveFloat = 300.0
    failure_threshold: PositiveInt = 3
    latency_repeats: PositiveInt = 3


class HoldoutMetrics(Strict):
    """Per-metric values (fractions) for the holdout gate; a metric not given is not judged."""

    in_scope_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    route_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    fallback_recall: float | None = Field(default=None, ge=0.0, le=1.0)
    label_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    macro_f1: float | None = Field(default=None, ge=0.0, le=1.0)

    def values(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class HoldoutGate(Strict):
    """``generalizes_to_holdout`` (``lib/evaluation/holdout.py``): the sealed holdout must hold the
    ``floors``; each metric on the evaluation sets may exceed the holdout's by at most ``max_gap``;
    more than ``max_leaked_share`` of holdout texts found in the training data fails the gate."""

    floors: HoldoutMetrics = Field(
        default_factory=lambda: HoldoutMetrics(in_scope_accuracy=0.88, route_accuracy=0.90, fallback_recall=0.50)
    )
    max_gap: HoldoutMetrics = Field(default_factory=lambda: HoldoutMetrics(in_scope_accuracy=0.05, route_accuracy=0.05))
    max_leaked_share: float = Field(default=0.02, ge=0.0, le=1.0)


class ReplayGate(Strict):
    """``agrees_with_champion_on_traffic`` (``lib/evaluation/replay.py``): candidate and champion
    replay the inference log's last ``days`` days."""

    days: PositiveInt = 7
    max_disagreement_rate: float = Field(default=0.35, ge=0.0, le=1.0)
    max_accuracy_drop: float = Field(default=0.02, ge=0.0, le=1.0)
    min_reviewed_rows: NonNegativeInt = 50
    # With a champion but no records in the window: pass as "nothing to compare" (false) or fail (true).
    require_traffic: bool = False


class StabilityGate(Strict):
    """``routing_is_stable`` (``lib/evaluation/stability.py``): each case routed ``repeats`` more
    times; our routers must repeat exactly, a router not ours within ``flakiness_budget``."""

    repeats: PositiveInt = 2
    flakiness_budget: float = Field(default=0.02, ge=0.0, le=1.0)


class GateSections(Strict):
    """Thresholds per gate. Only known sections are accepted; a gate without thresholds has none.
    The three generalization gates' sections may be omitted: their defaults are the documented
    values in ``config/policy.yaml``."""

    no_regression_vs_baseline: RegressionGate
    latency_within_slo: LatencyGate
    safety_probes_pass: SafetyGate
    survives_agent_faults: ChaosGate
    generalizes_to_holdout: HoldoutGate = Field(default_factory=HoldoutGate)
    agrees_with_champion_on_traffic: ReplayGate = Field(default_factory=ReplayGate)
    routing_is_stable: StabilityGate = Field(default_factory=StabilityGate)


class Policy(Strict):
    version: Literal[1]
    required_gates: list[str] = Field(min_length=1)
    approval: ApprovalPolicy
    privileged_agents: list[str]
    gates: GateSections

    @model_validator(mode="after")
    def _known_gates(self) -> Policy:
        unknown = [g for g in self.required_gates if g not in KNOWN_GATES]
        if unknown and unknown[0] in RENAMED_GATES:
            raise ValueError(f"required_gates: {unknown[0]!r} is now called {RENAMED_GATES[unknown[0]]!r}")
        if unknown:
            raise ValueError(f"unknown gate {unknown[0]!r} in required_gates (known: {', '.join(KNOWN_GATES)})")
        if len(set(self.required_gates)) != len(self.required_gates):
            raise ValueError("required_gates lists a gate twice")
        if self.approval.required and "human_approval" not in self.required_gates:
            raise ValueError("approval.required is true but human_approval is not in required_gates")
        return self

    def check_agents(self, agents: list[str], source: str) -> None:
        """Every privileged agent exists in the agent registry (``source`` names that file)."""
        missing = [a for a in self.privileged_agents if a not in agents]
        if missing:
            raise ConfigError(
                f"privileged_agents: {missing[0]!r} is not an agent in {source} (agents: {', '.join(sorted(agents))})"
            )


def display_path(path: Path | str) -> str:
    """A path relative to the repository when it is inside it (what the user typed), else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(settings.PROJECT_ROOT))
    except ValueError:
        return str(p)


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key"
    if kind == "missing":
        return f"{loc}: missing"
    if kind in ("value_error", "assertion_error") or "input" not in err:
        return f"{loc}: {msg}" if err.get("loc") else msg
    return f"{loc}: {msg}, got {err['input']!r}"


def parse_policy(raw: Any, source: str) -> Policy:
    """Validate an already-parsed document; ``source`` names it in errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level (version, required_gates, approval, ...)")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc.errors()[0])}") from None


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file; any problem is one ``ConfigError`` line naming file and key."""
    source = display_path(path)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{source}: policy file not found (set AGENT_PIPELINE_POLICY_CONFIG or restore it)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{source}: not valid YAML{line}: {str(exc).splitlines()[0]}") from None
    return parse_policy(raw, source)
