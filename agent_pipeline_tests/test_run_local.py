"""``make run``'s launcher: what it starts, and that a busy port stops it before anything starts."""

from __future__ import annotations

import socket

from agent_pipeline import run_local


def test_busy_port_is_one_error_line_and_exit_2(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert run_local.main(["--port", "1", "--mlflow-port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 127.0.0.1:")


def test_mlflow_server_on_the_state_folders_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cmd = run_local.mlflow_command(tmp_path, "127.0.0.1", 5001)
    assert cmd[1:3] == ["server", "--backend-store-uri"]
    assert cmd[3] == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert cmd[cmd.index("--default-artifact-root") + 1] == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert run_local.mlflow_env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_remote_tracking_server_is_not_started_here(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert run_local.mlflow_command(tmp_path, "127.0.0.1", 5001) is None
