"""Steps that talk to MLflow retry a transient error (defs/retries.py), and only a transient one.

The transient error is real: another process holds an exclusive lock on the MLflow SQLite store
while ``router_candidate`` tries to register its model, and lets go once Dagster has scheduled
the retry. Without the retry policy the run fails with "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
import time

import dagster as dg
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.defs.retries import TRANSIENT_RETRY
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.registry.models import CANDIDATE, ModelRegistry

RETRIED = ("router_candidate", "candidate_evaluation", "champion_evaluation", "benchmark_baseline", "drift_report")


def test_mlflow_and_state_steps_carry_the_bounded_retry_policy():
    d = defs()
    for name in RETRIED:
        assert d.resolve_assets_def(name).op.retry_policy == TRANSIENT_RETRY, name
    assert d.resolve_assets_def("champion_model").op.retry_policy is None  # the promotion transaction decides
    assert TRANSIENT_RETRY.max_retries == 2 and TRANSIENT_RETRY.backoff == dg.Backoff.EXPONENTIAL


@pytest.mark.integration
def test_a_locked_registry_is_retried_and_the_run_succeeds(pipeline_env):
    store = ModelRegistry(home=pipeline_env)
    assert store.alias_version(CANDIDATE) is None  # creates the SQLite store before the lock is taken
    db = settings.mlflow_dir(pipeline_env) / "mlflow.db"
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:
        con = sqlite3.connect(db, timeout=30, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(timeout=600)
        con.execute("ROLLBACK")
        con.close()

    with dg.instance_for_test() as instance:

        def release_on_retry() -> None:
            while not release.is_set():
                for run in instance.get_runs():
                    if instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY):
                        release.set()
                time.sleep(0.2)

        holder = threading.Thread(target=hold_lock, daemon=True)
        holder.start()
        assert locked.wait(30)
        watcher = threading.Thread(target=release_on_retry, daemon=True)
        watcher.start()
        try:
            job = defs().resolve_job_def("train_and_promote_job")
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[
                    dg.AssetKey(a) for a in ("training_examples", "validation_examples", "router_candidate")
                ],
                raise_on_error=False,
            )
        finally:
            release.set()
            holder.join(30)
            watcher.join(30)
        assert result.success
        retries = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert [e.step_key for e in retries] == ["router_candidate"]
        assert "locked" in (retries[0].message or "") + str(retries[0].dagster_event.event_specific_data)
        assert store.alias_version(CANDIDATE) is not None
