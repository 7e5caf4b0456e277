"""Schemas of ``config/agents.yaml`` and ``config/router.yaml``: refused early, in one line.

Both files are validated with pydantic (v2, ``extra="forbid"``, strict types) before anything
trains: an unknown key, a wrong type (``C: ten``), a label YAML read as a boolean (``no``), an
unknown label in a rule, a fallback agent that is not declared, a regular expression that does
not compile. The error is a ``ConfigError`` whose message is one line naming the file and the
dotted key, with what was found and what is expected::

    config/router.yaml: classifier.C: Input should be a valid number (got 'ten')
    config/agents.yaml: fallback_agent: 'no_such_agent' is not declared under agents (declared: banking, ...)

Semantic settings (tier names, ranges) stay where they are used (``TrainSettings``), whose
errors also name the key. The promotion policy has its own loader (``lib/registry/policy.py``).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.router.decision import FALLBACK_ROUTE, OOS_LABEL

Number = StrictFloat  # strict float accepts ints, refuses strings and booleans
Name = Annotated[StrictStr, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- config/agents.yaml ------------------------------------------------------------------------
class RuleSpec(_Strict):
    name: Name
    all: Annotated[list[StrictStr], Field(min_length=1)]
    label: Name


class AgentSpec(_Strict):
    description: StrictStr = ""
    labels: list[Name] = Field(default_factory=list)
    # Declared rules routing to this agent (tried first, in file order); each sets one of its labels.
    rules: list[RuleSpec] = Field(default_factory=list)
    # Where the agent answers (the dispatcher, README "Safety and resilience gates"); optional.
    endpoint: StrictStr | None = None
    timeout_ms: Annotated[Number, Field(gt=0)] | None = None


class FallbackSpec(_Strict):
    endpoint: StrictStr | None = None
    timeout_ms: Annotated[Number, Field(gt=0)] | None = None


class AgentsConfig(_Strict):
    fallback_agent: Name = "general"
    agents: dict[Name, AgentSpec]
    unassigned: list[Name] = Field(default_factory=list)
    fallback: FallbackSpec | None = None


# -- config/router.yaml ------------------------------------------------------------------------
class ClassifierSpec(_Strict):
    tier: StrictStr | None = None
    fast_model: StrictStr | None = None
    svm_C: Number | None = None
    svm_temperature: Number | None = None
    nb_alpha: Number | None = None
    nb_weight: Number | None = None
    nb_temperature: Number | None = None
    C: Annotated[Number, Field(gt=0)] | None = None
    max_iter: Annotated[StrictInt, Field(ge=1)] | None = None
    tol: Annotated[Number, Field(gt=0)] | None = None
    embedding_weight: Number | None = None
    accurate_tol: Annotated[Number, Field(gt=0)] | None = None
    cascade_threshold: Annotated[Number, Field(ge=0, le=1)] | None = None
    encoder_precision: StrictStr | None = None
    static_embedding_weight: Number | None = None


class CostsSpec(_Strict):
    misroute: Annotated[Number, Field(ge=0)] | None = None
    unnecessary_fallback: Annotated[Number, Field(ge=0)] | None = None


class ThresholdSpec(_Strict):
    objective: StrictStr | None = None
    grid_start: Annotated[Number, Field(ge=0, le=1)] | None = None
    grid_stop: Annotated[Number, Field(ge=0, le=1)] | None = None
    grid_step: Annotated[Number, Field(gt=0, le=1)] | None = None
    fallback_weight: Number | None = None
    oos_pool: StrictStr | None = None  # out-of-scope examples for threshold tuning ("" = none)
    # Threshold calibration by cross-validation (lib/router/calibration.py).
    method: StrictStr | None = None
    folds: Annotated[StrictInt, Field(ge=2)] | None = None
    folds_accurate: Annotated[StrictInt, Field(ge=2)] | None = None
    oos_share: Annotated[Number, Field(ge=0, le=1)] | None = None
    costs: CostsSpec | None = None
    min_fallback_recall: Annotated[Number, Field(ge=0, le=1)] | None = None
    cascade_grid_start: Annotated[Number, Field(ge=0, le=1)] | None = None
    cascade_grid_stop: Annotated[Number, Field(ge=0, le=1)] | None = None
    cascade_grid_step: Annotated[Number, Field(gt=0, le=1)] | None = None
    max_handoff_share: Annotated[Number, Field(ge=0, le=1)] | None = None
    jobs: Annotated[StrictInt, Field(ge=0)] | None = None


class GuardSpec(_Strict):
    enabled: StrictBool = True
    categories: dict[Name, list[StrictStr]] = Field(default_factory=dict)


class RouterConfig(_Strict):
    rules: list[RuleSpec] = Field(default_factory=list)
    classifier: ClassifierSpec | None = None
    threshold: ThresholdSpec | None = None
    random_seed: StrictInt | None = None
    guard: GuardSpec | None = None


# -- validation --------------------------------------------------------------------------------
def _dotted(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _allowed(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed where ``loc`` points (for an unknown-key message); [] when unknown."""
    ann: Any = model
    for part in loc[:-1]:
        ann = _unwrap(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(str(part))
            if field is None:
                return []
            ann = field.annotation
        elif getattr(ann, "__origin__", None) in (dict, list):
            ann = ann.__args__[-1]  # a key of a mapping, an index of a list: the value type
        else:
            return []
    ann = _unwrap(ann)
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


def _unwrap(ann: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    while True:
        args = getattr(ann, "__args__", None)
        origin = getattr(ann, "__origin__", None)
        if origin is Annotated or (hasattr(ann, "__metadata__") and args):
            ann = args[0]
        elif args and origin not in (dict, list) and type(None) in args:
            ann = next(a for a in args if a is not type(None))
        else:
            return ann


def _one_line(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    key = _dotted(loc)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err["type"] == "extra_forbidden":
        allowed = _allowed(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f"; allowed: {', '.join(allowed)}" if allowed else "")
        return f"{source}: {key}: unknown key{hint}{more}"
    got = err.get("input")
    if isinstance(got, bool) and err["type"] in ("string_type",):
        return (
            f"{source}: {key}: YAML read {str(got).lower()} as a boolean; quote it ('{'yes' if got else 'no'}')"
            f" to mean the text{more}"
        )
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{source}: {key}: {err['msg']}{shown}{more}"


def _validate(model: type[BaseModel], raw: Any, source: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, model, source)) from None


def validate_agents(raw: Any, source: str = "agents config") -> AgentsConfig:
    """``config/agents.yaml`` parsed and checked; ``ConfigError`` (one line, file and key) otherwise."""
    cfg = _validate(AgentsConfig, raw, source)
    if not cfg.agents:
        raise ConfigError(f"{source}: agents: declares no agent")
    owner: dict[str, str] = {}
    for agent, spec in cfg.agents.items():
        if agent == FALLBACK_ROUTE:
            raise ConfigError(f"{source}: agents.{agent}: '{FALLBACK_ROUTE}' is reserved and cannot name an agent")
        for i, label in enumerate(spec.labels):
            where = f"agents.{agent}.labels.{i}"
            if label == OOS_LABEL:
                raise ConfigError(f"{source}: {where}: '{OOS_LABEL}' means out of scope and cannot have an agent")
            if label in owner:
                raise ConfigError(f"{source}: {where}: label '{label}' is already listed under agent '{owner[label]}'")
            owner[label] = agent
    names: set[str] = set()
    for agent, spec in cfg.agents.items():
        for i, rule in enumerate(spec.rules):
            where = f"agents.{agent}.rules.{i}"
            if rule.name in names:
                raise ConfigError(f"{source}: {where}.name: rule name '{rule.name}' is used twice")
            names.add(rule.name)
            if rule.label not in spec.labels:
                close = difflib.get_close_matches(rule.label, spec.labels, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"{source}: {where}.label: '{rule.label}' is not one of agent '{agent}''s labels{hint}"
                )
            for j, pattern in enumerate(rule.all):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"{source}: {where}.all.{j}: invalid regular expression: {exc}") from None
    for i, label in enumerate(cfg.unassigned):
        if label in owner:
            raise ConfigError(f"{source}: unassigned.{i}: label '{label}' is also listed under agent '{owner[label]}'")
    if cfg.fallback_agent not in cfg.agents:
        declared = ", ".join(sorted(cfg.agents))
        raise ConfigError(
            f"{source}: fallback_agent: '{cfg.fallback_agent}' is not declared under agents (declared: {declared});"
            " declare it with `labels: []`"
        )
    if cfg.agents[cfg.fallback_agent].labels:
        raise ConfigError(
            f"{source}: agents.{cfg.fallback_agent}.labels: the fallback agent takes no labels (list them under"
            " `unassigned` to send them to it)"
        )
    return cfg


def validate_router(raw: Any, known_labels, source: str = "router config") -> RouterConfig:
    """``config/router.yaml`` parsed and checked against the agent registry's labels."""
    cfg = _validate(RouterConfig, raw, source)
    if cfg.rules:
        raise ConfigError(
            f"{source}: rules: moved to the agent map: list each rule under the agent it routes to "
            "(agents.<agent>.rules in config/agents.yaml) and remove 'rules' here"
        )
    if cfg.guard is not None:
        for category, patterns in cfg.guard.categories.items():
            for j, pattern in enumerate(patterns):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(
                        f"{source}: guard.categories.{category}.{j}: invalid regular expression: {exc}"
                    ) from None
    th = cfg.threshold
    if th is not None and th.grid_start is not None and th.grid_stop is not None and th.grid_start > th.grid_stop:
        raise ConfigError(f"{source}: threshold.grid_start: {th.grid_start} is above grid_stop {th.grid_stop}")
    return cfg


def load_yaml_file(path: Path | str, what: str) -> Any:
    """A YAML file's content; ``ConfigError`` naming the file (and line) when missing or not YAML."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: {what} contains a NUL byte; it is not a text file")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


__all__ = [
    "AgentsConfig",
    "RouterConfig",
    "load_yaml_file",
    "validate_agents",
    "validate_router",
    "Literal",
]
