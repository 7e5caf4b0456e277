"""Concurrent ``train_and_promote_job`` runs on one real instance never mix their models.

Each run is a separate OS process executing the job against the same ``DAGSTER_HOME`` (SQLite
instance with the repository's ``dagster.yaml``: the ``promotion`` pool limit of 1) and the same
MLflow registry and state folder, as runs launched by the daemon would. First two runs at once,
then three at once, one of them the run request of ``drift_retrain_sensor`` evaluated on a real
drift event. For every run: the version its ``router_candidate`` registered is the version its
``candidate_evaluation`` evaluated, every gate judged, and (when it promoted) the audit record
of that run names. Promotions never overlap and never put an older model over a newer one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from agent_pipeline.definitions import defs
from agent_pipeline.defs.monitoring.sensors import drift_retrain_sensor
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.registry.models import CHAMPION, ModelRegistry, read_audit
from agent_pipeline.lib.registry.ordering import ALLOW_OLDER_TAG
from agent_pipeline_tests.conftest import subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.drill]

RUNNER = """
import json, sys
import dagster as dg
from agent_pipeline.definitions import defs
with dg.DagsterInstance.get() as instance:
    job = defs().resolve_job_def("train_and_promote_job")
    result = job.execute_in_process(instance=instance, tags=json.loads(sys.argv[1]), raise_on_error=False)
    print("RESULT " + json.dumps({"run_id": result.run_id, "success": result.success}))
"""


@dataclass
class RunView:
    """What one run did, read back from the instance's event log."""

    run_id: str
    success: bool
    trained: str | None
    evaluated: str | None
    evaluation_id: str | None
    gate_versions: set[str]
    promoted: str | None
    failure: str | None
    promote_window: tuple[float, float] | None
    pool_waits: int
    tags: dict[str, str]


def launch(env: dict[str, str], tags: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(tags)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=settings.PROJECT_ROOT,
    )


def finish(proc: subprocess.Popen, timeout: float = 900) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"runner crashed (exit {proc.returncode}):\n{err[-3000:]}"
    return json.loads(lines[-1].removeprefix("RESULT "))


def view(instance: dg.DagsterInstance, run_id: str, success: bool) -> RunView:
    def md_of(asset: str) -> dict | None:
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            mat = e.asset_materialization
            if mat.asset_key == dg.AssetKey(asset):
                return {k: v.value for k, v in mat.metadata.items()}
        return None

    cand, ev, champ = md_of("router_candidate"), md_of("candidate_evaluation"), md_of("champion_model")
    gate_versions = {
        str(e.dagster_event.event_specific_data.metadata["model_version"].value)
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.asset_key == dg.AssetKey("candidate_evaluation")
    }
    failure = None
    for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        if e.step_key == "champion_model":
            data = e.dagster_event.step_failure_data
            failure = data.user_failure_data.description if data.user_failure_data else data.error.message
    window = None
    starts = [
        e.timestamp
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        if e.step_key == "champion_model"
    ]
    ends = [
        e.timestamp
        for e in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE})
        if e.step_key == "champion_model"
    ]
    if starts and ends:
        window = (starts[0], ends[-1])
    pool_waits = sum(
        1
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
        if e.step_key == "champion_model" and "blocked by limit for pool promotion" in (e.message or "")
    )
    return RunView(
        run_id=run_id,
        success=success,
        trained=str(cand["model_version"]) if cand else None,
        evaluated=str(ev["model_version"]) if ev else None,
        evaluation_id=str(ev["evaluation_id"]) if ev else None,
        gate_versions=gate_versions,
        promoted=str(champ["champion_version"]) if champ else None,
        failure=failure,
        promote_window=window,
        pool_waits=pool_waits,
        tags=dict(instance.get_run_by_id(run_id).tags),
    )


def train_and_promote() -> dg.JobDefinition:
    """Module-level, so ``dg.reconstructable`` can re-execute the job."""
    return defs().resolve_job_def("train_and_promote_job")


