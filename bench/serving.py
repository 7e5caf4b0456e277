"""The ``serve`` bench section: ``agent-pipeline serve`` under load, on loopback, bounded in time.

The full-data ``fast`` router is registered twice (v1, v2) in a temporary registry and v1
promoted (writing its serving bundle, as production does); the server runs as its own process
and ``bench/serve_load.py`` drives it from another (closed loop, keep-alive). Three measurements:

1. **Sustained throughput at the p99 target**: concurrency 1, 2, 4, 8, 16 for a few seconds
   each; the figure is the highest answered req/s whose p99 stays within the router's p99 SLO
   (``config/policy.yaml`` ``gates.latency_within_slo.slo_ms.p99``) with no error. Reference: the in-process
   serving router's own single-thread decisions/s on the same texts (the ceiling without HTTP).
2. **Overload**: 256 concurrent clients against the default admission limit
   (``max_in_flight`` 64): the share shed with 503, that every 503 carries ``Retry-After``, the
   goodput kept relative to the sustained level, and zero failures other than 503.
3. **Champion switch under load**: at the sustained concurrency, v2 is promoted mid-run; every
   request must answer 200 and no client may see v1 after v2.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.evaluation import metrics
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.promotion import change_champion
from agent_pipeline.lib.serving import bundle as serving
from bench.report import Figure

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LEVELS = (1, 2, 4, 8, 16)
OVERLOAD_CLIENTS = 256


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(url: str, texts_file: Path, concurrency: int, seconds: float) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.serve_load",
            "--url",
            url,
            "--texts",
            str(texts_file),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=seconds + 120,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent-pipeline serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            resp = httpx.get(f"{url}/healthz", timeout=2)
            if resp.status_code == 200:
                return resp.json()
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("agent-pipeline serve did not become ready in time")


def serve_section(quick: bool, ctx: dict, trained_router) -> list[Figure]:
    router, _, val = trained_router("fast")
    texts = val["text"].astype(str).tolist()
    policy = yaml.safe_load(settings.DEFAULT_POLICY_CONFIG.read_text())
    p99_target = float(policy["gates"]["latency_within_slo"]["slo_ms"]["p99"])
    seconds = 1.5 if quick else 3.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        uri = f"sqlite:///{settings.mlflow_dir(home) / 'mlflow.db'}"
        store = ModelRegistry(uri, settings.DEFAULT_MODEL_NAME, home=home)
        logged = store.log_router(router, params={}, metrics={}, tags={"purpose": "bench serve"})
        import mlflow

        mlflow.register_model(logged["model_uri"], store.model_name)  # v2: the same model, a new version
        change_champion(store, store.home, action="promote", version="1", details={"reason": "bench serve"})
        texts_file = tmp / "texts.txt"
        texts_file.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")

        # Reference: the in-process serving router, one thread, the same texts.
        bundle_router = serving.load(serving.bundle_path(home))
        in_process = metrics.latency_profile(bundle_router.route, texts)
        in_process_rps = 1000.0 / in_process["mean_ms"]

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_PIPELINE_", "MLFLOW_TRACKING", "OTEL_"))}
        env.update(
            {
                "AGENT_PIPELINE_HOME": str(home),
                "MLFLOW_TRACKING_URI": uri,
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "AGENT_PIPELINE_SERVE_POLL_SECONDS": "2",
                "AGENT_PIPELINE_SERVE_FLUSH_SECONDS": "5",
            }
        )
        cli = shutil.which("agent-pipeline", path=str(BIN))
        cmd = [cli] if cli else [sys.executable, "-m", "agent_pipeline.cli"]
        server = subprocess.Popen(
            [*cmd, "serve", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_ready(url, server)
            _load(url, texts_file, 4, 1.0)  # warm-up: connections, the worker threads, the n-gram memo

            # 1. Sustained throughput at the p99 target.
            levels = [_load(url, texts_file, c, seconds) for c in LEVELS]
            within = [
                r
                for r in levels
                if r["p99_ms"] <= p99_target
                and r["transport_errors"] == 0
                and set(r["codes"]) == {"200"}
                and r["requests"] == r["codes"]["200"]
            ]
            best = max(within, key=lambda r: r["ok_per_s"]) if within else None

            # 2. Overload: far more clients than the admission limit.
            overload = _load(url, texts_file, OVERLOAD_CLIENTS, 3 * seconds)
            healthy_after = httpx.get(f"{url}/healthz", timeout=5).status_code == 200

            # 3. Champion switch under load.
            switch_clients = best["concurrency"] if best else 4
            result: dict = {}
            loader = threading.Thread(
                target=lambda: result.update(_load(url, texts_file, switch_clients, 4 * seconds)), daemon=True
            )
            loader.start()
            time.sleep(seconds)
            t_promote = time.perf_counter()
            change_champion(
                store, store.home, action="promote", version="2", details={"reason": "bench serve: switch under load"}
            )
            promote_s = time.perf_counter() - t_promote
            switched_at = None
            while switched_at is None and time.perf_counter() - t_promote < 60:
                if httpx.get(f"{url}/healthz", timeout=5).json().get("model_version") == "2":
                    switched_at = time.perf_counter() - t_promote
                else:
                    time.sleep(0.05)
            loader.join(timeout=4 * seconds + 180)
            metrics_text = httpx.get(f"{url}/metrics", timeout=5).text
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        landing_files = len(list(settings.landing_dir(home).glob("*.jsonl")))

    switch = result
    switch_failed = (
        switch.get("requests", 0) - switch.get("codes", {}).get("200", 0) + switch.get("transport_errors", 0)
    )
    went_back = sum(
        1 for runs in switch.get("versions", []) if [v for v, _ in runs] not in (["1"], ["2"], ["1", "2"], [])
    )
    overload_codes = overload["codes"]
    shed = overload_codes.get("503", 0)
    overload_failed = overload["requests"] - overload_codes.get("200", 0) - shed + overload["transport_errors"]
    sustained = best["ok_per_s"] if best else 0.0

    rows = ["| clients | answered req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    rows += [
        f"| {r['concurrency']} | {r['ok_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
        f"{r['requests'] - r['codes'].get('200', 0) + r['transport_errors']} |"
        for r in levels
    ]
    ctx[f"serve: closed-loop levels (p99 target {p99_target:.0f} ms)"] = "\n".join(rows)
    ctx["serve: overload and switch"] = json.dumps(
        {
            "overload": {k: overload[k] for k in ("concurrency", "requests", "codes", "ok_per_s", "p99_ms")}
            | {"retry_after_missing": overload["retry_after_missing"], "healthy_after": healthy_after},
            "switch": {
                "clients": switch_clients,
                "requests": switch.get("requests"),
                "codes": switch.get("codes"),
                "failed": switch_failed,
                "clients_back_to_v1": went_back,
                "promote_call_s": round(promote_s, 2),
                "alias_move_to_v2_served_s": None if switched_at is None else round(switched_at, 2),
            },
            "landing_files": landing_files,
            "switch_metric": [line for line in metrics_text.splitlines() if line.startswith("agent_router_champion")],
        },
        indent=1,
    )
    return [
        Figure(
            "serve",
            "serve.sustained_rps_at_p99_target",
            sustained,
            "req/s",
            "in-process serving router, decisions/s (1 thread)",
            in_process_rps,
            better="higher",
            target=f"p99 <= {p99_target:.0f} ms, 0 errors",
        ),
        Figure(
            "serve",
            "serve.p99_at_sustained",
            best["p99_ms"] if best else float("nan"),
            "ms",
            "in-process serving router p99",
            in_process["p99_ms"],
            target=f"<= {p99_target:.0f} ms",
            gated=False,
        ),
        Figure(
            "serve",
            "serve.overload_503_share",
            shed,
            "requests",
            f"requests from {OVERLOAD_CLIENTS} clients",
            overload["requests"],
            target="503 + Retry-After, never a crash",
            gated=False,
        ),
        Figure(
            "serve",
            "serve.overload_goodput",
            overload["ok_per_s"],
            "req/s",
            "sustained req/s at the p99 target",
            sustained or float("nan"),
            better="higher",
            target="shedding keeps the goodput",
            gated=False,
        ),
        Figure(
            "serve",
            "serve.overload_failures",
            overload_failed + overload["retry_after_missing"] + (0 if healthy_after else 1),
            "requests",
            "overload requests",
            overload["requests"],
            target="0: only 200 or 503 + Retry-After, healthy after",
            tolerance=0.0,
        ),
        Figure(
            "serve",
            "serve.switch_failed_requests",
            switch_failed + went_back + (0 if switched_at is not None else 1),
            "requests",
            "requests during the switch",
            switch.get("requests", 0),
            target="0 failed, no client back to v1",
            tolerance=0.0,
        ),
        Figure(
            "serve",
            "serve.switch_seconds",
            switched_at if switched_at is not None else float("nan"),
            "s",
            "promote() call",
            promote_s,
            target="served within the watcher's poll",
            gated=False,
        ),
    ]
