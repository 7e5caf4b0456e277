"""The code location loads, and its graph is pinned: assets, groups, checks, jobs, automation.

A rename, a lost check, a gate that stops blocking, a schedule that stops running by default
or a broken upstream edge changes what operators see and what protects promotion; each fails
here with the difference spelled out, instead of surfacing in the UI or in production.
"""

from __future__ import annotations

import dagster as dg
import pytest

from agent_pipeline.definitions import defs as build_defs

ASSET_GROUPS = {
    "training_examples": "datasets",
    "validation_examples": "datasets",
    "golden_eval_set": "datasets",
    "synthetic_eval_set": "datasets",
    "safety_probes": "datasets",
    "router_candidate": "training",
    "candidate_evaluation": "evaluation",
    "champion_evaluation": "evaluation",
    "benchmark_baseline": "evaluation",
    "champion_model": "registry",
    "inference_log": "monitoring",
    "drift_report": "monitoring",
}
DATASET_CHECKS = {"passes_dataset_expectations", "no_text_shared_with_training"}
GATES = {
    "no_regression_vs_baseline",
    "critical_cases_pass",
    "routing_is_stable",
    "latency_within_slo",
    "safety_probes_pass",
    "survives_agent_faults",
    "human_approval",
    "generalizes_to_holdout",
    "agrees_with_champion_on_traffic",
}
# asset -> {check name: blocking}
CHECKS = {
    "training_examples": {"passes_dataset_expectations": True},
    "validation_examples": dict.fromkeys(DATASET_CHECKS, True),
    "golden_eval_set": dict.fromkeys(DATASET_CHECKS, True),
    "synthetic_eval_set": dict.fromkeys(DATASET_CHECKS, True),
    "safety_probes": {"passes_dataset_expectations": True},
    "candidate_evaluation": dict.fromkeys(GATES, True),
    "champion_evaluation": {"champion_holds_baseline": False},
    "inference_log": {"traffic_received": False, "landing_files_parsed": False, "landing_files_named": False},
    "drift_report": {"no_drift_detected": False},
}
JOBS = {
    "train_and_promote_job",
    "champion_eval_job",
    "bless_baseline_job",
    "traffic_monitoring_job",
    "nightly_eval_job",
    "latency_recheck_job",
    "approve_candidate_job",
    "revoke_approval_job",
    "promote_approved_job",
}
RUNNING = dg.DefaultSensorStatus.RUNNING
SENSORS = {
    "landing_files_sensor": (RUNNING, "traffic_monitoring_job"),
    "drift_retrain_sensor": (RUNNING, "train_and_promote_job"),
    "eval_sets_changed_sensor": (RUNNING, "champion_eval_job"),
    "run_failure_alert_sensor": (RUNNING, None),
    "check_failure_alert_sensor": (RUNNING, None),
    "approval_sensor": (RUNNING, "promote_approved_job"),
}
UPSTREAM = {
    "champion_model": {"candidate_evaluation", "validation_examples"},
    "drift_report": {"inference_log", "champion_model"},
    "candidate_evaluation": {"router_candidate", "golden_eval_set", "synthetic_eval_set", "safety_probes"},
    "champion_evaluation": {"champion_model", "golden_eval_set", "synthetic_eval_set", "safety_probes"},
    "router_candidate": {"training_examples", "validation_examples"},
    "synthetic_eval_set": {"golden_eval_set", "validation_examples", "training_examples"},
}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_defs()


@pytest.fixture(scope="module")
def specs(defs) -> dict[str, dg.AssetSpec]:
    return {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}


def test_definitions_are_loadable(defs):
    dg.Definitions.validate_loadable(defs)


def test_asset_keys_and_groups_are_pinned(specs):
    assert {key: spec.group_name for key, spec in specs.items()} == ASSET_GROUPS


@pytest.mark.parametrize("key", sorted(ASSET_GROUPS))
def test_every_asset_describes_itself(specs, key):
    spec = specs[key]
    assert spec.description and spec.description.strip(), f"{key} has no description"
    assert spec.owners == ["team:ml-platform"]
    assert spec.kinds, f"{key} has no kinds"


def test_asset_checks_are_pinned_with_their_blocking_flags(defs):
    graph = defs.resolve_asset_graph()
    found: dict[str, dict[str, bool]] = {}
    for key in graph.asset_check_keys:
        found.setdefault(key.asset_key.to_user_string(), {})[key.name] = graph.get_check_spec(key).blocking
    assert found == CHECKS


@pytest.mark.parametrize("key,parents", sorted(UPSTREAM.items()))
def test_upstream_edges(specs, key, parents):
    assert {d.asset_key.to_user_string() for d in specs[key].deps} == parents


def test_only_monitoring_assets_are_daily_partitioned(specs):
    partitioned = {k for k, s in specs.items() if s.partitions_def is not None}
    assert partitioned == {"inference_log", "drift_report"}
    assert isinstance(specs["drift_report"].partitions_def, dg.DailyPartitionsDefinition)


def test_job_names_are_pinned(defs):
    assert {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")} == JOBS


def test_train_and_promote_job_runs_datasets_to_champion_and_nothing_else(defs):
    job = defs.resolve_job_def("train_and_promote_job")
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys} & set(ASSET_GROUPS)
    assert selected == {
        "training_examples",
        "validation_examples",
        "golden_eval_set",
        "synthetic_eval_set",
        "safety_probes",
        "router_candidate",
        "candidate_evaluation",
        "champion_model",
    }


def test_nightly_schedule(defs):
    repo = defs.get_repository_def()
    assert [s.name for s in repo.schedule_defs] == ["nightly_eval_schedule"]
    schedule = defs.resolve_schedule_def("nightly_eval_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "nightly_eval_job"


def test_sensors_names_statuses_and_targets(defs):
    repo = defs.get_repository_def()
    found = {s.name: (s.default_status, s.job_name if s.has_jobs else None) for s in repo.sensor_defs}
    assert found == SENSORS
    assert defs.resolve_sensor_def("drift_retrain_sensor").job_name == "train_and_promote_job"
    assert isinstance(defs.resolve_sensor_def("run_failure_alert_sensor"), dg.RunStatusSensorDefinition)
