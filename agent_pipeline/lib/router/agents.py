"""The agent registry (``config/agents.yaml``): which agent serves which label.

Plain data, no Dagster. ``AgentRegistry.route_for_label`` is the single place that turns a
label into a route; the router and the evaluation both use it, so "expected route" and
"predicted route" can never disagree about the map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.router.decision import FALLBACK_ROUTE, OOS_LABEL


@dataclass(frozen=True)
class AgentRegistry:
    fallback_agent: str
    label_to_agent: dict[str, str]
    unassigned: frozenset[str] = field(default_factory=frozenset)
    descriptions: dict[str, str] = field(default_factory=dict)
    # Declared rules, each under the agent it routes to (``agents.<agent>.rules``): raw specs
    # ``{"name", "all", "label"}`` in file order; ``model.rules_from_config`` compiles them.
    rules: tuple[dict, ...] = ()

    @property
    def agents(self) -> list[str]:
        return sorted(set(self.label_to_agent.values()))

    @property
    def routes(self) -> list[str]:
        """Every route a decision can take: each agent, then the fallback."""
        return self.agents + [FALLBACK_ROUTE]

    @property
    def known_labels(self) -> frozenset[str]:
        return frozenset(self.label_to_agent) | self.unassigned | {OOS_LABEL}

    def route_for_label(self, label: str) -> str:
        """The route a label maps to: its agent, or the fallback (``oos``, unassigned, unknown)."""
        return self.label_to_agent.get(label, FALLBACK_ROUTE)

    def agent_for_route(self, route: str) -> str:
        return self.fallback_agent if route == FALLBACK_ROUTE else route

    def to_dict(self) -> dict:
        agents: dict[str, dict] = {}
        for label, agent in sorted(self.label_to_agent.items()):
            agents.setdefault(agent, {"description": self.descriptions.get(agent, ""), "labels": []})
            agents[agent]["labels"].append(label)
        return {"fallback_agent": self.fallback_agent, "agents": agents, "unassigned": sorted(self.unassigned)}

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<dict>") -> AgentRegistry:
        if not isinstance(raw, dict) or "agents" not in raw:
            raise ConfigError(f"{source}: expected a mapping with an 'agents' key")
        fallback = str(raw.get("fallback_agent") or "general")
        label_to_agent: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        rules: list[dict] = []
        for agent, spec in (raw.get("agents") or {}).items():
            if agent == FALLBACK_ROUTE:
                raise ConfigError(f"{source}: '{FALLBACK_ROUTE}' is reserved and cannot name an agent")
            if not isinstance(spec, dict) or not isinstance(spec.get("labels"), list):
                raise ConfigError(f"{source}: agent '{agent}' needs a 'labels' list")
            descriptions[str(agent)] = str(spec.get("description", ""))
            agent_rules = spec.get("rules") or []
            if not isinstance(agent_rules, list):
                raise ConfigError(f"{source}: agents.{agent}.rules must be a list of rules")
            for i, rule in enumerate(agent_rules):
                where = f"{source}: agents.{agent}.rules[{i}]"
                if not isinstance(rule, dict) or not {"name", "all", "label"} <= set(rule):
                    raise ConfigError(f"{where}: a rule needs 'name', 'all' (patterns) and 'label', got {rule!r}")
                if str(rule["label"]) not in {str(x) for x in spec["labels"]}:
                    raise ConfigError(
                        f"{where}: rule '{rule['name']}' sets label '{rule['label']}', which is not one of "
                        f"agent '{agent}''s labels; a rule belongs to the agent it routes to"
                    )
                rules.append(dict(rule))
            for label in spec["labels"]:
                label = str(label)
                if label in label_to_agent:
                    raise ConfigError(
                        f"{source}: label '{label}' is listed under both '{label_to_agent[label]}' and '{agent}'"
                    )
                if label == OOS_LABEL:
                    raise ConfigError(f"{source}: '{OOS_LABEL}' means out of scope and cannot have an agent")
                label_to_agent[label] = str(agent)
        unassigned = frozenset(str(x) for x in raw.get("unassigned") or [])
        both = unassigned & set(label_to_agent)
        if both:
            raise ConfigError(f"{source}: labels both assigned and unassigned: {sorted(both)}")
        return cls(fallback, label_to_agent, unassigned, descriptions, tuple(rules))


def load_agent_registry(path: Path | str) -> AgentRegistry:
    """``config/agents.yaml`` validated by its schema (``config_schema.validate_agents``); one-line ``ConfigError``."""
    from agent_pipeline.lib.router.config_schema import load_yaml_file, validate_agents

    raw = load_yaml_file(path, "agent registry")
    cfg = validate_agents(raw, source=str(path))
    return AgentRegistry.from_dict(cfg.model_dump(exclude_none=True), source=str(path))


def load_yaml(path: Path | str, what: str) -> dict:
    """A YAML mapping (``{}`` for an empty file); ``ConfigError`` naming the file (and line) otherwise."""
    from agent_pipeline.lib.router.config_schema import load_yaml_file

    raw = load_yaml_file(path, what)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw
