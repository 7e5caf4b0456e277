"""``make demo``: the monitoring loop told end to end, headless, in a fresh state folder.

The story: ``train_and_promote_job`` bootstraps champion v1; three days of ``stable`` traffic
arrive, the landing sensor ingests them and their drift reports find nothing; three days of a
``new-topic`` (travel intents the router never saw) follow, the drift reports flag them, and the
drift sensor asks for one retraining run. That run learns from the reviewed feedback in the
inference log, and the gates promote its candidate or block it with their reasons.

What is real: a Dagster instance on SQLite in ``$AGENT_PIPELINE_HOME/dagster`` (``dagster dev``
on the same home shows every run, event, sensor tick and cursor afterwards), the code
location's definitions, its sensors evaluated against that instance, and runs of the jobs they
name, with the requests' run keys, tags and partitions. What stands in for the daemon is
``Orchestrator``: it evaluates a sensor tick, records the tick and the sensor's cursor in the
instance's instigator state as the daemon does, skips a run key that already has a run,
creates each requested run in the instance at request time (so the drift sensor's cooldown
sees a queued retrain, as it would under the daemon), and executes queued runs in order, one at
a time, in this process; the daemon's queue would run two at once (``dagster.yaml``).

Exit code 0 only when every run expected to succeed did and the story happened as told
(stable days without drift, one retrain after the new topic). A retrain whose candidate a
promotion gate blocks is a valid outcome, reported with the gates' reasons; a retrain stopped
earlier (a failed dataset check, a crash) is not.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = 20261125
DAYS_PER_PHASE = 3
MIN_ROWS_PER_DAY = 500  # drift.DEFAULT_MIN_ROWS: fewer rows give no drift verdict
TRAIN_JOB = "train_and_promote_job"
MONITORING_JOB = "traffic_monitoring_job"
LANDING_SENSOR = "landing_files_sensor"
DRIFT_SENSOR = "drift_retrain_sensor"
TRIGGER_TAG = "agent_pipeline/trigger"  # as in defs/monitoring/sensors.py
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
PARTITION_TAG = "dagster/partition"
GATED_ASSET = "candidate_evaluation"  # its blocking checks are the promotion gates
# Run-level Dagster logs at WARNING: failures and warnings stay visible, step chatter does not.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class DemoError(RuntimeError):
    """The demo cannot start or go on; printed as one line."""


# -- state folder and logging ---------------------------------------------------------------
def fresh_home(requested: str | None, now: datetime) -> Path:
    """``requested`` (must be missing or empty) or ``.agent_pipeline/demo-<UTC timestamp>``.

    The only file tolerated is ``dagster/dagster.yaml``: ``agent_pipeline._home`` copies it at
    interpreter start when ``AGENT_PIPELINE_HOME`` or ``DAGSTER_HOME`` already points there.
    """
    home = (
        Path(requested).expanduser().resolve()
        if requested
        else REPO_ROOT / ".agent_pipeline" / f"demo-{now:%Y%m%dT%H%M%SZ}"
    )
    if home.exists():
        files = [p for p in home.rglob("*") if not p.is_dir()] if home.is_dir() else [home]
        if files and files != [home / "dagster" / "dagster.yaml"]:
            raise DemoError(f"{home}: exists and is not an empty folder; the demo needs a fresh state folder")
    home.mkdir(parents=True, exist_ok=True)
    return home


def use_home(home: Path) -> list[str]:
    """Point the project, Dagster and MLflow at ``home`` (before any Dagster instance exists).

    ``DAGSTER_HOME`` is overridden even when set (the venv's ``.pth`` sets it to the default
    home at interpreter start). Returns notes on variables the demo ignored.
    """
    notes = []
    if os.environ.pop("MLFLOW_TRACKING_URI", None):
        notes.append("MLFLOW_TRACKING_URI ignored: the demo keeps its MLflow store in the fresh state folder")
    os.environ["AGENT_PIPELINE_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    from agent_pipeline import _home

    _home.apply()  # copies dagster.yaml into the new DAGSTER_HOME
    return notes


def quiet_logs() -> None:
    """Library loggers at WARNING and Dagster's beta/preview warnings off."""
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("dagster", "mlflow", "alembic", "evidently", "great_expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Logged on every log_model of a Python-object pyfunc; the router is one by design.
    logging.getLogger("mlflow.pyfunc").addFilter(lambda r: "serialized using CloudPickle" not in r.getMessage())


# -- what happened in a run, read back from the instance's event log ------------------------
@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str
    description: str


@dataclass
class RunReport:
    """One finished run: status, duration, check results, materializations, errors."""

    run_id: str
    job: str
    status: str
    seconds: float
    tags: dict[str, str]
    checks: list[CheckOutcome]
    materialized: dict[str, dict[str, Any]]  # asset key -> metadata values (+ "_timestamp")
    errors: list[tuple[str, str, str]]  # (step, error class, message) of each failed step

    @classmethod
    def read(cls, instance, run_id: str, seconds: float) -> RunReport:
        import dagster as dg

        run = instance.get_run_by_id(run_id)
        checks, materialized, errors = [], {}, []
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                ev = event.event_specific_data
                checks.append(
                    CheckOutcome(
                        ev.asset_key.to_user_string(), ev.check_name, ev.passed, ev.severity.value, ev.description or ""
                    )
                )
            elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                mat = entry.asset_materialization
                materialized[mat.asset_key.to_user_string()] = {
                    **{k: v.value for k, v in mat.metadata.items()},
                    "_timestamp": entry.timestamp,
                }
            elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                error = event.step_failure_data.error
                errors.append(
                    (event.step_key, error.cls_name, error.message.strip())
                    if error
                    else (event.step_key, "", str(event.message))
                )
        return cls(run_id, run.job_name, run.status.value, seconds, dict(run.tags), checks, materialized, errors)

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed and c.severity == "ERROR"]

    @property
    def blocked_by_gates(self) -> bool:
        """Failed only because promotion gates (blocking checks on the candidate's evaluation) failed.

        That is a valid outcome, not a crash; a failed dataset check is not a gate: it stops the
        run before there is a candidate.
        """
        failed = self.failed_checks()
        return (
            not self.success
            and bool(failed)
            and all(c.asset == GATED_ASSET for c in failed)
            and all(cls == "DagsterAssetCheckFailedError" for _, cls, _ in self.errors)
        )