def reexecute_promotion(instance: dg.DagsterInstance, parent_run_id: str, tags: dict[str, str]) -> RunView:
    """Re-execute only ``champion_model`` of an earlier run: it reads that run's own evaluation."""
    with dg.execute_job(
        dg.reconstructable(train_and_promote),
        instance,
        tags=tags,
        reexecution_options=dg.ReexecutionOptions(parent_run_id=parent_run_id, step_selection=["champion_model"]),
        raise_on_error=False,
    ) as result:
        return view(instance, result.run_id, result.success)


def run_concurrently(env: dict[str, str], tag_sets: list[dict[str, str]]) -> list[dict]:
    procs = [launch(env, tags) for tags in tag_sets]
    return [finish(p) for p in procs]


@pytest.fixture(scope="module")
def concurrent_story(small_inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrent")
    home = root / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(settings.PROJECT_ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
    # Latency is judged elsewhere (test_latency.py); three training runs on two shared cores must
    # not turn this test into a latency lottery.
    policy = yaml.safe_load(small_inputs.policy_config.read_text())
    policy["gates"]["latency_within_slo"] = {"slo_ms": {"p50": 1000.0, "p99": 5000.0}}  # latency has its own tests
    (root / "policy.yaml").write_text(yaml.safe_dump(policy))
    env = subprocess_env(small_inputs, home)
    env["AGENT_PIPELINE_POLICY_CONFIG"] = str(root / "policy.yaml")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.PROJECT_ROOT), env.get("PYTHONPATH")]))

    phase1 = run_concurrently(env, [{"test/run": "A"}, {"test/run": "B"}])

    with pytest.MonkeyPatch.context() as mp:
        for k in ("DAGSTER_HOME", "AGENT_PIPELINE_HOME", "AGENT_PIPELINE_POLICY_CONFIG"):
            mp.setenv(k, env[k])
        with dg.DagsterInstance.get() as instance:
            # A real drift event for the sensor: a drift_report materialization that says drift.
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "drift_report",
                    partition="2026-11-30",
                    metadata={
                        "drift_detected": True,
                        "drifted_features": "text_length",
                        "reference_model_version": "1",
                    },
                )
            )
            tick = drift_retrain_sensor(dg.build_sensor_context(instance=instance, definitions=defs()))
            (request,) = tick if isinstance(tick, list) else [tick]
            assert isinstance(request, dg.RunRequest), tick
            sensor_tags = {**request.tags, "test/run": "S"}
            phase2 = run_concurrently(env, [{"test/run": "C"}, {"test/run": "D"}, sensor_tags])
            runs = {r["run_id"]: view(instance, r["run_id"], r["success"]) for r in phase1 + phase2}
            store = ModelRegistry(home=home)
            # Late promotions of the first run's (older) model, by re-executing its champion_model.
            first = phase1[0]["run_id"]
            champion_before_late = store.alias_version(CHAMPION)
            audit_before_late = read_audit(home)
            refused = reexecute_promotion(instance, first, {"test/run": "late"})
            after_refusal = (store.alias_version(CHAMPION), read_audit(home))
            allowed = reexecute_promotion(instance, first, {"test/run": "late", ALLOW_OLDER_TAG: "true"})
            yield {
                "late": {
                    "first": runs[first],
                    "champion_before": champion_before_late,
                    "audit_before": audit_before_late,
                    "refused": refused,
                    "after_refusal": after_refusal,
                    "allowed": allowed,
                    "audit_after_allowed": read_audit(home),
                },
                "phase1": [runs[r["run_id"]] for r in phase1],
                "phase2": [runs[r["run_id"]] for r in phase2],
                "audit": audit_before_late,
                "champion": champion_before_late,
                "home": home,
            }


def all_runs(story) -> list[RunView]:
    return story["phase1"] + story["phase2"]


def test_every_run_trained_a_version_of_its_own(concurrent_story):
    runs = all_runs(concurrent_story)
    trained = [r.trained for r in runs]
    assert None not in trained, [(r.tags.get("test/run"), r.failure) for r in runs]
    assert len(set(trained)) == len(runs) == 5


