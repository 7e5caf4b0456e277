"""Servers start in their own process group with default signal dispositions and stop as a group."""

from __future__ import annotations

import os
import signal
import sys
import time

from agent_pipeline.lib.core import processes
from agent_pipeline.lib.core.settings import redact_uri

# A parent that forks a grandchild and sleeps; both inherit what the launcher gave them.
TREE = (
    "import os, sys, time\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    time.sleep(120); sys.exit(0)\n"
    "print(pid, flush=True); time.sleep(120)\n"
)


def ignored_signals(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return open(f"/proc/{pid}/status").read().split("State:")[1].split()[0] != "Z"  # noqa: SIM115
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_whole_group_even_when_the_parent_ignored_it(tmp_path):
    log = tmp_path / "tree.log"
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # what some shells hand down (DEPS G12)
    try:
        proc = processes.start_group([sys.executable, "-c", TREE], log_path=log)
    finally:
        signal.signal(signal.SIGTERM, previous)
    processes.wait_until(lambda: log.read_text().strip(), 30, what="the grandchild's pid")
    grandchild = int(log.read_text().split()[0])
    assert os.getpgid(proc.pid) == proc.pid and os.getpgid(grandchild) == proc.pid
    assert ignored_signals(proc.pid) & (1 << (signal.SIGTERM - 1)) == 0, "SIGTERM still ignored in the child"
    start = time.monotonic()
    code = processes.stop_group(proc, signal.SIGTERM, timeout=20)
    assert code == -signal.SIGTERM
    assert time.monotonic() - start < 10, "SIGTERM did not stop it; only the SIGKILL fallback did"
    processes.wait_until(lambda: not alive(grandchild), 10, what="the grandchild gone")


def test_wait_until_names_what_it_waited_for():
    try:
        processes.wait_until(lambda: False, 0.3, interval=0.1, what="the moon")
    except TimeoutError as exc:
        assert "the moon not reached" in str(exc)
    else:
        raise AssertionError("no timeout")


def test_redact_uri_hides_the_password_only():
    assert (
        redact_uri("postgresql+psycopg2://agent:s3cret@db:5432/mlflow")
        == "postgresql+psycopg2://agent:***@db:5432/mlflow"
    )
    assert redact_uri("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"
    assert redact_uri("http://mlflow.internal:5000") == "http://mlflow.internal:5000"


def test_piped_output_is_forwarded_line_by_line_without_the_dropped_lines():
    import io

    from agent_pipeline import run_local

    script = (
        "import sys\n"
        "print('dagster - INFO - Serving dagster-webserver')\n"
        "print('dagster - WARNING - Found a dagster instance configuration value (dagster.yaml) in the current folder')\n"
        "print('to stderr too', file=sys.stderr)\n"
    )
    proc = processes.start_group([sys.executable, "-c", script], pipe=True)
    sink = io.BytesIO()
    processes.forward_output(proc, sink, drop=(run_local.MISLEADING_WARNING,)).join(timeout=30)
    assert proc.wait(timeout=30) == 0
    assert sorted(sink.getvalue().decode().splitlines()) == [
        "dagster - INFO - Serving dagster-webserver",
        "to stderr too",
    ]
