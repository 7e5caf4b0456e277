"""lib/core: settings read once from a mapping, atomic writes, the git commit of a run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.core.files import atomic_path, atomic_write
from agent_pipeline.lib.core.provenance import git_commit
from agent_pipeline.lib.core.settings import ENV, Settings


# -- settings -------------------------------------------------------------------------------
def test_settings_defaults_work_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.home == tmp_path / ".agent_pipeline"
    assert s.tracking == f"sqlite:///{tmp_path / '.agent_pipeline' / 'mlflow' / 'mlflow.db'}"
    assert (s.model_name, s.train_data, s.encoder_threads) == ("agent-router", settings.DEFAULT_TRAIN_DATA, None)


def test_a_relative_home_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({"AGENT_PIPELINE_HOME": "state/a"}).home == tmp_path / "state" / "a"
    assert settings.resolve_home("state/a") == tmp_path / "state" / "a"  # the rule _home.py applies too
    assert Settings.from_env({"AGENT_PIPELINE_TRAIN_DATA": "t.csv"}).train_data == tmp_path / "t.csv"


def test_settings_read_every_variable_and_overrides_win(tmp_path):
    env = {var: str(tmp_path / name) for name, var in ENV.items()}
    env.update({"MLFLOW_TRACKING_URI": "http://mlflow:5000", "AGENT_PIPELINE_ENCODER_THREADS": "3"})
    s = Settings.from_env(env, model_name="other")
    assert s.tracking == "http://mlflow:5000" and s.encoder_threads == 3 and s.model_name == "other"
    assert s.golden_data == tmp_path / "golden_data" and s.user == str(tmp_path / "user")
    assert Settings.from_env({"AGENT_PIPELINE_MODEL_NAME": "m"}, model_name=None).model_name == "m"


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_bad_settings_name_the_variable(value):
    with pytest.raises(ConfigError, match="AGENT_PIPELINE_ENCODER_THREADS"):
        Settings.from_env({"AGENT_PIPELINE_ENCODER_THREADS": value})


def test_every_setting_is_listed_in_env_example():
    example = (settings.PROJECT_ROOT / ".env.example").read_text()
    assert [var for var in ENV.values() if var not in example] == []


def test_every_variable_the_package_reads_is_documented_in_env_example():
    """Not only the table: any ``AGENT_PIPELINE_*`` name in the package (resources, executors,
    serving, telemetry, sensors) appears in ``.env.example``, so a new knob cannot hide."""
    import re

    example = (settings.PROJECT_ROOT / ".env.example").read_text()
    named = set()
    for path in (settings.PROJECT_ROOT / "agent_pipeline").rglob("*.py"):
        named |= set(re.findall(r"AGENT_PIPELINE_[A-Z_]*[A-Z]", path.read_text(encoding="utf-8")))
    assert sorted(v for v in named if v not in example) == []


# -- atomic writes --------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "doc.json"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["doc.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "doc.txt"
    atomic_write(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer crashed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.txt"]


# -- provenance -----------------------------------------------------------------------------
def test_git_commit_of_a_repository_and_of_a_plain_folder(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f").write_text("x")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_commit(repo) == head
    assert git_commit(Path(tmp_path / "plain")) == "unknown"


# -- markdown -------------------------------------------------------------------------------
def test_markdown_tables_escape_user_text_and_leave_undefined_empty():
    import pandas as pd

    from agent_pipeline.lib.core.markdown import frame_table, table

    assert table(["a", "b"], [["x|y\nz", 0.12345], ["w", float("nan")]], floatfmt=".2f").splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x\\|y z | 0.12 |",
        "| w |  |",
    ]
    assert frame_table(pd.DataFrame(columns=["a"]), empty="none") == "none"
