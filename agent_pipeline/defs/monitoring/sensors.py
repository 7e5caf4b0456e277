"""Sensors: landing files in, drift out, eval sets changed, and alerts.

* ``landing_files_sensor``: a new or changed landing file -> ``inference_log`` + ``drift_report``
  for its day (the run key includes the file's size and mtime: a file is processed once).
* ``drift_retrain_sensor``: a ``drift_report`` that says drift -> ``train_and_promote_job``
  (training data + reviewed feedback -> candidate -> evaluation -> gates -> champion). One
  drift event launches one run (run key = partition + reference version); a cooldown stops a
  run storm; the triggering partition and drifted features are run tags.
* ``eval_sets_changed_sensor``: the golden or validation file changed -> re-evaluate the
  champion without retraining.
* ``run_failure_alert_sensor`` / ``check_failure_alert_sensor``: alerts through ``Alerts``.

Sensors only list folders, hash small files and read the event log: no ML imports per tick.
"""

import hashlib
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from agent_pipeline.defs import automation
from agent_pipeline.defs.monitoring.assets import DAILY
from agent_pipeline.defs.resources import Alerts, RouterFiles, StateFolder
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.monitoring import retrain

TRIGGER_TAG = "agent_pipeline/trigger"
LANDING_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[^/]*\.jsonl$")
DRIFT_COOLDOWN_SECONDS = 6 * 3600


def sensor_interval_seconds(raw: str | None) -> int:
    """``AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS`` (default 30): a whole number of seconds >= 1."""
    try:
        value = int(raw) if raw else 30
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS={raw!r}: must be a whole number of seconds >= 1")
    return value


# How often the daemon evaluates the landing and drift sensors (read when the code location
# loads). The demo sets 5 s so its story fits in minutes.
SENSOR_INTERVAL_S = sensor_interval_seconds(os.environ.get("AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS"))


@dg.sensor(
    job=automation.traffic_monitoring_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def landing_files_sensor(context: dg.SensorEvaluationContext, state: StateFolder):
    """Materialize ``inference_log`` and ``drift_report`` for each new landing file's day."""
    landing = settings.landing_dir(state.path)
    if not landing.is_dir():
        return dg.SkipReason(f"{landing} does not exist yet")
    valid = set(DAILY.get_partition_keys())
    requests, ignored = [], []
    for path in sorted(landing.iterdir()):
        match = LANDING_RE.match(path.name)
        if not match or path.name.startswith("."):
            continue
        day = match.group(1)
        if day not in valid:
            ignored.append(path.name)
            continue
        st = path.lstat()  # a symlink is not followed (ingestion refuses and reports it)
        requests.append(
            dg.RunRequest(
                run_key=f"landing:{path.name}:{st.st_size}:{st.st_mtime_ns}",
                partition_key=day,
                tags={TRIGGER_TAG: "landing_file", "agent_pipeline/landing_file": path.name},
            )
        )
    if ignored:
        context.log.warning("ignored landing files outside the partition range: %s", ignored[:10])
    return requests or dg.SkipReason(f"no landing files in {landing}")


def drift_event(event: dg.EventLogEntry) -> retrain.DriftReport:
    """The sensor's view of a drift_report event (partition, verdict, features, reference version)."""
    mat = event.asset_materialization
    md = mat.metadata if mat else {}

    def value(key, default=None):
        return md[key].value if key in md else default

    features = [f for f in str(value("drifted_features", "") or "").split(",") if f.strip() and f.strip() != "none"]
    return retrain.DriftReport(
        mat.partition if mat else "",
        bool(value("drift_detected", False)),
        tuple(f.strip() for f in features),
        str(value("reference_model_version", "")),
    )


def last_drift_request(instance: dg.DagsterInstance) -> float | None:
    """When the newest drift retrain was requested (epoch seconds), or None."""
    recent = instance.get_runs(
        filters=dg.RunsFilter(job_name=automation.train_and_promote_job.name, tags={TRIGGER_TAG: "drift"}), limit=1
    )
    if not recent:
        return None
    started = recent[0].tags.get("agent_pipeline/requested_at")
    return float(started) if started else 0.0  # a drift run without the tag: treated as long ago


@dg.sensor(
    job=automation.train_and_promote_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    """Retrain, evaluate, gate and (maybe) promote when a drift report says drift.

    Walks every ``drift_report`` materialization since its cursor (not only the newest: several
    days can finish between two ticks, and a stable day must not hide a drifted one). The first
    drift outside the cooldown requests one run; later drifts in the same tick are covered by it.
    """
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), after_storage_id=after), limit=100, ascending=True
    ).records
    now = datetime.now(UTC).timestamp()
    reports = [drift_event(record.event_log_entry) for record in records]
    decided = retrain.plan(reports, last_drift_request(context.instance), now, DRIFT_COOLDOWN_SECONDS)
    requests = [
        dg.RunRequest(
            run_key=report.run_key,
            tags={
                TRIGGER_TAG: "drift",
                "agent_pipeline/drift_partition": report.partition,
                "agent_pipeline/drifted_features": ",".join(report.drifted_features)[:200],
                "agent_pipeline/reference_version": report.reference_version,
                "agent_pipeline/requested_at": f"{now:.0f}",
            },
        )
        for report in decided.retrain
    ]
    if records:
        context.update_cursor(str(records[-1].storage_id))
    for note in decided.notes:
        context.log.info(note)
    if requests:
        return requests
    return dg.SkipReason("; ".join(decided.notes) or "no new drift reports")


