"""``agent-pipeline serve`` as a real uvicorn process on loopback.

One server: it becomes ready, follows a promotion while four clients keep sending requests
(no request fails, each client sees version 1 then version 2, never back), sheds a burst of
concurrent requests with 503 + ``Retry-After`` and stays healthy, and on SIGTERM shuts down after
writing every answered request to the landing folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.promotion import change_champion

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read()[-3000:]}")
        try:
            resp = httpx.get(f"{base}/healthz", timeout=2)
            if resp.status_code == 200:
                return resp.json()
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("server not ready in time")


@pytest.fixture
def server(served_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(served_home, home)
    uri = f"sqlite:///{settings.mlflow_dir(home) / 'mlflow.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_PIPELINE_", "MLFLOW_", "OTEL_"))}
    env.update(
        {
            "AGENT_PIPELINE_HOME": str(home),
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "AGENT_PIPELINE_SERVE_POLL_SECONDS": "1",
            "AGENT_PIPELINE_SERVE_FLUSH_SECONDS": "600",  # only the shutdown flush writes
            "AGENT_PIPELINE_SERVE_MAX_IN_FLIGHT": "8",
        }
    )
    cli = shutil.which("agent-pipeline", path=str(BIN))
    cmd = [cli] if cli else [sys.executable, "-m", "agent_pipeline.cli"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield {"base": f"http://127.0.0.1:{port}", "proc": proc, "home": home, "uri": uri}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_real_server_switches_under_load_sheds_overload_and_flushes_on_sigterm(server):
    base, proc, home = server["base"], server["proc"], server["home"]
    health = wait_ready(base, proc)
    assert health["model_version"] == "1" and health["source"] == "bundle"

    # 1. A promotion under load: four clients, no failed request, versions only move forward.
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]

    def client(i: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            n = 0
            while not stop.is_set():
                resp = c.post("/route", json={"text": f"transfer {n} dollars to savings"})
                seen[i].append((resp.status_code, resp.json().get("model_version", "")))
                n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    _store = ModelRegistry(server["uri"], "agent-router", home=home)
    change_champion(_store, _store.home, action="promote", version="2", details={"reason": "switch under load"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(s and s[-1][1] == "2" for s in seen):
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    answered = sum(len(s) for s in seen)
    assert all(code == 200 for s in seen for code, _ in s), "a request failed during the switch"
    for s in seen:
        versions = [v for _, v in s]
        assert versions[0] == "1" and versions[-1] == "2"
        assert versions == sorted(versions), "a client went back to the old champion"

    # 2. Overload: 200 concurrent requests against max_in_flight 8: 200s and 503s only, never a crash.
    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
            return await asyncio.gather(*(c.post("/route", json={"text": "book a flight"}) for _ in range(200)))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) > 0, codes
    shed = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"] for r in shed)
    answered += codes.count(200)
    assert httpx.get(f"{base}/healthz").status_code == 200
    metrics = httpx.get(f"{base}/metrics").text
    assert f"agent_router_overload_rejections_total {float(len(shed))}" in metrics
    assert "agent_router_champion_switches_total 1.0" in metrics

    # 3. SIGTERM: graceful exit, every answered request is in a landing file.
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal: the exit status says "terminated".
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    landing = settings.landing_dir(home)
    rows = [json.loads(line) for p in sorted(landing.glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert len(rows) == answered
    assert len({r["request_id"] for r in rows}) == answered
    assert {r["model_version"] for r in rows} == {"1", "2"}
    assert not [p for p in landing.iterdir() if p.name.startswith(".")]
    log_lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]
    assert log_lines and all("model_version" in line and "run_id" in line for line in log_lines)
    assert any("champion v2 loaded" in line["message"] for line in log_lines)
    assert any(line["message"] == "Application shutdown complete." for line in log_lines)
