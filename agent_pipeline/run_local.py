"""``make run``: the Dagster UI + daemon (``dg dev``) and the MLflow UI beside it, on one state folder.

Every MLflow link in the assets' metadata points at ``AGENT_PIPELINE_MLFLOW_UI_URL``; this
launcher starts that server (``mlflow server --workers 1``, background jobs off: DEPS.md G11) on
the state folder's tracking store and artifacts, so the links answer, and sets the variable for
Dagster when it is unset. With ``MLFLOW_TRACKING_URI`` pointing at a remote server, only Dagster
starts. Both servers run in their own process groups with default signal dispositions and are
stopped together (Ctrl-C, SIGTERM, or either one exiting): DEPS.md G12.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from agent_pipeline.lib.core import processes, settings

BIN = Path(sys.executable).parent
# `dagster dev` warns when the folder it runs in holds a dagster.yaml that is not DAGSTER_HOME's,
# saying the file "will not be used". The repository's dagster.yaml is the template that
# agent_pipeline._home copies into DAGSTER_HOME, so it is used: the line is dropped.
MISLEADING_WARNING = b"Found a dagster instance configuration value"


def mlflow_command(home: Path, host: str, port: int) -> list[str] | None:
    """The ``mlflow server`` command for the state folder's store, or None for a remote store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or settings.default_tracking_uri(home)
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    artifacts = settings.mlflow_dir(home) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    return [
        str(BIN / "mlflow"), "server", "--backend-store-uri", uri, "--default-artifact-root", artifacts.as_uri(),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def mlflow_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "1")
    return env


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL we started
            return resp.status == 200
    except OSError:
        return False


def port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_pipeline.run_local", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port")
    args = parser.parse_args(argv)

    stop = {"signal": None}

    def on_signal(signum, _frame) -> None:
        stop["signal"] = signum

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)  # also undoes an inherited SIG_IGN (G12)

    for port, what in ((args.port, "PORT (Dagster UI)"), (args.mlflow_port, "MLFLOW_PORT (MLflow UI)")):
        if port_in_use(args.host, port):
            print(f"error: {args.host}:{port} is already in use; free it or pass another {what}", file=sys.stderr)
            return 2
    home = settings.resolve_home(os.environ.get("AGENT_PIPELINE_HOME"))
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[tuple[str, object]] = []
    mlflow_url = f"http://{args.host}:{args.mlflow_port}"
    command = mlflow_command(home, args.host, args.mlflow_port)
    if command:
        children.append(
            ("mlflow", processes.start_group(command, env=mlflow_env(), log_path=logs / "mlflow-server.log"))
        )
        os.environ.setdefault("AGENT_PIPELINE_MLFLOW_UI_URL", mlflow_url)
    dagster_cmd = [str(BIN / "dg"), "dev", "--host", args.host, "--port", str(args.port)]
    dagster = processes.start_group(dagster_cmd, env=dict(os.environ), cwd=settings.PROJECT_ROOT, pipe=True)
    processes.forward_output(dagster, sys.stdout.buffer, drop=(MISLEADING_WARNING,))
    children.append(("dagster", dagster))

    print(f"state folder  {home}", flush=True)
    print(f"Dagster UI    http://{args.host}:{args.port}", flush=True)
    if command:
        print(f"MLflow UI     {mlflow_url}  (log: {logs / 'mlflow-server.log'})", flush=True)
    else:
        print(f"MLflow        {os.environ.get('MLFLOW_TRACKING_URI')} (remote; not started here)", flush=True)
    announced = not command
    code = 0
    try:
        while stop["signal"] is None:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping the others", file=sys.stderr)
                    if name == "mlflow":  # its output went to the log file: show why (e.g. port in use)
                        tail = (logs / "mlflow-server.log").read_text(errors="replace").splitlines()[-8:]
                        print("\n".join(tail), file=sys.stderr)
                    code = proc.returncode or 1
                    stop["signal"] = -1
            if not announced and healthy(f"{mlflow_url}/health"):
                print(f"MLflow UI ready at {mlflow_url}", flush=True)
                announced = True
            time.sleep(0.5)
    finally:
        for _name, proc in reversed(children):
            processes.stop_group(proc, signal.SIGTERM, timeout=20)
    return code


if __name__ == "__main__":
    sys.exit(main())
