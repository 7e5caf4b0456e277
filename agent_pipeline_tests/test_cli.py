"""The ``agent-pipeline`` command as a user runs it: a subprocess, JSON or text out, exit codes.

The module's state folder has been through ``train_and_promote_job`` once (run in-process by
the fixture), so v1 is the champion. User mistakes must print one ``error:`` line and exit 2,
never a traceback. The slow test drives the Dagster CLI itself: ``dagster asset materialize
--select '*'`` for a quiet day in a fresh state folder, and a champion comes out of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline_tests.conftest import subprocess_env

BIN = Path(sys.executable).parent
CLI = (
    [shutil.which("agent-pipeline", path=str(BIN))]
    if shutil.which("agent-pipeline", path=str(BIN))
    else [sys.executable, "-m", "agent_pipeline.cli"]
)
ROUTE_KEYS = {"route", "agent", "label", "confidence", "fallback", "rule", "model_version"}
EVALUATE_KEYS = {"n", "label_accuracy", "in_scope_accuracy", "fallback_recall", "fallback_precision", "route_accuracy"}


@pytest.fixture(scope="module")
def home(small_inputs, tmp_path_factory) -> Path:
    """A state folder where the lifecycle ran once: v1 trained, gated and promoted."""
    home = tmp_path_factory.mktemp("cli") / "home"
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for key, value in small_inputs.env(home).items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = (
            defs().resolve_job_def("train_and_promote_job").execute_in_process(instance=instance, raise_on_error=False)
        )
        assert result.success, "the lifecycle must promote v1 before the CLI can be tested"
    return home


def cli(small_inputs, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], env=subprocess_env(small_inputs, home), capture_output=True, text=True, timeout=300, check=False
    )


def ok_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_route_canonical_contract_case_by_rule(small_inputs, home):
    out = ok_json(cli(small_inputs, home, "route", "Generate contract summary", "--json"))
    assert ROUTE_KEYS <= set(out)
    assert out["route"] == "contracts"
    assert out["agent"] == "contracts"
    assert out["label"] == "contract_summary"
    assert out["rule"] == "contract_summary"
    assert out["fallback"] is False
    assert out["model_version"] == "1"


def test_route_weather_falls_back_to_general_agent(small_inputs, home):
    out = ok_json(cli(small_inputs, home, "route", "What is the weather today?", "--json"))
    assert ROUTE_KEYS <= set(out)
    assert out["fallback"] is True
    assert out["agent"] == "general"
    assert out["route"] == "fallback"
    assert out["rule"] is None
    assert 0.0 <= out["confidence"] <= 1.0


def test_evaluate_a_dataset_file_against_the_champion(small_inputs, home, tmp_path):
    golden = shutil.copy(small_inputs.golden, tmp_path / "my_cases.csv")
    out = ok_json(cli(small_inputs, home, "evaluate", "--dataset", str(golden), "--json"))
    assert EVALUATE_KEYS <= set(out)
    assert out["n"] == len(pd.read_csv(golden))
    assert all(0.0 <= out[k] <= 1.0 for k in EVALUATE_KEYS - {"n"})
    assert out["model_version"] == "1"
    assert out["dataset"] == str(golden)


def test_status_json_shows_champion_gates_baseline_and_audit(small_inputs, home):
    out = ok_json(cli(small_inputs, home, "status", "--json"))
    assert out["aliases"] == {"champion": "1", "candidate": "1", "previous-champion": None}
    assert out["candidate_evaluation"]["gates"] == dict.fromkeys(
        [
            "agrees_with_champion_on_traffic",
            "critical_cases_pass",
            "generalizes_to_holdout",
            "human_approval",
            "latency_within_slo",
            "no_regression_vs_baseline",
            "routing_is_stable",
            "safety_probes_pass",
            "survives_agent_faults",
        ],
        "passed",
    )
    assert out["baseline"]["version"] == "1"
    assert [(a["action"], a["version"]) for a in out["last_actions"]] == [("promote", "1")]


def test_status_text_is_readable(small_inputs, home):
    proc = cli(small_inputs, home, "status")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("model agent-router (sqlite:///")
    assert "  champion           v1" in lines
    assert any(line.startswith("  baseline           v1 blessed by ") for line in lines)
    assert any(" promote v1 by " in line for line in lines)


def _malformed(small_inputs, tmp_path) -> Path:
    df = pd.read_csv(small_inputs.golden, dtype=str, keep_default_na=False)
    df.loc[3, "id"] = df.loc[0, "id"]
    df.loc[4, "label"] = "teleport_me"
    path = tmp_path / "malformed.csv"
    df.to_csv(path, index=False)
    return path


USER_ERRORS = {
    "missing-dataset": ["{tmp}/nope.csv: dataset file not found"],
    "malformed-dataset": [
        "{tmp}/malformed.csv is not a valid dataset: ",
        "{tmp}/malformed.csv: labels_known failed",
        "{tmp}/malformed.csv: ids_unique failed",
    ],
    "unknown-version": ["has no version 99"],
    "empty-home": ["has no alias 'champion'"],
}


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_errors_are_one_line_and_exit_2(small_inputs, home, tmp_path, case):
    if case == "missing-dataset":
        proc = cli(small_inputs, home, "evaluate", "--dataset", str(tmp_path / "nope.csv"))
    elif case == "malformed-dataset":
        proc = cli(small_inputs, home, "evaluate", "--dataset", str(_malformed(small_inputs, tmp_path)))
    elif case == "unknown-version":
        proc = cli(small_inputs, home, "route", "hello", "--version", "99")
    else:
        proc = cli(small_inputs, tmp_path / "empty_home", "route", "Generate contract summary")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for text in USER_ERRORS[case]:
        assert text.format(tmp=tmp_path) in lines[0]
    assert proc.stdout == ""


@pytest.mark.slow
def test_dagster_cli_materializes_everything_for_a_quiet_day(small_inputs, tmp_path, monkeypatch):
    home = tmp_path / "home"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    proc = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "agent_pipeline.definitions",
            "--select",
            "*",
            "--partition",
            yesterday,
        ],
        env=subprocess_env(small_inputs, home),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert ModelRegistry(home=home).alias_version("champion") == "1"