def test_every_run_evaluated_and_gated_exactly_the_version_it_trained(concurrent_story):
    for r in all_runs(concurrent_story):
        assert r.evaluated == r.trained, r
        assert r.gate_versions == {r.trained}, r
        assert r.evaluation_id.endswith(r.run_id[:8])


def test_each_audit_record_names_the_model_its_run_trained_and_evaluated(concurrent_story):
    runs = {r.run_id: r for r in all_runs(concurrent_story)}
    promotes = [rec for rec in concurrent_story["audit"] if rec["action"] == "promote"]
    assert promotes, "no run promoted"
    assert len({rec["dagster_run_id"] for rec in promotes}) == len(promotes)  # one record per run
    for rec in promotes:
        run = runs[rec["dagster_run_id"]]
        assert rec["version"] == run.trained == run.evaluated == run.promoted
        assert rec["evaluation_id"] == run.evaluation_id


def test_promotions_are_serialized_and_never_go_back_in_time(concurrent_story):
    promotes = [rec for rec in concurrent_story["audit"] if rec["action"] == "promote"]
    previous = None
    for rec in promotes:  # each promotion replaced the one recorded before it
        assert rec["previous_champion"] == previous
        assert previous is None or int(rec["version"]) > int(previous)
        previous = rec["version"]
    assert concurrent_story["champion"] == previous
    windows = sorted(r.promote_window for r in all_runs(concurrent_story) if r.promote_window)
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert start >= end - 0.5, "two champion_model steps ran at once despite the promotion pool"


def test_a_run_that_lost_the_race_says_why_and_changes_nothing(concurrent_story):
    for r in all_runs(concurrent_story):
        if r.promoted is None:
            assert not r.success
            assert r.failure is None or "trained before the current champion" in r.failure or "gates" in r.failure


def test_the_sensor_triggered_run_is_one_of_the_three(concurrent_story):
    (sensor_run,) = [r for r in concurrent_story["phase2"] if r.tags.get("agent_pipeline/trigger") == "drift"]
    assert sensor_run.tags["agent_pipeline/drift_partition"] == "2026-11-30"
    assert sensor_run.evaluated == sensor_run.trained


def test_a_late_promotion_of_an_older_model_is_refused_and_changes_nothing(concurrent_story):
    late = concurrent_story["late"]
    refused, first = late["refused"], late["first"]
    assert not refused.success and refused.promoted is None
    assert refused.failure.startswith(
        f"version {first.trained} was trained before the current champion {late['champion_before']}: not promoted"
    )
    assert late["after_refusal"] == (late["champion_before"], late["audit_before"])


def test_an_older_model_is_promoted_when_explicitly_asked(concurrent_story):
    late = concurrent_story["late"]
    allowed, first = late["allowed"], late["first"]
    assert allowed.success and allowed.promoted == first.trained  # the re-execution read its parent's evaluation
    (record,) = late["audit_after_allowed"][len(late["audit_before"]) :]
    assert (record["version"], record["previous_champion"]) == (first.trained, late["champion_before"])
    assert record["evaluation_id"] == first.evaluation_id and record["dagster_run_id"] == allowed.run_id


def test_report_table(concurrent_story, capsys):
    """Not an assertion: the table the closing note quotes (``pytest -s`` shows it)."""
    rows = [
        "| phase | run | trigger | trained | evaluated | promoted | waited for pool | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in ("phase1", "phase2"):
        for r in concurrent_story[phase]:
            outcome = "promoted" if r.promoted else (r.failure or "gate failed").split(":")[0][:70]
            rows.append(
                f"| {phase[-1]} | {r.tags.get('test/run')} {r.run_id[:8]} | {r.tags.get('agent_pipeline/trigger', 'manual')} "
                f"| v{r.trained} | v{r.evaluated} | {('v' + r.promoted) if r.promoted else '-'} "
                f"| {'yes' if r.pool_waits else 'no'} | {outcome} |"
            )
    with capsys.disabled():
        print("\n" + "\n".join(rows))
        print("audit:", [(rec["version"], rec["previous_champion"]) for rec in concurrent_story["audit"]])
    Path(concurrent_story["home"], "concurrency_table.md").write_text("\n".join(rows) + "\n")