# -- the daemon's part ------------------------------------------------------------------------
@dataclass
class Tick:
    sensor: str
    run_ids: list[str]
    skipped_run_keys: list[str]
    skip_reason: str | None
    cursor: str | None

    def describe(self) -> str:
        if self.run_ids:
            out = f"tick {self.sensor}: {len(self.run_ids)} run(s) requested ({', '.join(r[:8] for r in self.run_ids)})"
        else:
            out = f"tick {self.sensor}: skipped - {self.skip_reason or 'no run requests'}"
        if self.skipped_run_keys:
            out += f"; {len(self.skipped_run_keys)} request(s) deduplicated (run key already has a run)"
        return out


class Orchestrator:
    """Stands in for the daemon on a real instance: sensor ticks, cursors, run keys, a run queue."""

    def __init__(self, instance, defs) -> None:
        from dagster._core.remote_origin import RemoteRepositoryOrigin
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        self.instance = instance
        self.defs = defs
        self.queue: list[str] = []
        # The code location as workspace.yaml declares it, so ticks and cursors land on the
        # same sensor state that `dagster dev -w workspace.yaml` shows for this home.
        location = WorkspaceFileTarget(paths=[str(REPO_ROOT / "workspace.yaml")]).create_origins()[0]
        self.repository_origin = RemoteRepositoryOrigin(location, defs.get_repository_def().name)

    def submit(self, job_name: str, tags: dict[str, str], partition: str | None = None) -> str:
        """Create a run of ``job_name`` in the instance now (the daemon does at request time); queue it."""
        job = self.defs.resolve_job_def(job_name)
        run = self.instance.create_run_for_job(
            job_def=job,
            run_config=QUIET_RUN_CONFIG,
            tags={**job.run_tags, **tags, **({PARTITION_TAG: partition} if partition else {})},
        )
        self.queue.append(run.run_id)
        return run.run_id

    def run_next(self) -> RunReport:
        """Execute the oldest queued run in this process; report it from the event log."""
        from dagster._core.definitions.job_base import InMemoryJob
        from dagster._core.execution.api import execute_run

        run = self.instance.get_run_by_id(self.queue.pop(0))
        t0 = time.perf_counter()
        execute_run(InMemoryJob(self.defs.resolve_job_def(run.job_name)), run, self.instance)
        return RunReport.read(self.instance, run.run_id, time.perf_counter() - t0)

    def tick(self, name: str) -> Tick:
        """Evaluate one tick of sensor ``name`` with its stored cursor; record tick, cursor, runs."""
        import dagster as dg
        from dagster._core.definitions.run_request import InstigatorType
        from dagster._core.remote_origin import RemoteInstigatorOrigin
        from dagster._core.scheduler.instigation import (
            InstigatorState,
            InstigatorStatus,
            SensorInstigatorData,
            TickData,
            TickStatus,
        )
        from dagster._utils.error import serializable_error_info_from_exc_info

        sensor = self.defs.resolve_sensor_def(name)
        origin = RemoteInstigatorOrigin(self.repository_origin, name)
        origin_id, selector_id = origin.get_id(), origin.get_selector().get_id()
        now = time.time()
        state = self.instance.get_instigator_state(origin_id, selector_id)
        if state is None:
            state = InstigatorState(
                origin,
                InstigatorType.SENSOR,
                InstigatorStatus.DECLARED_IN_CODE,
                SensorInstigatorData(
                    min_interval=sensor.minimum_interval_seconds,
                    last_sensor_start_timestamp=now,
                    sensor_type=sensor.sensor_type,
                ),
            )
            self.instance.add_instigator_state(state)
        previous = state.instigator_data
        tick = self.instance.create_tick(
            TickData(
                instigator_origin_id=origin_id,
                instigator_name=name,
                instigator_type=InstigatorType.SENSOR,
                status=TickStatus.STARTED,
                timestamp=now,
                selector_id=selector_id,
            )
        )
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=previous.cursor,
            sensor_name=name,
            repository_def=self.defs.get_repository_def(),
            resources=self.defs.resources,
            last_sensor_start_time=previous.last_sensor_start_timestamp,
        )
        try:
            result = sensor.evaluate_tick(context)
        except Exception as exc:
            self.instance.update_tick(
                tick.with_status(TickStatus.FAILURE, error=serializable_error_info_from_exc_info(sys.exc_info()))
            )
            raise DemoError(f"sensor {name} failed: {type(exc).__name__}: {exc}") from exc

        run_ids, skipped, last_key = [], [], previous.last_run_key
        for request in result.run_requests or []:
            key = request.run_key
            if key and (
                key in self._queued_keys(name)
                or self.instance.get_runs(
                    filters=dg.RunsFilter(tags={RUN_KEY_TAG: key, SENSOR_NAME_TAG: name}), limit=1
                )
            ):
                skipped.append(key)
                continue
            tags = {**request.tags, SENSOR_NAME_TAG: name, **({RUN_KEY_TAG: key} if key else {})}
            run_id = self.submit(request.job_name or sensor.job_name, tags, request.partition_key)
            tick = tick.with_run_info(run_id, key)
            run_ids.append(run_id)
            last_key = key or last_key
        reason = result.skip_message
        if not run_ids and skipped:
            reason = f"all {len(skipped)} run request(s) have runs already (run keys)"
        tick = tick.with_status(TickStatus.SUCCESS if run_ids else TickStatus.SKIPPED)
        if reason and not run_ids:
            tick = tick.with_reason(skip_reason=reason)
        tick = tick.with_cursor(result.cursor)
        self.instance.update_tick(tick)
        self.instance.update_instigator_state(
            state.with_data(
                SensorInstigatorData(
                    last_tick_timestamp=now,
                    last_run_key=last_key,
                    min_interval=sensor.minimum_interval_seconds,
                    cursor=result.cursor,
                    last_tick_start_timestamp=now,
                    last_sensor_start_timestamp=previous.last_sensor_start_timestamp,
                    sensor_type=sensor.sensor_type,
                    last_tick_success_timestamp=time.time(),
                )
            )
        )
        return Tick(name, run_ids, skipped, None if run_ids else reason, result.cursor)

    def _queued_keys(self, sensor: str) -> set[str]:
        runs = [self.instance.get_run_by_id(r) for r in self.queue]
        return {r.tags[RUN_KEY_TAG] for r in runs if r.tags.get(SENSOR_NAME_TAG) == sensor and RUN_KEY_TAG in r.tags}


