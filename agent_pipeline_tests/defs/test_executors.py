"""The executor is chosen by configuration (AGENT_PIPELINE_EXECUTOR), not by editing code."""

from __future__ import annotations

import dagster as dg
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.defs.executors import selected_executor


def job_executor(monkeypatch, value: str | None) -> dg.ExecutorDefinition:
    if value is None:
        monkeypatch.delenv("AGENT_PIPELINE_EXECUTOR", raising=False)
    else:
        monkeypatch.setenv("AGENT_PIPELINE_EXECUTOR", value)
    return defs().resolve_job_def("train_and_promote_job").executor_def


def test_default_is_in_process(monkeypatch):
    assert job_executor(monkeypatch, None).name == "in_process"


def test_celery_selected_by_environment_with_its_broker(monkeypatch):
    monkeypatch.setenv("AGENT_PIPELINE_CELERY_BROKER", "redis://broker.internal:6379/3")
    monkeypatch.delenv("AGENT_PIPELINE_CELERY_BACKEND", raising=False)
    executor = job_executor(monkeypatch, "celery")
    assert executor.name == "celery"
    # The broker is the configured one, and results go to the same Redis unless told otherwise.
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success
    assert resolved.value["config"]["broker"] == "redis://broker.internal:6379/3"
    assert resolved.value["config"]["backend"] == "redis://broker.internal:6379/3"


def test_multiprocess_selected_by_environment(monkeypatch):
    assert job_executor(monkeypatch, "multiprocess").name == "multiprocess"


def test_unknown_executor_fails_closed_naming_the_variable():
    with pytest.raises(dg.DagsterInvariantViolationError, match="AGENT_PIPELINE_EXECUTOR='celeryy'.*in_process"):
        selected_executor("celeryy")
