"""Start and stop server processes as process groups, with default signal dispositions.

Processes started from some shells on these machines inherit SIGINT/SIGTERM/SIGQUIT/SIGPIPE as
*ignored* (DEPS.md G12), so ``kill PID`` does nothing to ``dagster dev`` or ``mlflow server``.
Every server here is therefore started in its own session with those signals reset to their
defaults and stopped by signalling its whole process group, escalating to SIGKILL.
No Dagster import: used by ``make run``'s launcher and by the integration tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

RESET = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGPIPE, signal.SIGHUP)


def _reset_signals() -> None:
    for sig in RESET:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def start_group(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
    user: str | None = None,
    pipe: bool = False,
) -> subprocess.Popen:
    """``argv`` in a new session (its pid is the group id), signals reset, output to ``log_path``
    (truncated; inherited when None; with ``pipe``, stdout and stderr together on ``proc.stdout``),
    as ``user`` when given (the caller must be root)."""
    out = open(log_path, "wb") if log_path else None  # noqa: SIM115 - the child keeps it open
    try:
        return subprocess.Popen(
            list(argv),
            env=env,
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
            stdout=out or (subprocess.PIPE if pipe else None),
            stderr=subprocess.STDOUT if out or pipe else None,
            start_new_session=True,
            preexec_fn=_reset_signals,  # noqa: PLW1509 - only signal calls, no locks
            user=user,
            group=_group_of(user) if user else None,
            extra_groups=[] if user else None,
        )
    finally:
        if out:
            out.close()


def forward_output(proc: subprocess.Popen, sink, drop: Sequence[bytes] = ()) -> threading.Thread:
    """Copy ``proc``'s piped output to ``sink`` (a binary stream) line by line, leaving out lines
    containing any of ``drop``; in a daemon thread that ends with the output."""

    def copy() -> None:
        for line in iter(proc.stdout.readline, b""):
            if not any(marker in line for marker in drop):
                sink.write(line)
                sink.flush()

    thread = threading.Thread(target=copy, name=f"output-{proc.pid}", daemon=True)
    thread.start()
    return thread


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
    """Signal the process group of ``proc``; SIGKILL the group after ``timeout`` s. Returns the exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Children of the leader (e.g. worker processes) may outlive it: the group goes in any case.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return None


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition") -> None:
    """Poll ``predicate`` until it is truthy; TimeoutError naming ``what`` otherwise.
    An AssertionError from ``predicate`` (e.g. "the server exited") ends the wait at once."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a server that is not up yet refuses in many ways
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout:.0f} s" + (f" (last error: {last})" if last else ""))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