def eval_sets_fingerprint(files: RouterFiles) -> str:
    h = hashlib.sha256()
    for p in (files.golden_path, files.validation_path, files.router_config):
        h.update(Path(p).read_bytes() if Path(p).is_file() else b"<missing>")
    return h.hexdigest()[:16]


@dg.sensor(
    job=automation.champion_eval_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def eval_sets_changed_sensor(context: dg.SensorEvaluationContext, files: RouterFiles):
    """Re-evaluate the champion (no retraining) when the golden or validation data changes."""
    current = eval_sets_fingerprint(files)
    previous, _, count = (context.cursor or "").partition(":")
    if not previous:
        context.update_cursor(f"{current}:0")
        return dg.SkipReason(f"recorded the eval sets' fingerprint {current}")
    if previous == current:
        return dg.SkipReason("eval sets unchanged")
    change = int(count or 0) + 1  # a counter, so reverting a file (A -> B -> A) re-evaluates too
    context.update_cursor(f"{current}:{change}")
    return dg.RunRequest(
        run_key=f"eval-sets:{change}:{current}",
        tags={TRIGGER_TAG: "eval_sets_changed", "agent_pipeline/eval_sets": current},
    )


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: Alerts):
    """Alert on every failed run (a crashed step or a blocking gate that stopped promotion)."""
    run = context.dagster_run
    alerts.send(
        f"run failed: {run.job_name}",
        {"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags), "error": context.failure_event.message},
    )


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def check_failure_alert_sensor(context: dg.SensorEvaluationContext, alerts: Alerts):
    """Alert on every failed asset check (gates, nightly regression, drift warnings).

    Walks the runs that finished since the cursor (their last update time: run storage is the
    one index every instance storage keeps globally) and reads each run's check evaluations, so
    a check is alerted once, whichever storage backs the instance.
    """
    after = float(context.cursor) if context.cursor else 0.0
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=datetime.fromtimestamp(after, UTC)),
        order_by="update_timestamp",
        ascending=True,
        limit=50,
    )
    evaluated = sent = 0
    for record in records:
        for entry in context.instance.all_logs(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ):
            ev = entry.dagster_event.event_specific_data
            evaluated += 1
            if ev.passed:
                continue
            alerts.send(
                f"check failed: {ev.asset_key.to_user_string()}.{ev.check_name}",
                {
                    "severity": ev.severity.value,
                    "run_id": entry.run_id,
                    "description": ev.description,
                    "metadata": {k: str(v.value) for k, v in ev.metadata.items()},
                },
            )
            sent += 1
        after = max(after, record.update_timestamp.timestamp())
    context.update_cursor(repr(after))
    if not sent:
        return dg.SkipReason(f"no failed checks in {evaluated} new evaluations")
