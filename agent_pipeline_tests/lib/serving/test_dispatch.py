"""``POST /route`` with agent endpoints configured: the dispatcher's result comes back with the
decision, against real loopback stand-in agents (one healthy, one that refuses connections)."""

from __future__ import annotations

import shutil
import socket

import pytest
import yaml
from starlette.testclient import TestClient

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.serving.app import ServeSettings, create_app
from agent_pipeline.lib.serving.champion import ChampionSource, ChampionWatcher
from agent_pipeline.lib.serving.stand_ins import StandInAgents


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the socket is: connections are refused


@pytest.fixture
def client(served_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(served_home, home)
    with StandInAgents() as agents:
        raw = yaml.safe_load(settings.DEFAULT_AGENTS_CONFIG.read_text())
        raw["agents"]["banking"].update(endpoint=agents.url("banking"), timeout_ms=450)
        raw["agents"]["travel"].update(endpoint=f"http://127.0.0.1:{closed_port()}/agents/travel", timeout_ms=450)
        raw["fallback"] = {"endpoint": agents.url("general"), "timeout_ms": 500}
        config = tmp_path / "agents.yaml"
        config.write_text(yaml.safe_dump(raw))
        uri = f"sqlite:///{settings.mlflow_dir(home) / 'mlflow.db'}"
        cfg = ServeSettings(home=home, tracking_uri=uri, instance="test", agents_config=config)
        watcher = ChampionWatcher(ChampionSource(home, cfg.model_name, uri))
        watcher.refresh()
        with TestClient(create_app(cfg, watcher=watcher, start_background=False)) as c:
            yield c


def test_the_chosen_agent_answers_and_a_broken_one_falls_back(client):
    ok = client.post("/route", json={"text": "transfer 100 dollars from checking to savings"}).json()
    assert ok["route"] == "banking"
    assert ok["dispatch"]["agent"] == "banking" and ok["dispatch"]["fault"] == ""
    assert ok["dispatch"]["answer"].startswith("banking handled: transfer 100 dollars")
    assert ok["dispatch"]["request_id"] == ok["request_id"]
    broken = client.post("/route", json={"text": "book me a flight to paris next tuesday"}).json()
    assert broken["route"] == "travel"
    assert (broken["dispatch"]["agent"], broken["dispatch"]["fault"]) == ("general", "connection")
    assert broken["dispatch"]["fell_back"] and broken["dispatch"]["answer"].startswith("general handled")
    metrics = client.get("/metrics").text
    assert 'agent_router_dispatch_total{agent="banking",fault="none"} 1.0' in metrics
    assert 'agent_router_dispatch_total{agent="general",fault="connection"} 1.0' in metrics
