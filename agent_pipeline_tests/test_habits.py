"""Habits that keep the code base so, in the test path: lint, format and Dagster's own definitions check.

``ruff check`` and ``ruff format --check`` (configuration in ``pyproject.toml``, which bans
``dagster._core`` imports) and ``dg check defs`` (the code location loads and validates).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_PIPELINE_")}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")], ids=["lint", "format"])
def test_ruff(args):
    proc = _run(str(BIN / "ruff"), *args)
    assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"


def test_dg_check_defs(tmp_path):
    env_home = tmp_path / "home"
    proc = subprocess.run(
        [str(BIN / "dg"), "check", "defs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AGENT_PIPELINE_")},
            "AGENT_PIPELINE_HOME": str(env_home),
            "DAGSTER_HOME": str(env_home / "dagster"),
        },
    )
    assert proc.returncode == 0, f"dg check defs:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}"
    assert "All definitions loaded successfully" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_dagster_deprecation_in_our_code_fails_the_suite():
    """pyproject's filterwarnings turn a deprecated Dagster call from our code into an error."""
    import dagster as dg

    with (
        dg.instance_for_test() as instance,
        pytest.raises(DeprecationWarning, match="is deprecated and will be removed"),
    ):
        instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION), limit=1)
