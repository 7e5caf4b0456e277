"""Runs SIGKILLed from outside at the step boundaries of training and evaluation.

The production path, for real: a code server (``dagster api grpc``) and ``dagster-daemon run``
on one SQLite instance with the repository's ``dagster.yaml`` (queued run coordinator, run
monitoring on); runs are submitted with ``dagster job launch`` and executed by a run worker
that the code server starts. The test waits in the run's event log for a boundary, kills the
run worker with SIGKILL, and then checks what an operator would see:

* the run ends ``FAILURE`` (not ``STARTED`` forever), and how long that took;
* the champion, the audit log and the serving bundle are unchanged;
* the killed run's model version, if it was registered, is not promoted and no evaluation or
  gate of another run names it;
* a rerun completes and promotes exactly the version it trained and evaluated.

A last case kills a run that nobody supervises (``execute_in_process`` in a plain process):
only the daemon's run monitoring can end it, by its maximum runtime (set per run with the tag
``dagster/max_runtime_seconds``, for every run in ``dagster.yaml``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.registry.models import CHAMPION, ModelRegistry, read_audit
from agent_pipeline.lib.serving import bundle as serving
from agent_pipeline_tests.conftest import subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.drill]

BIN = Path(sys.executable).parent
PID_RE = re.compile(r"Executing steps in process \(pid: (\d+)\)")
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

# Boundary name -> (step key, event type that marks it). The kill lands right after the event
# is visible in the event log (polled every 50 ms), i.e. at the start of what follows.
BOUNDARIES = {
    "training started": ("router_candidate", dg.DagsterEventType.STEP_START),
    "training done": ("router_candidate", dg.DagsterEventType.STEP_SUCCESS),
    "evaluation started": ("candidate_evaluation", dg.DagsterEventType.STEP_START),
    "evaluation done": ("candidate_evaluation", dg.DagsterEventType.STEP_SUCCESS),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Harness:
    home: Path
    env: dict[str, str]
    workspace: Path
    instance: dg.DagsterInstance
    store: ModelRegistry
    logs: Path

    def launch(self, tags: dict[str, str] | None = None) -> str:
        run_id = str(uuid.uuid4())
        subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-w", str(self.workspace), "-j", "train_and_promote_job"]
            + ["--run-id", run_id, "--tags", json.dumps(tags or {})],
            env=self.env,
            cwd=settings.PROJECT_ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
        return run_id

    def status(self, run_id: str) -> dg.DagsterRunStatus | None:
        run = self.instance.get_run_by_id(run_id)
        return run.status if run else None

    def wait_finished(self, run_id: str, timeout: float) -> tuple[dg.DagsterRunStatus | None, float]:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            status = self.status(run_id)
            if status in FINISHED:
                return status, time.monotonic() - start
            time.sleep(0.5)
        return self.status(run_id), time.monotonic() - start

    def worker_pid(self, run_id: str) -> int | None:
        for e in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            m = PID_RE.search(e.message or "")
            if m:
                return int(m.group(1))
        return None

    def wait_boundary(self, run_id: str, step: str, kind: dg.DagsterEventType, timeout: float = 600) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if any(e.step_key == step for e in self.instance.all_logs(run_id, of_type=kind)):
                return
            if self.status(run_id) in FINISHED:
                raise AssertionError(f"run {run_id} finished before {step} {kind.value}")
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} never reached {step} {kind.value}")

    def materialized(self, run_id: str, asset: str) -> dict | None:
        for e in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            if e.asset_materialization.asset_key == dg.AssetKey(asset):
                return {k: v.value for k, v in e.asset_materialization.metadata.items()}
        return None

    def snapshot(self) -> dict:
        bundle = serving.bundle_path(self.home)
        return {
            "champion": self.store.alias_version(CHAMPION),
            "audit": read_audit(self.home),
            "served": serving.load(bundle).version if bundle.is_file() else None,
            "versions": sorted(int(v.version) for v in self.store.client.search_model_versions()),
        }


@pytest.fixture(scope="module")
def harness(small_inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    home = root / "home"
    (home / "dagster").mkdir(parents=True)
    cfg = yaml.safe_load((settings.PROJECT_ROOT / "dagster.yaml").read_text())
    cfg["run_monitoring"]["poll_interval_seconds"] = 5  # the repository's 60 s, shortened for the test
    cfg["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
    (home / "dagster" / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    policy = yaml.safe_load(small_inputs.policy_config.read_text())
    policy["gates"]["latency_within_slo"] = {"slo_ms": {"p50": 1000.0, "p99": 5000.0}}  # latency has its own tests
    (root / "policy.yaml").write_text(yaml.safe_dump(policy))
    env = subprocess_env(small_inputs, home)
    env["AGENT_PIPELINE_POLICY_CONFIG"] = str(root / "policy.yaml")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.PROJECT_ROOT), env.get("PYTHONPATH")]))
    port = free_port()
    (root / "workspace.yaml").write_text(
        yaml.safe_dump(
            {"load_from": [{"grpc_server": {"host": "localhost", "port": port, "location_name": "agent_pipeline"}}]}
        )
    )
    logs = root / "logs"
    logs.mkdir()
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [str(BIN / "dagster"), "api", "grpc", "-m", "agent_pipeline.definitions", "-p", str(port)]
                + ["-d", str(settings.PROJECT_ROOT), "--location-name", "agent_pipeline"],
                env=env,
                cwd=settings.PROJECT_ROOT,
                stdout=(logs / "grpc.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 300
        while subprocess.run(
            [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)], env=env, capture_output=True
        ).returncode:
            assert time.monotonic() < deadline, (logs / "grpc.log").read_text()[-3000:]
            time.sleep(2)
        procs.append(
            subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml")],
                env=env,
                cwd=settings.PROJECT_ROOT,
                stdout=(logs / "daemon.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        with pytest.MonkeyPatch.context() as mp:
            for k in ("DAGSTER_HOME", "AGENT_PIPELINE_HOME"):
                mp.setenv(k, env[k])
            with dg.DagsterInstance.get() as instance:
                yield Harness(home, env, root / "workspace.yaml", instance, ModelRegistry(home=home), logs)
    finally:
        for p in reversed(procs):  # only the processes this fixture started, by their group
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def kill_story(harness):
    # A champion first, so "unchanged" means something.
    first = harness.launch()
    status, _ = harness.wait_finished(first, 900)
    assert status == dg.DagsterRunStatus.SUCCESS, (harness.logs / "daemon.log").read_text()[-3000:]
    cases = []
    for name, (step, kind) in BOUNDARIES.items():
        before = harness.snapshot()
        killed = harness.launch({"test/kill": name})
        harness.wait_boundary(killed, step, kind)
        pid = harness.worker_pid(killed)
        assert pid, f"no worker pid in the event log of {killed}"
        os.kill(pid, signal.SIGKILL)
        status, seconds = harness.wait_finished(killed, 180)
        after_kill = harness.snapshot()
        rerun = harness.launch({"test/rerun_after": name})
        rerun_status, rerun_seconds = harness.wait_finished(rerun, 900)
        cases.append(
            {
                "boundary": name,
                "killed": killed,
                "status": status,
                "seconds_to_failure": seconds,
                "killed_trained": (harness.materialized(killed, "router_candidate") or {}).get("model_version"),
                "killed_evaluated": (harness.materialized(killed, "candidate_evaluation") or {}).get("model_version"),
                "before": before,
                "after_kill": after_kill,
                "rerun": rerun,
                "rerun_status": rerun_status,
                "rerun_seconds": rerun_seconds,
                "rerun_trained": (harness.materialized(rerun, "router_candidate") or {}).get("model_version"),
                "rerun_evaluated": (harness.materialized(rerun, "candidate_evaluation") or {}).get("model_version"),
                "rerun_promoted": (harness.materialized(rerun, "champion_model") or {}).get("champion_version"),
                "after_rerun": harness.snapshot(),
            }
        )
    return cases


def test_killed_runs_end_failure_within_seconds(kill_story):
    for case in kill_story:
        assert case["status"] == dg.DagsterRunStatus.FAILURE, case
        assert case["seconds_to_failure"] < 120, case


def test_a_kill_changes_neither_champion_nor_audit_nor_serving_bundle(kill_story):
    for case in kill_story:
        before, after = case["before"], case["after_kill"]
        assert (after["champion"], after["served"], after["audit"]) == (
            before["champion"],
            before["served"],
            before["audit"],
        ), case["boundary"]


def test_a_rerun_completes_and_promotes_exactly_what_it_trained(kill_story):
    for case in kill_story:
        assert case["rerun_status"] == dg.DagsterRunStatus.SUCCESS, case
        assert case["rerun_trained"] == case["rerun_evaluated"] == case["rerun_promoted"], case
        after = case["after_rerun"]
        assert after["champion"] == after["served"] == case["rerun_trained"]
        (last,) = after["audit"][len(case["after_kill"]["audit"]) :]
        assert (last["version"], last["dagster_run_id"]) == (case["rerun_trained"], case["rerun"])


def test_no_orphan_candidate_is_evaluated_or_promoted_as_another(kill_story):
    for case in kill_story:
        orphan = case["killed_trained"]
        if orphan is None:
            continue
        assert case["rerun_trained"] != orphan
        assert case["rerun_evaluated"] != orphan
        assert all(rec["version"] != orphan for rec in case["after_rerun"]["audit"])
        if case["killed_evaluated"] is not None:
            assert case["killed_evaluated"] == orphan  # the killed run evaluated its own model, no other


def test_kill_table(kill_story, capsys):
    """Not an assertion: the table for the closing note (``pytest -s`` shows it)."""
    rows = [
        "| killed at | run status | s to FAILURE | killed run trained/evaluated | champion before -> after kill | rerun trained/evaluated/promoted |",
        "|---|---|---|---|---|---|",
    ]
    for c in kill_story:
        rows.append(
            f"| {c['boundary']} | {c['status'].value} | {c['seconds_to_failure']:.1f} | "
            f"v{c['killed_trained'] or '-'}/v{c['killed_evaluated'] or '-'} | "
            f"v{c['before']['champion']} -> v{c['after_kill']['champion']} | "
            f"v{c['rerun_trained']}/v{c['rerun_evaluated']}/v{c['rerun_promoted']} ({c['rerun_status'].value}) |"
        )
    with capsys.disabled():
        print("\n" + "\n".join(rows))


UNSUPERVISED = """
import json, sys
import dagster as dg
from agent_pipeline.definitions import defs
with dg.DagsterInstance.get() as instance:
    job = defs().resolve_job_def("train_and_promote_job")
    job.execute_in_process(instance=instance, run_id=sys.argv[1], tags=json.loads(sys.argv[2]), raise_on_error=False)
"""


def test_an_unsupervised_killed_run_is_failed_by_run_monitoring(harness, kill_story, capsys):
    """``execute_in_process`` in a plain process: no code server watches it, so after a SIGKILL only
    the daemon's run monitoring can end it, once the run's maximum runtime has passed."""
    run_id = str(uuid.uuid4())
    proc = subprocess.Popen(
        [sys.executable, "-c", UNSUPERVISED, run_id, json.dumps({"dagster/max_runtime_seconds": "60"})],
        env=harness.env,
        cwd=settings.PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        harness.wait_boundary(run_id, "router_candidate", dg.DagsterEventType.STEP_START)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert harness.status(run_id) == dg.DagsterRunStatus.STARTED  # nobody else would ever end it
    status, seconds = harness.wait_finished(run_id, 180)
    assert status == dg.DagsterRunStatus.FAILURE, (harness.logs / "daemon.log").read_text()[-3000:]
    messages = " ".join(e.message or "" for e in harness.instance.all_logs(run_id))
    assert "maximum runtime" in messages
    with capsys.disabled():
        print(f"\nunsupervised kill: FAILURE {seconds:.0f} s after the kill (max runtime 60 s, poll 5 s)")
