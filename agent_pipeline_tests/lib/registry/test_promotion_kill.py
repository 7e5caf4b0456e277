"""Promotion is one transaction: a real promotion process is SIGKILLed (from this test process) at
every step boundary, then ``agent-pipeline doctor --repair`` rolls it back or forward, and the
champion alias, the serving bundle, the drift reference, the baseline and the audit chain agree.

The promoting process pauses at the step it is given (``change_champion(pause_after=...)``, the hook in
``lib/registry/promotion.py``) and is killed there with SIGKILL: no cleanup code runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.monitoring import records as monitoring
from agent_pipeline.lib.registry import audit, promotion
from agent_pipeline.lib.registry.models import CHAMPION, ModelRegistry
from agent_pipeline_tests.conftest import tiny_router

# Real subprocesses killed at seven points (minutes on a busy machine): with the other kill and
# fault drills, run by `make test-integration` and CI, not the default suite.
pytestmark = pytest.mark.integration

DRIVER = """
import sys
from pathlib import Path
from agent_pipeline.lib.registry import promotion
from agent_pipeline.lib.registry.models import ModelRegistry
home, version, evaluation_id, step = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
store = ModelRegistry(home=home)
promotion.change_champion(store, home, action="promote", version=version,
                          details={"evaluation_id": evaluation_id}, bootstrap_evaluation=evaluation_id,
                          pause_after=step)
"""

# (step killed after, what the repair does, champion afterwards: "new" or "old")
CASES = [
    ("baseline", "rolled forward", "new"),  # the first promotion: alias, bundle, reference, baseline bootstrap
    ("intent", "rolled back", "old"),
    ("alias", "rolled forward", "new"),
    ("serving_bundle", "rolled forward", "new"),
    ("drift_reference", "rolled forward", "new"),
    ("audit", "already committed", "new"),
    ("done", None, "new"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("kill") / "home"
    router, _, val = tiny_router()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_PIPELINE_", "MLFLOW_TRACKING"))}
    env.update(
        {"AGENT_PIPELINE_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(settings.PROJECT_ROOT)}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENT_PIPELINE_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        store = ModelRegistry(home=home)
        evals = {}
        for _ in range(2):
            v = store.log_router(router, params={}, metrics={}, tags={})["version"]
            model = store.load(version=v)
            ev = evaluation.evaluate(model, {"golden": val}, version=v, measure_latency=False)
            evals[v] = evaluation.save(
                ev, evaluation.evaluation_dir(home, v, f"20260101T00000{v}Z-candidate-kill")
            ).name
            monitoring.capture_reference(home, model, val["text"], make_current=False)
        yield home, store, evals, env


def promote_and_kill(home: Path, env: dict, version: str, evaluation_id: str, step: str) -> None:
    marker = home / "registry" / f"paused-after-{step}"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(home), version, evaluation_id, step],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not marker.is_file():
        if proc.poll() is not None:
            pytest.fail(f"the promotion ended before reaching {step}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"no pause after {step}"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    marker.unlink()


def doctor(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent_pipeline.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_kill_at_every_step_then_doctor_repairs(setup):
    home, store, evals, env = setup
    old = None
    for step, outcome, expected in CASES:
        new = "2" if old == "1" else "1"
        n_before = len(audit.read(home))
        promote_and_kill(home, env, new, evals[new], step)
        pending = promotion.read_intent(home)
        if step == "done":
            assert pending is None
        else:
            assert pending is not None and pending["version"] == new, step
        if step == "intent":
            seen = doctor(env)
            assert seen.returncode == 1, seen.stdout + seen.stderr
            assert f"half-done promote of v{new}" in seen.stdout
        repaired = doctor(env, "--repair")
        assert repaired.returncode == 0, (step, repaired.stdout, repaired.stderr)
        if outcome:
            assert f"promote of v{new}" in repaired.stdout and outcome in repaired.stdout, (step, repaired.stdout)
        champion = new if expected == "new" else old
        assert store.alias_version(CHAMPION) == champion, step
        state = promotion.state_summary(home)
        assert state["pending"] is None
        assert (state["serving"], state["reference"]) == (champion, champion), (step, state)
        assert state["baseline"] is True
        assert audit.verify(home).ok, step
        records = audit.read(home)
        last = records[-1]
        if outcome == "rolled back":
            assert (last["action"], last["version"], last["champion"]) == ("promote-rolled-back", new, old)
        else:
            assert (last["action"], last["version"]) == ("promote", new)
            assert last.get("recovery") == ("rolled-forward" if outcome == "rolled forward" else None), step
            assert len(records) == n_before + 1  # exactly one commit, never two
        old = champion


def route(env: dict, text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent_pipeline.cli", "route", text, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_route_answers_only_with_the_champion(setup):
    """The alias moved behind the serving bundle's back: ``route`` notices and answers with the champion."""
    import json

    home, store, evals, env = setup
    if store.alias_version(CHAMPION) is None:
        promotion.change_champion(
            store,
            home,
            action="promote",
            version="1",
            details={"evaluation_id": evals["1"]},
            bootstrap_evaluation=evals["1"],
        )
    served = promotion.serving_version(home)
    assert served == store.alias_version(CHAMPION)
    ok = route(env, "what is my balance")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model_version"] == served and ok.stderr == ""
    other = "2" if served == "1" else "1"
    store.client.set_registered_model_alias(store.model_name, CHAMPION, other)  # outside the pipeline
    moved = route(env, "what is my balance")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["model_version"] == other
    assert f"serving bundle {home / 'serving'}" in moved.stderr
    assert f"is v{served} but the champion alias is v{other}" in moved.stderr
    assert moved.stderr.startswith("warning: serving bundle ")  # one line of ours (MLflow may add its own)
    assert sum(line.startswith("warning: serving bundle") for line in moved.stderr.splitlines()) == 1
    store.client.delete_registered_model_alias(store.model_name, CHAMPION)
    gone = route(env, "what is my balance")
    assert gone.returncode == 2
    assert gone.stderr.startswith("warning: ") and "error: model 'agent-router' has no alias 'champion'" in gone.stderr
