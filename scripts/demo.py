"""``make demo``: the monitoring loop told end to end on the real Dagster daemon, in a fresh state folder.

The story: ``train_and_promote_job`` bootstraps champion v1; three days of ``stable`` traffic
arrive, the landing sensor ingests them and their drift reports find nothing; three days of a
``new-topic`` (travel intents the router never saw) follow, the drift reports flag them, and the
drift sensor asks for one retraining run. That run learns from the reviewed feedback in the
inference log, and the gates promote its candidate or block it with their reasons.

The days are the six before today (the drift and replay windows count back from now), but the
requests are drawn relative to the first of them (seed 20261125), so every run of the demo routes
the same requests, on whatever date it runs.

Everything is the production machinery: ``dagster-daemon run`` (started here as a subprocess on
the state folder's instance) evaluates the sensors and launches their runs through the
instance's queued run coordinator and run launcher; the bootstrap run is launched with
``dagster job launch``. This script only writes the traffic (as a serving process would) and
reads what happened back from the instance (runs, events, materializations). The sensors tick
every ``AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS`` (30 s in production; the demo sets 5 s).

Thresholds: the demo's subject is the loop, not the calibration, so its routers choose their
fallback threshold on the validation split (``threshold.method: validation``, one fit per
training) instead of the default cross-validation (``lib/router/calibration.py``: five more fits,
about 70 s per training on 2 cores, which would put the demo past 5 minutes). The configured
router config is copied into the state folder with that one change (``router.demo.yaml``,
``AGENT_PIPELINE_ROUTER_CONFIG`` for the daemon and its runs); ``--calibration config`` keeps the
config as it is. Every gate runs as in production, the sealed holdout included.

State folder: ``--home``, else ``$AGENT_PIPELINE_HOME/demo-<UTC timestamp>`` (a relative
``AGENT_PIPELINE_HOME`` is relative to the current directory; default ``.agent_pipeline``).
Afterwards ``AGENT_PIPELINE_HOME=<that folder> make run`` shows every run, tick and cursor.

Exit code 0 only when every run expected to succeed did and the story happened as told
(stable days without drift, one retrain after the new topic). A retrain whose candidate a
promotion gate blocks is a valid outcome, reported with the gates' reasons; a retrain stopped
earlier (a failed dataset check, a crash) is not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
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
PARTITION_TAG = "dagster/partition"
SENSOR_INTERVAL_S = 5  # AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS for the daemon (production: 30)
BIN = Path(sys.executable).parent
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
GATED_ASSET = "candidate_evaluation"  # its blocking checks are the promotion gates
# Run-level Dagster logs at WARNING: failures and warnings stay visible, step chatter does not.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class DemoError(RuntimeError):
    """The demo cannot start or go on; printed as one line."""


# -- state folder and logging ---------------------------------------------------------------
def fresh_home(requested: str | None, now: datetime) -> Path:
    """``requested`` (must be missing or empty) or ``$AGENT_PIPELINE_HOME/demo-<UTC timestamp>``.

    The only file tolerated is ``dagster/dagster.yaml``: ``agent_pipeline._home`` copies it at
    interpreter start when ``AGENT_PIPELINE_HOME`` or ``DAGSTER_HOME`` already points there.
    """
    from agent_pipeline.lib.core.settings import resolve_home

    home = (
        Path(requested).expanduser().resolve()
        if requested
        else resolve_home(os.environ.get("AGENT_PIPELINE_HOME")) / f"demo-{now:%Y%m%dT%H%M%SZ}"
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
    os.environ["AGENT_PIPELINE_SENSOR_INTERVAL_SECONDS"] = str(SENSOR_INTERVAL_S)
    from agent_pipeline import _home

    _home.apply()  # copies dagster.yaml into the new DAGSTER_HOME
    return notes


def demo_router_config(home: Path, calibration: str) -> str | None:
    """With ``calibration == "validation"``: the configured router config with
    ``threshold.method: validation``, written to ``<home>/router.demo.yaml`` and exported as
    ``AGENT_PIPELINE_ROUTER_CONFIG``. Returns a line saying what was used (None: nothing changed)."""
    import yaml

    from agent_pipeline.lib.core.settings import Settings

    source = Settings.from_env(os.environ).router_config
    raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    method = (raw.get("threshold") or {}).get("method", "cross_validation")
    if calibration == "config" or method == "validation":
        return None
    raw.setdefault("threshold", {})["method"] = "validation"
    target = home / "router.demo.yaml"
    target.write_text(
        f"# {source} with threshold.method: validation (scripts/demo.py --calibration)\n"
        + yaml.safe_dump(raw, sort_keys=False),
        encoding="utf-8",
    )
    os.environ["AGENT_PIPELINE_ROUTER_CONFIG"] = str(target)
    return (
        f"router config: {source} with thresholds chosen on validation ({target.name}); "
        "--calibration config keeps its cross-validation (about 2 more minutes)"
    )


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


# -- the daemon and the CLI -----------------------------------------------------------------------
class Daemon:
    """``dagster-daemon run`` on the state folder's instance, as a subprocess of this script.

    Its output goes to ``<home>/daemon.log``. Stopped (SIGTERM to its process group, then
    SIGKILL after 20 s) when the story ends; the runs it launched are children of that group.
    """

    def __init__(self, home: Path) -> None:
        self.log_path = home / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Daemon:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def launch(job_name: str, tags: dict[str, str]) -> str:
    """``dagster job launch`` (through the instance's run coordinator: the daemon runs it); the run id."""
    run_id = str(uuid.uuid4())
    proc = subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "launch",
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
            "-j",
            job_name,
            "--run-id",
            run_id,
            "--tags",
            json.dumps(tags),
            "--config-json",
            json.dumps(QUIET_RUN_CONFIG),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DemoError(f"dagster job launch {job_name} failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return run_id


# -- the story ----------------------------------------------------------------------------------
@dataclass
class Demo:
    home: Path
    rows_per_day: int
    instance: Any
    daemon: Daemon
    deadline: float
    t0: float = field(default_factory=time.time)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reports: list[RunReport] = field(default_factory=list)
    drift_by_day: dict[str, dict[str, Any]] = field(default_factory=dict)
    retrain_runs: list[str] = field(default_factory=list)
    landing_files: dict[str, Path] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    day_origin: date | None = None  # the first simulated day: traffic is drawn relative to it

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
        from agent_pipeline.lib.core.settings import Settings
        from agent_pipeline.lib.registry.models import ModelRegistry

        s = Settings.from_env(os.environ)
        return ModelRegistry(model_name=s.model_name, home=s.home).load(alias="champion")

    def simulate(self, scenario: str, start: date) -> list[Path]:
        from agent_pipeline.lib.core import settings
        from agent_pipeline.lib.monitoring import traffic

        model = self.champion()
        pool = traffic.read_pool(settings.Settings.from_env(os.environ).traffic_pool)
        paths = traffic.simulate(
            model,
            pool,
            start=start,
            days=DAYS_PER_PHASE,
            scenario=scenario,
            seed=SEED,
            rows_per_day=self.rows_per_day,
            landing=settings.landing_dir(self.home),
            day_origin=self.day_origin,
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

    def wait(self, what: str, done, poll_s: float = 1.0):
        """Poll ``done()`` until it returns a truthy value; fail on the deadline or a dead daemon."""
        while True:
            value = done()
            if value:
                return value
            if not self.daemon.alive():
                raise DemoError(f"the daemon exited while waiting for {what}; see {self.daemon.log_path}")
            if time.time() > self.deadline:
                raise DemoError(f"timed out waiting for {what}; see {self.daemon.log_path}")
            time.sleep(poll_s)

    def runs(self, job: str, tags: dict[str, str] | None = None) -> list:
        import dagster as dg

        return list(reversed(self.instance.get_runs(filters=dg.RunsFilter(job_name=job, tags=tags or {}))))

    def finished(self, run) -> RunReport:
        """The report of a finished run (timeline line once per run)."""
        run = self.instance.get_run_by_id(run.run_id)
        stats = self.instance.get_run_stats(run.run_id)
        seconds = (stats.end_time or time.time()) - (stats.launch_time or stats.start_time or time.time())
        report = RunReport.read(self.instance, run.run_id, seconds)
        if run.run_id not in self.seen:
            self.seen.add(run.run_id)
            self.reports.append(report)
            trigger = report.tags.get(TRIGGER_TAG, "manual")
            partition = f" [{report.tags[PARTITION_TAG]}]" if PARTITION_TAG in report.tags else ""
            via = report.tags.get("dagster/sensor_name", "dagster job launch")
            self.event(
                f"run {report.short_id} {report.job}{partition} ({trigger}, by {via}): {report.status} "
                f"in {report.seconds:.1f} s"
            )
            for step, _, message in report.errors:
                self.detail(f"failed step {step}: {message.splitlines()[0][:300]}")
        return report

    def monitoring_days(self, days: list[str]) -> list[RunReport]:
        """Wait for the landing sensor's run of each day to finish; their reports in day order."""

        def done():
            by_day = {}
            for run in self.runs(MONITORING_JOB):
                day = run.tags.get(PARTITION_TAG)
                if day in days and run.status.value in FINISHED:
                    by_day[day] = run
            return by_day if len(by_day) == len(days) else None

        by_day = self.wait(f"{MONITORING_JOB} runs of {days[0]}..{days[-1]}", done)
        reports = [self.finished(by_day[d]) for d in days]
        for report in reports:
            self.describe_drift(report)
        return reports

    def drift_retrains(self) -> list:
        return self.runs(TRAIN_JOB, {TRIGGER_TAG: "drift"})

    def settle(self) -> None:
        """Give the drift sensor two ticks to act on the newest drift reports."""
        time.sleep(2 * SENSOR_INTERVAL_S + 2)

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

    # the story
    def run(self) -> int:
        today = datetime.now(UTC).date()
        stable_start = today - timedelta(days=2 * DAYS_PER_PHASE)
        self.day_origin = stable_start  # the same requests whatever today's date is
        new_topic_start = today - timedelta(days=DAYS_PER_PHASE)

        print("\n== 1. bootstrap: train, evaluate, gate and promote the first champion", flush=True)
        run_id = launch(TRAIN_JOB, {TRIGGER_TAG: "demo_bootstrap"})
        self.event(f"dagster job launch {TRAIN_JOB}: run {run_id[:8]} queued; the daemon launches it")
        run = self.wait(
            f"bootstrap run {run_id[:8]}",
            lambda: (r := self.instance.get_run_by_id(run_id)) is not None and r.status.value in FINISHED and r,
        )
        bootstrap = self.finished(run)
        if self.describe_training(bootstrap, expect_feedback=False) is None:
            self.problem(f"bootstrap run {bootstrap.run_id} did not promote a champion ({bootstrap.status})")
            return self.finish()

        print(f"\n== 2. {DAYS_PER_PHASE} days of stable traffic", flush=True)
        self.simulate("stable", stable_start)
        stable_days = [str(stable_start + timedelta(days=d)) for d in range(DAYS_PER_PHASE)]
        self.monitoring_days(stable_days)
        self.settle()
        drifted = [d for d in stable_days if self.drift_by_day.get(d, {}).get("drift_detected")]
        missing = [d for d in stable_days if d not in self.drift_by_day]
        if drifted or missing:
            self.problem(f"stable days: drift on {drifted or 'none'}, no drift report for {missing or 'none'}")
        if self.drift_retrains():
            self.problem(f"stable traffic triggered retraining: {[r.run_id for r in self.drift_retrains()]}")
            return self.finish()
        self.event("drift sensor: no retrain after the stable days")

        print(f"\n== 3. {DAYS_PER_PHASE} days of a new topic", flush=True)
        self.simulate("new-topic", new_topic_start)
        new_days = [str(new_topic_start + timedelta(days=d)) for d in range(DAYS_PER_PHASE)]
        self.monitoring_days(new_days)
        if not any(self.drift_by_day.get(d, {}).get("drift_detected") for d in new_days):
            self.problem("no drift report flagged the new-topic days")
            return self.finish()
        retrain = self.wait("the drift sensor's retrain run", lambda: self.drift_retrains())[0]
        self.event(
            f"drift sensor requested run {retrain.run_id[:8]} (drift on {retrain.tags.get('agent_pipeline/drift_partition')}: "
            f"{retrain.tags.get('agent_pipeline/drifted_features')})"
        )
        run = self.wait(
            f"retrain run {retrain.run_id[:8]}",
            lambda: (r := self.instance.get_run_by_id(retrain.run_id)).status.value in FINISHED and r,
        )
        self.retrain_runs.append(run.run_id)
        self.describe_training(self.finished(run), expect_feedback=True)
        self.settle()
        if len(self.drift_retrains()) != 1:
            self.problem(f"expected one retraining run after the new topic, got {len(self.drift_retrains())}")
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
    p = argparse.ArgumentParser(prog="python scripts/demo.py", description=__doc__.splitlines()[0])
    p.add_argument(
        "--home",
        default=None,
        help="state folder to create (must be missing or empty); default: $AGENT_PIPELINE_HOME/demo-<UTC timestamp>",
    )
    p.add_argument(
        "--rows-per-day", type=int, default=1000, help=f"simulated requests per day (at least {MIN_ROWS_PER_DAY})"
    )
    p.add_argument(
        "--calibration",
        choices=("validation", "config"),
        default="validation",
        help="how the routers choose their fallback threshold: on the validation split (default: the demo's "
        "subject is the loop) or as the router config says (cross-validation by default; slower)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds (default 600)")
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
    changed = demo_router_config(home, args.calibration)
    if changed:
        notes.insert(0, changed)
    print(f"state folder (AGENT_PIPELINE_HOME): {home}")
    print(f"Dagster instance (DAGSTER_HOME):    {os.environ['DAGSTER_HOME']}")
    for note in notes:
        print(f"note: {note}")
    quiet_logs()
    import dagster as dg

    with dg.DagsterInstance.get() as instance, Daemon(home) as daemon:
        print(f"dagster-daemon: pid {daemon.proc.pid}, log {daemon.log_path}")
        demo = Demo(home, args.rows_per_day, instance, daemon, time.time() + args.timeout)
        try:
            return demo.run()
        except DemoError as exc:
            demo.problems.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
            return demo.finish()


if __name__ == "__main__":
    sys.exit(main())
