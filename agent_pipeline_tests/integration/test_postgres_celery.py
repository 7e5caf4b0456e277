"""The production deployment for real: Postgres storage, MLflow on Postgres, the Celery executor.

``deploy/dagster.yaml`` runs against a real Postgres started from Debian's package; MLflow's
tracking store and registry use a second database of the same server; the lifecycle job runs
with ``AGENT_PIPELINE_EXECUTOR=celery`` through Redis and two ``dagster-celery`` workers started
exactly as deploy/README.md says. The test then reads Postgres itself: the run, its events, the
registered versions and the ``champion`` alias are there, and no SQLite file was written.
The same job on the embedded default (SQLite, in-process) is timed beside it; both timings go
to ``test-artifacts/integration/lifecycle_timings.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_pipeline.lib.core import processes
from agent_pipeline.lib.core.settings import PROJECT_ROOT
from agent_pipeline_tests.conftest import subprocess_env
from agent_pipeline_tests.integration.services import ARTIFACTS

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
WORKERS = ("worker-1", "worker-2")


def dg_launch_job(env: dict[str, str], job: str, log: Path) -> float:
    """``dg launch --job`` from the project root (what the README says); returns its wall time."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(
            [str(BIN / "dg"), "launch", "--job", job],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, f"dg launch --job {job} failed; log:\n{log.read_text()[-6000:]}"
    return elapsed


@pytest.fixture(scope="module")
def deployment(small_inputs, postgres, redis_server, tmp_path_factory, relaxed_latency_gates):
    """Environment of a Postgres + Celery deployment, with two workers running."""
    home = tmp_path_factory.mktemp("deploy") / "home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    postgres.create_database("dagster")
    postgres.create_database("mlflow")
    env = subprocess_env(small_inputs, home)
    env["AGENT_PIPELINE_POLICY_CONFIG"] = str(relaxed_latency_gates)
    env.update(postgres.dagster_env("dagster"))
    env.update(
        {
            "MLFLOW_TRACKING_URI": postgres.sqlalchemy_url("mlflow"),
            "AGENT_PIPELINE_EXECUTOR": "celery",
            "AGENT_PIPELINE_CELERY_BROKER": redis_server.url(0),
            "AGENT_PIPELINE_CELERY_BACKEND": redis_server.url(1),
            # dagster-celery execs `celery` from PATH: the venv's bin comes first.
            "PATH": os.pathsep.join((str(BIN), env.get("PATH", ""))),
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    logs = ARTIFACTS / "integration"
    logs.mkdir(parents=True, exist_ok=True)
    # Create Dagster's schema once (deploy/README.md step 2), not in a race between the workers.
    migrate = subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    workers = [
        processes.start_group(
            [
                str(BIN / "dagster-celery"),
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(PROJECT_ROOT / "deploy" / "celery.yaml"),
                "--name",
                name,
                "--",
                "--concurrency",
                "1",
            ],
            env=env,
            cwd=PROJECT_ROOT,
            log_path=logs / f"celery-{name}.log",
        )  # fmt: skip
        for name in WORKERS
    ]
    try:
        from celery import Celery

        app = Celery(broker=redis_server.url(0), backend=redis_server.url(1))

        def both_ready() -> bool:
            for w in workers:
                assert w.poll() is None, f"a Celery worker exited: see {logs}"
            replies = app.control.ping(timeout=1.0) or []
            return {name.split("@")[0] for reply in replies for name in reply} >= set(WORKERS)

        processes.wait_until(both_ready, 120, interval=1.0, what="two Celery workers answering ping")
        yield {"env": env, "home": home, "logs": logs}
    finally:
        for w in workers:
            processes.stop_group(w)


def test_lifecycle_on_postgres_with_celery_workers(deployment, postgres, small_inputs, tmp_path, relaxed_latency_gates):
    env, home, logs = deployment["env"], deployment["home"], deployment["logs"]
    celery_s = dg_launch_job(env, "train_and_promote_job", logs / "celery-lifecycle.log")

    # Runs and events live in Postgres (and nowhere else: no SQLite instance files were written).
    runs = postgres.query(
        "dagster", "select run_id, status from runs where pipeline_name = %s", ("train_and_promote_job",)
    )
    assert [status for _, status in runs] == ["SUCCESS"], runs
    run_id = runs[0][0]
    materialized = {
        row[0]
        for row in postgres.query(
            "dagster",
            "select asset_key from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
    }
    assert {'["router_candidate"]', '["candidate_evaluation"]', '["champion_model"]'} <= materialized, materialized
    checks = postgres.query(
        "dagster",
        "select count(*) from event_logs where run_id = %s and dagster_event_type = 'ASSET_CHECK_EVALUATION'",
        (run_id,),
    )[0][0]
    assert checks >= 4
    # The steps ran in both Celery workers (each reports itself in an engine event).
    engine_events = [
        row[0]
        for row in postgres.query(
            "dagster",
            "select event from event_logs where run_id = %s and dagster_event_type = 'ENGINE_EVENT'",
            (run_id,),
        )
    ]
    seen = {name for name in WORKERS for body in engine_events if f"{name}@" in body and "celery worker" in body}
    assert seen == set(WORKERS), f"steps ran on {seen or 'no Celery worker'}"
    assert not list((home / "dagster").rglob("*.db")), "the Dagster instance wrote SQLite files"

    # The registry and the champion live in MLflow's Postgres database.
    champion = postgres.query(
        "mlflow",
        "select version from registered_model_aliases where name = %s and alias = 'champion'",
        ("agent-router",),
    )
    assert champion == [(1,)], champion
    assert postgres.query("mlflow", "select count(*) from runs")[0][0] >= 2  # training + evaluation runs
    assert not (home / "mlflow" / "mlflow.db").exists(), "MLflow wrote its SQLite store"
    status = subprocess.run(
        [str(BIN / "agent-pipeline"), "status", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["aliases"]["champion"] == "1"
    assert postgres.password not in status.stdout and shown["tracking_uri"].startswith(
        "postgresql+psycopg2://agent:***@"
    )

    # The embedded default, same job and inputs, for the timing.
    embedded_home = tmp_path / "embedded"
    embedded_env = subprocess_env(small_inputs, embedded_home)
    embedded_env["PYTHONPATH"] = env["PYTHONPATH"]
    embedded_env["AGENT_PIPELINE_POLICY_CONFIG"] = str(relaxed_latency_gates)
    embedded_s = dg_launch_job(embedded_env, "train_and_promote_job", logs / "embedded-lifecycle.log")
    timings = {
        "postgres_celery_s": round(celery_s, 1),
        "embedded_sqlite_in_process_s": round(embedded_s, 1),
        "ratio": round(celery_s / embedded_s, 2),
        "what": "dg launch --job train_and_promote_job, 40/label slice, 2 Celery workers of concurrency 1",
    }
    (logs / "lifecycle_timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"\nlifecycle timings: {timings}")
