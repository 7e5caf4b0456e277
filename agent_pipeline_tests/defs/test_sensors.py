"""Sensors and the nightly schedule, each branch evaluated against a real temporary instance.

Ticks are built with ``dg.build_sensor_context`` on ``dg.instance_for_test()`` and the real
repository (so partitioned run requests are resolved against the real jobs). Drift reports
are runless materializations carrying the metadata ``drift_report`` writes; alerts go to a
webhook served on 127.0.0.1 in a thread, or to the log when no URL is set.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.defs.monitoring import sensors
from agent_pipeline.defs.resources import Alerts, RouterFiles, StateFolder

TODAY = datetime.now(UTC).date()
DAY1 = (TODAY - timedelta(days=3)).isoformat()
DAY2 = (TODAY - timedelta(days=2)).isoformat()


@pytest.fixture(scope="module")
def repo() -> dg.RepositoryDefinition:
    return defs().get_repository_def()


@pytest.fixture(scope="module")
def shared_instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def instance(shared_instance) -> dg.DagsterInstance:
    """The module's SQLite instance, emptied of runs and events (creating one costs seconds)."""
    shared_instance.wipe()
    return shared_instance


class Webhook:
    """A local HTTP endpoint that records every JSON POST it receives."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "content_type": self.headers["Content-Type"], **json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


# -- landing_files_sensor ----------------------------------------------------------------------
def landing_tick(instance, repo, home: Path) -> dg.SensorExecutionData:
    ctx = dg.build_sensor_context(
        instance=instance, repository_def=repo, resources={"state": StateFolder(home=str(home))}
    )
    return repo.get_sensor_def("landing_files_sensor").evaluate_tick(ctx)


def test_landing_sensor_skips_until_the_landing_folder_exists(instance, repo, tmp_path):
    tick = landing_tick(instance, repo, tmp_path)
    assert tick.run_requests == []
    assert tick.skip_message == f"{tmp_path / 'traffic' / 'landing'} does not exist yet"


def test_landing_sensor_skips_an_empty_folder(instance, repo, tmp_path):
    (tmp_path / "traffic" / "landing").mkdir(parents=True)
    tick = landing_tick(instance, repo, tmp_path)
    assert tick.run_requests == []
    assert tick.skip_message.startswith("no landing files in ")


@pytest.fixture
def landing(tmp_path) -> Path:
    folder = tmp_path / "traffic" / "landing"
    folder.mkdir(parents=True)
    for name in (
        f"{DAY1}.jsonl",
        f"{DAY2}-batch-b.jsonl",  # two days
        "2024-12-31.jsonl",
        f"{TODAY + timedelta(days=5)}.jsonl",  # outside the partitions
        "notes.txt",
        f"{DAY1}.json",
        f"x{DAY1}.jsonl",
        f".{DAY1}.jsonl",  # not landing files
    ):
        (folder / name).write_text('{"request_id": "r1"}\n')
    return folder


def test_landing_sensor_requests_one_run_per_file_with_its_day(instance, repo, landing):
    tick = landing_tick(instance, repo, landing.parents[1])
    assert tick.skip_message is None
    by_file = {r.tags["agent_pipeline/landing_file"]: r for r in tick.run_requests}
    assert set(by_file) == {f"{DAY1}.jsonl", f"{DAY2}-batch-b.jsonl"}
    assert by_file[f"{DAY1}.jsonl"].partition_key == DAY1
    assert by_file[f"{DAY2}-batch-b.jsonl"].partition_key == DAY2
    for name, request in by_file.items():
        assert request.run_key.startswith(f"landing:{name}:{(landing / name).stat().st_size}:")
        assert request.tags["agent_pipeline/trigger"] == "landing_file"


def test_landing_sensor_run_key_is_stable_until_the_file_changes(instance, repo, landing):
    first = {r.partition_key: r.run_key for r in landing_tick(instance, repo, landing.parents[1]).run_requests}
    again = {r.partition_key: r.run_key for r in landing_tick(instance, repo, landing.parents[1]).run_requests}
    assert again == first  # the daemon dedupes on run keys: the same file is processed once
    with (landing / f"{DAY1}.jsonl").open("a") as fh:
        fh.write('{"request_id": "r2"}\n')
    changed = {r.partition_key: r.run_key for r in landing_tick(instance, repo, landing.parents[1]).run_requests}
    assert changed[DAY1] != first[DAY1]
    assert changed[DAY2] == first[DAY2]


# -- drift_retrain_sensor ----------------------------------------------------------------------
def report_drift(instance, partition: str, drift: bool, features: str = "route, proj_1", version: str = "1") -> None:
    metadata = {"drift_detected": drift, "reference_model_version": version}
    if drift:
        metadata["drifted_features"] = features
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="drift_report", partition=partition, metadata=metadata)
    )


def drift_tick(instance, repo, cursor: str | None = None) -> dg.SensorExecutionData:
    ctx = dg.build_sensor_context(instance=instance, repository_def=repo, cursor=cursor)
    return repo.get_sensor_def("drift_retrain_sensor").evaluate_tick(ctx)


def test_drift_sensor_skips_a_report_without_drift(instance, repo):
    report_drift(instance, DAY1, drift=False)
    tick = drift_tick(instance, repo)
    assert tick.run_requests == []
    assert tick.skip_message == f"drift_report {DAY1}: no drift"


def test_drift_sensor_requests_a_retrain_tagged_with_the_drift(instance, repo):
    report_drift(instance, DAY1, drift=False)
    first = drift_tick(instance, repo)
    report_drift(instance, DAY2, drift=True)
    tick = drift_tick(instance, repo, first.cursor)
    (request,) = tick.run_requests
    assert request.run_key == f"drift:{DAY2}:ref-v1"
    assert request.tags["agent_pipeline/trigger"] == "drift"
    assert request.tags["agent_pipeline/drift_partition"] == DAY2
    assert request.tags["agent_pipeline/drifted_features"] == "route,proj_1"
    assert request.tags["agent_pipeline/reference_version"] == "1"
    assert abs(float(request.tags["agent_pipeline/requested_at"]) - time.time()) < 60
    assert tick.cursor != first.cursor


def launched(instance, repo, request: dg.RunRequest, requested_at: float | None = None) -> None:
    """Record a train_and_promote_job run as the daemon would create it for ``request``."""
    tags = dict(request.tags)
    if requested_at is not None:
        tags["agent_pipeline/requested_at"] = f"{requested_at:.0f}"
    instance.create_run_for_job(job_def=repo.get_job("train_and_promote_job"), tags=tags)


def test_drift_sensor_cools_down_after_a_drift_retrain(instance, repo):
    report_drift(instance, DAY1, drift=True)
    first = drift_tick(instance, repo)
    launched(instance, repo, first.run_requests[0])
    report_drift(instance, DAY2, drift=True, features="text_length")
    tick = drift_tick(instance, repo, first.cursor)
    assert tick.run_requests == []
    assert tick.skip_message.startswith(
        f"drift_report {DAY2}: drift on text_length, but a drift retrain was requested "
    )
    assert "(cooldown 360 min)" in tick.skip_message


def test_drift_sensor_retrains_again_once_the_cooldown_has_passed(instance, repo):
    report_drift(instance, DAY1, drift=True)
    first = drift_tick(instance, repo)
    launched(instance, repo, first.run_requests[0], requested_at=time.time() - sensors.DRIFT_COOLDOWN_SECONDS - 60)
    report_drift(instance, DAY2, drift=True, version="2")
    (request,) = drift_tick(instance, repo, first.cursor).run_requests
    assert request.run_key == f"drift:{DAY2}:ref-v2"


# -- eval_sets_changed_sensor ------------------------------------------------------------------
def test_eval_sets_sensor_records_then_skips_then_runs_on_change(instance, repo, small_inputs, tmp_path):
    golden = Path(shutil.copy(small_inputs.golden, tmp_path / "golden.csv"))
    files = RouterFiles(
        golden_path=str(golden),
        validation_path=str(small_inputs.validation),
        router_config=str(small_inputs.router_config),
    )
    sensor = repo.get_sensor_def("eval_sets_changed_sensor")

    def tick(cursor):
        return sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, repository_def=repo, cursor=cursor, resources={"files": files})
        )

    first = tick(None)
    assert first.run_requests == []
    assert first.skip_message == f"recorded the eval sets' fingerprint {first.cursor.split(':')[0]}"
    unchanged = tick(first.cursor)
    assert (unchanged.run_requests, unchanged.skip_message) == ([], "eval sets unchanged")
    with golden.open("a") as fh:
        fh.write("golden-999,Book me a flight to Oslo,book_flight,travel,\n")
    changed = tick(first.cursor)
    (request,) = changed.run_requests
    assert changed.cursor != first.cursor
    fingerprint = changed.cursor.split(":")[0]
    assert request.run_key == f"eval-sets:1:{fingerprint}"
    assert request.tags["agent_pipeline/trigger"] == "eval_sets_changed"
    assert tick(changed.cursor).skip_message == "eval sets unchanged"
    golden.write_bytes(Path(small_inputs.golden).read_bytes())  # revert: a change again, a new run key
    (back,) = tick(changed.cursor).run_requests
    assert back.run_key == f"eval-sets:2:{first.cursor.split(':')[0]}"


# -- alert sensors -----------------------------------------------------------------------------
@dg.asset
def widget() -> int:
    return 1


@dg.asset_check(asset=widget)
def widget_is_round() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="widget is square", metadata={"corners": 4})


@dg.asset_check(asset=widget)
def widget_exists() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.op
def explode() -> None:
    raise RuntimeError("the step blew up")


@dg.job
def exploding_job() -> None:
    explode()


def check_alert_tick(instance, alerts: Alerts, cursor: str | None = None) -> dg.SensorExecutionData:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": alerts})
    return sensors.check_failure_alert_sensor.evaluate_tick(ctx)


def test_check_failure_alert_posts_each_failed_check_to_the_webhook(instance, webhook):
    run = dg.materialize([widget, widget_is_round, widget_exists], instance=instance)
    tick = check_alert_tick(instance, Alerts(webhook_url=webhook.url))
    (alert,) = webhook.received  # the passing check is not alerted
    assert alert["path"] == "/alerts"
    assert alert["content_type"] == "application/json"
    assert alert["title"] == "check failed: widget.widget_is_round"
    assert alert["severity"] == "ERROR"
    assert alert["run_id"] == run.run_id
    assert "description" not in alert and alert["description_omitted"] is True  # may quote request texts
    assert alert["metadata"] == {"corners": "4"}  # counts are kept
    assert tick.cursor  # remembers where it stopped


def test_check_failure_alert_includes_texts_only_when_configured(instance, webhook):
    dg.materialize([widget, widget_is_round], instance=instance)
    check_alert_tick(instance, Alerts(webhook_url=webhook.url, include_texts=True))
    (alert,) = webhook.received
    assert alert["description"] == "widget is square"


def test_check_failure_alert_without_a_url_goes_to_the_log(instance, caplog):
    dg.materialize([widget, widget_is_round], instance=instance)
    with caplog.at_level(logging.WARNING, logger="agent_pipeline.alerts"):
        check_alert_tick(instance, Alerts())
    (record,) = [r for r in caplog.records if r.name == "agent_pipeline.alerts"]
    assert record.getMessage().startswith("ALERT ")
    assert json.loads(record.getMessage().removeprefix("ALERT "))["title"] == "check failed: widget.widget_is_round"


def test_check_failure_alert_skips_when_every_check_passed(instance, webhook):
    dg.materialize([widget, widget_exists], instance=instance)
    tick = check_alert_tick(instance, Alerts(webhook_url=webhook.url))
    assert webhook.received == []
    assert tick.skip_message == "no failed checks in 1 new evaluations"


def test_check_failure_alert_resumes_after_its_cursor(instance, webhook):
    dg.materialize([widget, widget_is_round], instance=instance)
    first = check_alert_tick(instance, Alerts(webhook_url=webhook.url))
    again = check_alert_tick(instance, Alerts(webhook_url=webhook.url), first.cursor)
    assert again.skip_message == "no failed checks in 0 new evaluations"
    dg.materialize([widget, widget_is_round], instance=instance)
    check_alert_tick(instance, Alerts(webhook_url=webhook.url), first.cursor)
    assert len(webhook.received) == 2  # one per failed evaluation, none repeated


def test_run_failure_alert_posts_the_failed_run(instance, webhook):
    result = exploding_job.execute_in_process(instance=instance, raise_on_error=False, tags={"team": "ml"})
    assert not result.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"alerts": Alerts(webhook_url=webhook.url, include_texts=True)},
    ).for_run_failure()
    sensors.run_failure_alert_sensor(ctx)
    (alert,) = webhook.received
    assert alert["title"] == "run failed: exploding_job"
    assert alert["run_id"] == result.run_id
    assert alert["job"] == "exploding_job"
    assert alert["tags"]["team"] == "ml"
    assert "Steps failed: ['explode']" in alert["error"]
    assert "error" not in Alerts().payload("t", {"error": "user wrote: my card is ...", "run_id": "r"})


# -- nightly_eval_schedule ---------------------------------------------------------------------
def test_nightly_schedule_evaluates_yesterday(instance, repo):
    scheduled = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC).replace(hour=2)
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    ctx = dg.build_schedule_context(instance=instance, repository_def=repo, scheduled_execution_time=scheduled)
    (request,) = repo.get_schedule_def("nightly_eval_schedule").evaluate_tick(ctx).run_requests
    assert request.run_key == f"nightly:{yesterday}"
    assert request.partition_key == yesterday
    assert request.tags["agent_pipeline/trigger"] == "nightly"


def test_drift_sensor_sees_a_drifted_day_hidden_behind_a_later_stable_one(instance, repo):
    """Several days can finish between two ticks: every report since the cursor is read."""
    report_drift(instance, DAY1, drift=True)
    report_drift(instance, DAY2, drift=False)
    tick = drift_tick(instance, repo)
    (request,) = tick.run_requests
    assert request.tags["agent_pipeline/drift_partition"] == DAY1
    assert drift_tick(instance, repo, tick.cursor).skip_message == "no new drift reports"


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_a_bad_sensor_interval_is_one_line_naming_the_variable(raw):
    from agent_pipeline.defs.monitoring.sensors import sensor_interval_seconds
    from agent_pipeline.lib.core.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS='{raw}': must be a whole number"):
        sensor_interval_seconds(raw)
    assert sensor_interval_seconds(None) == 30 and sensor_interval_seconds("5") == 5
