"""A run's config cannot choose its own promotion policy or the name written into the audit log.

Dagster lets run config (the launchpad, ``dagster job execute -c``) override any resource field,
including ones the definitions bound from the environment. For ``policy.config_path`` and
``mlflow.user`` that would let one run promote under a laxer policy (no approval, fewer gates)
or record someone else as the promoter; the resources refuse it when the run starts, before any
step. The same values as the deployment's (what a launchpad scaffold fills in) are accepted.
"""

from __future__ import annotations

import dagster as dg
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.lib.core import settings

JOB = "promote_approved_job"  # champion_model: the step that moves the alias


def launch(run_config: dict) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return (
            defs()
            .resolve_job_def(JOB)
            .execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
        )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """Every failure event's message and its error chain (the resource's error is the cause)."""
    failures = [e for e in result.all_events if e.is_failure]
    assert failures, "the run did not fail"
    parts = []
    for event in failures:
        parts.append(str(event.message))
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            parts.append(error.message)
            error = error.cause
    return " ".join(parts)


@pytest.mark.parametrize(
    ("resource", "field", "value"),
    [("policy", "config_path", "/tmp/lax-policy.yaml"), ("mlflow", "user", "risk-officer")],
)
def test_a_run_config_override_of_governance_settings_is_refused(pipeline_env, resource, field, value):
    result = launch({"resources": {resource: {"config": {field: value}}}})
    assert not result.success
    message = failure_message(result)
    assert f"run config sets resources.{resource}.config {field}={value!r}" in message, message
    assert "not in a run's config; nothing was run" in message
    assert not result.get_step_success_events()  # refused before any step ran


def test_the_deployments_own_values_in_run_config_are_accepted(pipeline_env, monkeypatch):
    policy = str(settings.DEFAULT_POLICY_CONFIG)
    monkeypatch.setenv("AGENT_PIPELINE_POLICY_CONFIG", policy)
    monkeypatch.delenv("AGENT_PIPELINE_USER", raising=False)
    result = launch({"resources": {"policy": {"config": {"config_path": policy}}, "mlflow": {"config": {"user": ""}}}})
    # The resources start; champion_model then fails for its own reason (nothing to promote yet).
    assert not result.success
    assert "run config sets" not in failure_message(result)