# -- the story ----------------------------------------------------------------------------------
@dataclass
class Demo:
    home: Path
    rows_per_day: int
    orchestrator: Orchestrator
    t0: float = field(default_factory=time.time)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reports: list[RunReport] = field(default_factory=list)
    drift_by_day: dict[str, dict[str, Any]] = field(default_factory=dict)
    retrain_runs: list[str] = field(default_factory=list)
    landing_files: dict[str, Path] = field(default_factory=dict)

    # printing
    def event(self, text: str) -> None:
        """A line of the timeline, printed as it happens."""
        offset = time.time() - self.t0
        self.timeline.append((offset, text))
        print(f"[{offset:7.1f}s] {text}", flush=True)

    @staticmethod
    def detail(text: str) -> None:
        print(f"            {text}", flush=True)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"            PROBLEM: {text}", flush=True)

    # building blocks
    def champion(self):
        from agent_pipeline.lib.core.settings import DEFAULT_MODEL_NAME
        from agent_pipeline.lib.registry.models import ModelRegistry

        store = ModelRegistry(
            model_name=os.environ.get("AGENT_PIPELINE_MODEL_NAME") or DEFAULT_MODEL_NAME, home=self.home
        )
        return store.load(alias="champion")

    def simulate(self, scenario: str, start: date) -> list[Path]:
        from agent_pipeline.lib.core import settings
        from agent_pipeline.lib.monitoring import traffic

        model = self.champion()
        pool = traffic.read_pool(settings.env_path("AGENT_PIPELINE_TRAFFIC_POOL", settings.DEFAULT_TRAFFIC_POOL))
        paths = traffic.simulate(
            model,
            pool,
            start=start,
            days=DAYS_PER_PHASE,
            scenario=scenario,
            seed=SEED,
            rows_per_day=self.rows_per_day,
            landing=settings.landing_dir(self.home),
        )
        for p in paths:
            self.landing_files[p.name[:10]] = p
        end = start + timedelta(days=DAYS_PER_PHASE - 1)
        self.event(
            f"simulated {DAYS_PER_PHASE} '{scenario}' days {start}..{end} ({self.rows_per_day} requests/day, "
            f"seed {SEED}), routed by champion v{model.version}"
        )
        self.detail(f"landing files: {', '.join(p.name for p in paths)}")
        return paths

    def execute_next(self) -> RunReport:
        report = self.orchestrator.run_next()
        self.reports.append(report)
        trigger = report.tags.get(TRIGGER_TAG, "manual")
        partition = f" [{report.tags[PARTITION_TAG]}]" if PARTITION_TAG in report.tags else ""
        self.event(
            f"run {report.short_id} {report.job}{partition} ({trigger}): {report.status} in {report.seconds:.1f} s"
        )
        for step, _, message in report.errors:
            self.detail(f"failed step {step}: {message.splitlines()[0][:300]}")
        return report

    def describe_training(self, report: RunReport, expect_feedback: bool) -> str | None:
        """Print datasets, candidate and gates; return the promoted version, if any."""
        examples = report.materialized.get("training_examples", {})
        if examples:
            self.detail(
                f"training_examples: {examples.get('n_curated')} curated + {examples.get('n_feedback')} reviewed feedback rows"
            )
            if expect_feedback and not examples.get("n_feedback"):
                self.problem("the retraining run's training_examples has no reviewed feedback rows")
        candidate = report.materialized.get("router_candidate", {})
        if candidate:
            self.detail(
                f"router_candidate: v{candidate.get('model_version')} (threshold {candidate.get('threshold', float('nan')):.2f}, "
                f"validation in-scope accuracy {candidate.get('val_in_scope_accuracy', float('nan')):.3f})"
            )
        for check in report.checks:
            if check.asset == GATED_ASSET:
                self.detail(f"gate {check.name}: {'passed' if check.passed else 'FAILED'} - {check.description}")
            elif not check.passed:
                self.detail(f"check {check.asset}.{check.name} FAILED ({check.severity}) - {check.description}")
        champion = report.materialized.get("champion_model")
        if champion:
            self.event(
                f"promoted v{champion['champion_version']} to champion "
                f"(previous: {'none' if champion['previous_champion'] == 'None' else 'v' + champion['previous_champion']})"
            )
            return str(champion["champion_version"])
        if report.blocked_by_gates:
            failed = ", ".join(c.name for c in report.failed_checks())
            self.event(f"promotion BLOCKED by gates: {failed}; the champion is unchanged (a valid outcome)")
        return None

    def describe_drift(self, report: RunReport) -> None:
        day = report.tags.get(PARTITION_TAG, "?")
        log = report.materialized.get("inference_log", {})
        md = report.materialized.get("drift_report", {})
        self.detail(
            f"inference_log {day}: {log.get('n_valid', '?')} valid, {log.get('n_quarantined', '?')} quarantined, "
            f"{log.get('n_reviewed', '?')} reviewed"
        )
        if not md:
            return
        self.drift_by_day[day] = md
        if md.get("insufficient_data"):
            self.detail(f"drift_report {day}: not enough traffic for a verdict ({md.get('n_current')} rows)")
        elif md.get("drift_detected"):
            self.detail(
                f"drift_report {day}: DRIFT (share {md.get('drift_share', 0):.2f}) on {md.get('drifted_features')}; "
                f"because {md.get('drift_reasons')}"
            )
        else:
            self.detail(
                f"drift_report {day}: no drift (share {md.get('drift_share', 0):.2f}; drifted on their own: "
                f"{md.get('drifted_features')})"
            )

    def drain(self) -> None:
        """Run the queue; after each monitoring run, tick the drift sensor (the daemon would)."""
        while self.orchestrator.queue:
            report = self.execute_next()
            if report.job == MONITORING_JOB:
                self.describe_drift(report)
                tick = self.orchestrator.tick(DRIFT_SENSOR)
                self.event(tick.describe())
                self.retrain_runs += tick.run_ids
            elif report.job == TRAIN_JOB:
                self.describe_training(report, expect_feedback=True)

    # the story
    def run(self) -> int:
        today = datetime.now(UTC).date()
        stable_start = today - timedelta(days=2 * DAYS_PER_PHASE)
        new_topic_start = today - timedelta(days=DAYS_PER_PHASE)

        print("\n== 1. bootstrap: train, evaluate, gate and promote the first champion", flush=True)
        self.orchestrator.submit(TRAIN_JOB, {TRIGGER_TAG: "demo_bootstrap"})
        bootstrap = self.execute_next()
        if self.describe_training(bootstrap, expect_feedback=False) is None:
            self.problem(f"bootstrap run {bootstrap.run_id} did not promote a champion ({bootstrap.status})")
            return self.finish()

        print(f"\n== 2. {DAYS_PER_PHASE} days of stable traffic", flush=True)
        self.simulate("stable", stable_start)
        self.event(self.orchestrator.tick(LANDING_SENSOR).describe())
        self.drain()
        stable_days = [str(stable_start + timedelta(days=d)) for d in range(DAYS_PER_PHASE)]
        drifted = [d for d in stable_days if self.drift_by_day.get(d, {}).get("drift_detected")]
        missing = [d for d in stable_days if d not in self.drift_by_day]
        if drifted or missing:
            self.problem(f"stable days: drift on {drifted or 'none'}, no drift report for {missing or 'none'}")
        if self.retrain_runs:
            self.problem(f"stable traffic triggered retraining: {self.retrain_runs}")
            return self.finish()

        print(f"\n== 3. {DAYS_PER_PHASE} days of a new topic", flush=True)
        self.simulate("new-topic", new_topic_start)
        self.event(self.orchestrator.tick(LANDING_SENSOR).describe())
        self.drain()
        new_days = [str(new_topic_start + timedelta(days=d)) for d in range(DAYS_PER_PHASE)]
        if not any(self.drift_by_day.get(d, {}).get("drift_detected") for d in new_days):
            self.problem("no drift report flagged the new-topic days")
        if len(self.retrain_runs) != 1:
            self.problem(f"expected one retraining run after the new topic, got {len(self.retrain_runs)}")
        return self.finish()

    def finish(self) -> int:
        from agent_pipeline import cli

        print("\n== 4. timeline (seconds since the demo started)", flush=True)
        for offset, text in self.timeline:
            print(f"  +{offset:7.1f}s  {text}")
        print("\n== agent-pipeline status", flush=True)
        cli.main(["status"])
        print("\n== timings", flush=True)
        for line in self.timings():
            print(f"  {line}")
        for r in self.reports:
            if not r.success and not (r.run_id in self.retrain_runs and r.blocked_by_gates):
                self.problems.append(f"run {r.run_id} ({r.job}) ended {r.status}")
        print(f"\nstate folder: {self.home}")
        print(f"see it in the UI: AGENT_PIPELINE_HOME={self.home} make run")
        if self.problems:
            print(f"\ndemo FAILED ({len(self.problems)} problem(s)):")
            for p in self.problems:
                print(f"  - {p}")
            return 1
        print("\ndemo OK")
        return 0

    def timings(self) -> list[str]:
        lines = []
        bootstrap = self.reports[0] if self.reports else None
        if bootstrap:
            lines.append(f"bootstrap ({TRAIN_JOB}): {bootstrap.seconds:.1f} s")
        monitoring = [r.seconds for r in self.reports if r.job == MONITORING_JOB]
        if monitoring:
            lines.append(
                f"monitoring runs ({MONITORING_JOB}): {len(monitoring)} runs, mean {sum(monitoring) / len(monitoring):.1f} s, "
                f"min {min(monitoring):.1f} s, max {max(monitoring):.1f} s"
            )
        retrains = [r for r in self.reports if r.run_id in self.retrain_runs]
        for r in retrains:
            lines.append(f"retrain ({TRAIN_JOB}, run {r.short_id}): {r.seconds:.1f} s, {r.status}")
        first_drift = next((d for d in sorted(self.drift_by_day) if self.drift_by_day[d].get("drift_detected")), None)
        promoted = next(
            (r.materialized["champion_model"] for r in retrains if "champion_model" in r.materialized), None
        )
        if first_drift and first_drift in self.landing_files:
            landed = self.landing_files[first_drift].stat().st_mtime
            if promoted:
                lines.append(
                    f"first drifted landing file ({self.landing_files[first_drift].name}) -> champion "
                    f"v{promoted['champion_version']}: {promoted['_timestamp'] - landed:.1f} s"
                )
            else:
                lines.append(f"first drifted landing file ({self.landing_files[first_drift].name}) -> no new champion")
        return lines


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m agent_pipeline.demo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--home",
        default=None,
        help="state folder to create (must be missing or empty); "
        "default: .agent_pipeline/demo-<UTC timestamp> in the repository",
    )
    p.add_argument(
        "--rows-per-day", type=int, default=1000, help=f"simulated requests per day (at least {MIN_ROWS_PER_DAY})"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rows_per_day < MIN_ROWS_PER_DAY:
        print(
            f"error: --rows-per-day {args.rows_per_day}: a drift verdict needs at least {MIN_ROWS_PER_DAY} rows a day",
            file=sys.stderr,
        )
        return 2
    try:
        home = fresh_home(args.home, datetime.now(UTC))
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    notes = use_home(home)
    print(f"state folder (AGENT_PIPELINE_HOME): {home}")
    print(f"Dagster instance (DAGSTER_HOME):    {os.environ['DAGSTER_HOME']}")
    for note in notes:
        print(f"note: {note}")
    quiet_logs()
    import dagster as dg

    from agent_pipeline.definitions import defs

    with dg.DagsterInstance.get() as instance:
        demo = Demo(home, args.rows_per_day, Orchestrator(instance, defs()))
        try:
            return demo.run()
        except DemoError as exc:
            demo.problems.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
            return demo.finish()


if __name__ == "__main__":
    sys.exit(main())
