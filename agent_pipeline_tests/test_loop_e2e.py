"""End to end: drift -> sensor -> retrain -> promotion, on Dagster's public in-process API.

The real definitions and the real sensors, ticked with ``dg.build_sensor_context`` against one
instance; each run request is executed with ``execute_in_process`` on that instance, with the
request's tags and partition (what the daemon launches). No ``dagster._core``. The same story
on the real daemon is ``make demo`` (``scripts/demo.py``), tested by ``test_demo_daemon.py``
(marked ``integration``: it costs minutes of subprocess start-ups).

Inputs: the small training slice, golden set and router config of ``small_inputs``, but the
whole validation split (as the demo test explains: a 6-per-label validation slice makes the
retrained threshold turn on one example).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import yaml

from agent_pipeline.definitions import defs
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.monitoring import traffic
from agent_pipeline.lib.registry.models import ModelRegistry, read_audit

ROWS_PER_DAY = 800
DAYS_PER_PHASE = 3
SEED = 20261125
TRIGGER = "agent_pipeline/trigger"


class Loop:
    """The definitions, one instance, and each sensor's cursor between ticks."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.defs = defs()
        self.repo = self.defs.get_repository_def()
        self.instance = instance
        self.cursors: dict[str, str | None] = {}
        self.done_keys: set[str] = set()

    def tick(self, sensor: str) -> list[dg.RunRequest]:
        ctx = dg.build_sensor_context(
            instance=self.instance,
            repository_def=self.repo,
            cursor=self.cursors.get(sensor),
            resources=self.defs.resources,
        )
        data = self.repo.get_sensor_def(sensor).evaluate_tick(ctx)
        self.cursors[sensor] = data.cursor
        return list(data.run_requests or [])

    def execute(self, job: str, request: dg.RunRequest | None = None, **tags) -> dg.ExecuteInProcessResult:
        request = request or dg.RunRequest(tags=tags)
        self.done_keys.add(request.run_key or "")
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            tags=dict(request.tags),
            partition_key=request.partition_key,
            raise_on_error=False,
        )

    def drain(self, sensor: str, job: str) -> list[dg.ExecuteInProcessResult]:
        """One tick; each new request (by run key, as the daemon deduplicates) executed in order."""
        return [self.execute(job, r) for r in self.tick(sensor) if r.run_key not in self.done_keys]


def _materialized(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"run {result.run_id} did not materialize {asset}")


@pytest.mark.slow
def test_new_topic_drift_retrains_once_and_promotes_v2(small_inputs, pipeline_env, monkeypatch, tmp_path):
    home = pipeline_env
    monkeypatch.setenv("AGENT_PIPELINE_VALIDATION_DATA", str(settings.DEFAULT_VALIDATION_DATA))
    # The default threshold choice: cross-validation over train + validation (on 2 folds).
    monkeypatch.setenv("AGENT_PIPELINE_ROUTER_CONFIG", str(small_inputs.router_config_cv))
    # The story is about drift; the latency gate has its own test (defs/test_lifecycle.py). A
    # CI box shared by other jobs must not turn a slow p99 into a blocked promotion here.
    policy = yaml.safe_load(small_inputs.policy_config.read_text())
    policy["gates"]["latency_within_slo"] = {"slo_ms": {"p50": 1000.0, "p99": 5000.0}}
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    monkeypatch.setenv("AGENT_PIPELINE_POLICY_CONFIG", str(tmp_path / "policy.yaml"))
    today = datetime.now(UTC).date()
    pool = traffic.read_pool(settings.DEFAULT_TRAFFIC_POOL)
    store = ModelRegistry(home=home)

    (home / "dagster").mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        loop = Loop(instance)
        bootstrap = loop.execute("train_and_promote_job", **{TRIGGER: "bootstrap"})
        assert bootstrap.success and store.alias_version("champion") == "1"

        reports: dict[str, dict] = {}
        retrains: list[dg.ExecuteInProcessResult] = []
        for phase, (scenario, start) in enumerate(
            (("stable", today - timedelta(days=6)), ("new-topic", today - timedelta(days=3)))
        ):
            traffic.simulate(
                store.load(alias="champion"),
                pool,
                start=start,
                days=DAYS_PER_PHASE,
                scenario=scenario,
                seed=SEED,
                rows_per_day=ROWS_PER_DAY,
                landing=settings.landing_dir(home),
            )
            monitoring = loop.drain("landing_files_sensor", "traffic_monitoring_job")
            assert len(monitoring) == DAYS_PER_PHASE, f"phase {phase}: {len(monitoring)} monitoring runs"
            for result in monitoring:
                assert result.success, result.run_id
                reports[result.dagster_run.tags["dagster/partition"]] = _materialized(result, "drift_report")
            # One drift tick after the phase's days (several days can finish between two ticks:
            # the sensor walks every new report), then another: the cooldown holds.
            retrains += loop.drain("drift_retrain_sensor", "train_and_promote_job")
            assert not loop.drain("drift_retrain_sensor", "train_and_promote_job")
            assert not loop.drain("landing_files_sensor", "traffic_monitoring_job")  # each file once
            if phase == 0:
                assert not retrains, "stable traffic triggered a retrain"

        days = sorted(reports)
        stable, new_topic = days[:DAYS_PER_PHASE], days[DAYS_PER_PHASE:]
        for day in stable:
            assert reports[day]["drift_detected"] is False, (day, reports[day].get("drift_reasons"))
            assert not reports[day].get("insufficient_data"), day
        drifted = [day for day in new_topic if reports[day]["drift_detected"]]
        assert len(drifted) >= 2, {d: reports[d].get("drift_reasons") for d in new_topic}  # 2nd met the cooldown

        assert len(retrains) == 1
        (retrain,) = retrains
        assert retrain.success
        tags = retrain.dagster_run.tags
        assert (tags[TRIGGER], tags["agent_pipeline/drift_partition"]) == ("drift", drifted[0])
        assert "route" in tags["agent_pipeline/drifted_features"]
        assert _materialized(retrain, "training_examples")["n_feedback"] > 0
        assert _materialized(retrain, "router_candidate")["model_version"] == "2"
        candidate = _materialized(retrain, "router_candidate")
        assert candidate["threshold_method"] == "cross_validation" and candidate["cv_folds"] == 2
        # The retrain's candidate replayed the recent (served) traffic against champion v1.
        replay = next(
            e for e in retrain.get_asset_check_evaluations() if e.check_name == "agrees_with_champion_on_traffic"
        )
        numbers = {k: v.value for k, v in replay.metadata.items()}
        print("replay gate on the drift retrain:", replay.description)
        assert replay.passed and numbers["compared"] is True and numbers["n_replayed"] > 0
        assert numbers["n_excluded_trained_on"] > 0  # reviewed feedback became training data: not judged on it
        promoted = _materialized(retrain, "champion_model")
        assert promoted["champion_version"] == "2" and promoted["previous_champion"] == "1"

    assert store.alias_version("champion") == "2"
    assert store.alias_version("previous-champion") == "1"
    last = read_audit(home)[-1]
    assert (last["action"], last["version"], last["dagster_run_id"]) == ("promote", "2", retrain.run_id)
