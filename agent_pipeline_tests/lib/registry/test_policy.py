"""The promotion policy: both shipped files load; every malformed file is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.registry.policy import KNOWN_GATES, load_policy
from agent_pipeline.lib.router.agents import load_agent_registry

PROD = settings.PROJECT_ROOT / "deploy" / "policy.prod.yaml"


def default() -> dict:
    return yaml.safe_load(settings.DEFAULT_POLICY_CONFIG.read_text())


def write(tmp_path: Path, doc) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_default_policy_promotes_without_approval_and_names_every_gate():
    policy = load_policy(settings.DEFAULT_POLICY_CONFIG)
    assert policy.approval.required is False
    assert set(policy.required_gates) <= set(KNOWN_GATES)
    assert "human_approval" in policy.required_gates
    assert policy.gates.no_regression_vs_baseline.max_new_failures == 25
    assert policy.gates.latency_within_slo.slo_for("fast") == {"p50": 5.0, "p99": 25.0}
    assert policy.gates.latency_within_slo.slo_for("accurate") == {"p50": 10.0, "p99": 30.0}
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    policy.check_agents(agents.agents, "config/agents.yaml")


def test_prod_policy_requires_a_named_approver():
    policy = load_policy(PROD)
    assert policy.approval.required is True and policy.approval.approvers
    assert policy.required_gates == load_policy(settings.DEFAULT_POLICY_CONFIG).required_gates


def test_a_path_inside_the_repository_is_shown_relative():
    with pytest.raises(ConfigError, match=r"^config/no_such_policy\.yaml: policy file not found"):
        load_policy(settings.PROJECT_ROOT / "config" / "no_such_policy.yaml")


def test_wrong_type_names_the_dotted_key_and_the_value(tmp_path):
    doc = default()
    doc["gates"]["no_regression_vs_baseline"]["max_new_failures"] = "ten"
    assert error_of(write(tmp_path, doc)) == (
        "gates.no_regression_vs_baseline.max_new_failures: Input should be a valid integer, "
        "unable to parse string as an integer, got 'ten'"
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(requried_gates=["critical_cases_pass"]), "requried_gates: unknown key"),
        (lambda d: d["gates"].update(no_such_gate={"x": 1}), "gates.no_such_gate: unknown key"),
        (lambda d: d["gates"]["latency_within_slo"]["slo_ms"].update(p42=1.0), "gates.latency_within_slo.slo_ms.p42"),
        (lambda d: d.pop("required_gates"), "required_gates: missing"),
        (lambda d: d.pop("approval"), "approval: missing"),
        (lambda d: d["gates"].pop("no_regression_vs_baseline"), "gates.no_regression_vs_baseline: missing"),
        (lambda d: d.update(required_gates=[]), "required_gates: List should have at least 1 item"),
        (lambda d: d.update(required_gates=None), "required_gates: Input should be a valid list"),
        (lambda d: d.update(required_gates=["critical_cases_pas"]), "unknown gate 'critical_cases_pas'"),
        (lambda d: d.update(version=2), "version: Input should be 1"),
        (lambda d: d["approval"].update(required=True, approvers=[]), "no approvers are listed"),
        (lambda d: d["gates"]["no_regression_vs_baseline"]["tolerances"].update(macro_f1=-0.1), "macro_f1"),
    ],
)
def test_malformed_policy_is_one_clear_error(tmp_path, edit, expected):
    doc = default()
    edit(doc)
    assert expected in error_of(write(tmp_path, doc))


def test_empty_or_non_mapping_file_is_an_error_never_no_gates(tmp_path):
    assert "expected a mapping" in error_of(write(tmp_path, ""))
    assert "expected a mapping" in error_of(write(tmp_path, "- a\n- b\n"))
    assert "not valid YAML (line" in error_of(write(tmp_path, "version: 1\nrequired_gates: [a\n"))


def test_privileged_agent_must_exist(tmp_path):
    doc = default()
    doc["privileged_agents"] = ["banking", "payments"]
    policy = load_policy(write(tmp_path, doc))
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    with pytest.raises(ConfigError, match=r"privileged_agents: 'payments' is not an agent in config/agents.yaml"):
        policy.check_agents(agents.agents, "config/agents.yaml")
