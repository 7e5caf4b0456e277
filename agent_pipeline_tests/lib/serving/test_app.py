"""The serving app in process (Starlette's TestClient): answers, errors, readiness, metrics,
landing files that the ingestion and the ``inference_log`` asset accept, and spans.

The champion is the real v1 of ``served_home`` (a trained router in a SQLite registry); the
watcher and the landing writer are the real ones, driven by hand (``refresh``, ``flush``)
instead of their threads, so every assertion is deterministic.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from agent_pipeline.defs.monitoring.assets import inference_log
from agent_pipeline.defs.resources import IngestSettings, RouterFiles, StateFolder
from agent_pipeline.lib.core import settings, telemetry
from agent_pipeline.lib.monitoring import ingest
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.promotion import change_champion, rollback
from agent_pipeline.lib.router.agents import load_agent_registry
from agent_pipeline.lib.serving import bundle as serving_bundle
from agent_pipeline.lib.serving.app import ServeSettings, create_app
from agent_pipeline.lib.serving.champion import ChampionSource, ChampionWatcher

TEXTS = [
    "Generate contract summary",
    "What is the weather today?",
    "transfer 100 dollars from checking to savings",
    "book me a flight to paris next tuesday",
    "how do I reset my car's oil light",
    "qwertyuiop asdfgh",
]


def sqlite_uri(home: Path) -> str:
    return f"sqlite:///{settings.mlflow_dir(home) / 'mlflow.db'}"


def make_app(home: Path, **overrides):
    """The app with a watcher and writer built from ``home``, champion loaded, threads not started."""
    # Explicit: MLflow's set_tracking_uri exports MLFLOW_TRACKING_URI, which would point every later
    # registry of this process at the first state folder.
    cfg = ServeSettings(home=home, instance="test", tracking_uri=sqlite_uri(home), **overrides)
    source = ChampionSource(home, cfg.model_name, cfg.tracking_uri)
    watcher = ChampionWatcher(source)
    watcher.refresh()
    app = create_app(cfg, watcher=watcher, start_background=False)
    return app


@pytest.fixture
def home(served_home, tmp_path) -> Path:
    """A private copy of the served state folder (the registry's artifacts stay where they are)."""
    copy = tmp_path / "home"
    shutil.copytree(served_home, copy)
    return copy


@pytest.fixture
def client(home):
    app = make_app(home)
    with TestClient(app) as c:
        yield c


def test_route_answers_like_the_champion_bundle(client, home):
    router = serving_bundle.load(serving_bundle.bundle_path(home))
    for text in TEXTS:
        resp = client.post("/route", json={"text": text})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        expected = router.route(text)
        assert body["route"] == expected["route"]
        assert body["agent"] == expected["agent"]
        assert body["label"] == expected["decided_label"]
        assert body["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)
        assert body["fallback"] == expected["fallback"]
        assert body["model_version"] == "1" and body["model_name"] == "agent-router"
        assert resp.headers["x-request-id"] == body["request_id"]
    assert client.post("/route", json={"text": TEXTS[0]}).json()["rule"] == "contract_summary"
    weather = client.post("/route", json={"text": TEXTS[1]}).json()
    assert weather["route"] == "fallback" and weather["fallback_reason"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"not json", {}, 400, "body is not JSON"),
        (b"[1, 2]", {}, 400, "not an object"),
        (b"{}", {}, 422, '"text" is missing'),
        (b'{"text": 5}', {}, 422, "not a string"),
        (b'{"text": "   "}', {}, 422, "blank"),
        (json.dumps({"text": "a" * 4001}).encode(), {}, 413, "limit is 4000"),
        (b'{"text": "' + b"a" * 70_000 + b'"}', {}, 413, "body"),
        (b'{"text": "\xff\xfe"}', {}, 415, "not UTF-8"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_clear_message(client, body, headers, status, message):
    resp = client.post("/route", content=body, headers={"content-type": "application/json", **headers})
    assert resp.status_code == status
    assert message in resp.json()["error"]
    assert 'agent_router_errors_total{kind="' in client.get("/metrics").text


def test_healthz_is_ready_only_with_a_champion(client, tmp_path):
    ready = client.get("/healthz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "1"
    assert ready.json()["source"] == "bundle"
    empty = make_app(tmp_path / "empty")
    with TestClient(empty) as c:
        resp = c.get("/healthz")
        assert resp.status_code == 503 and "no alias 'champion'" in resp.json()["reason"]
        routed = c.post("/route", json={"text": "hello"})
        assert routed.status_code == 503 and routed.headers["retry-after"] == "1"


def test_metrics_count_routes_fallback_reasons_latency_and_model(client):
    for text in TEXTS:
        client.post("/route", json={"text": text})
    client.post("/route", content=b"nope")
    text = client.get("/metrics").text
    assert 'agent_router_requests_total{fallback_reason="none",model_version="1",route="contracts"} 1.0' in text
    assert 'fallback_reason="out_of_scope"' in text or 'fallback_reason="low_confidence"' in text
    assert f"agent_router_decision_seconds_count {float(len(TEXTS))}" in text
    assert 'agent_router_model_info{model_name="agent-router",source="bundle",version="1"} 1.0' in text
    assert 'agent_router_errors_total{kind="bad_json",status="400"} 1.0' in text
    assert "agent_router_overload_rejections_total 0.0" in text


def test_the_champion_switch_is_followed_and_measured(client, home):
    assert client.post("/route", json={"text": TEXTS[2]}).json()["model_version"] == "1"
    _store = ModelRegistry(sqlite_uri(home), "agent-router", home=home)
    change_champion(_store, _store.home, action="promote", version="2", details={"reason": "test"})
    assert client.app.state.watcher.refresh()
    assert client.post("/route", json={"text": TEXTS[2]}).json()["model_version"] == "2"
    text = client.get("/metrics").text
    assert 'agent_router_model_info{model_name="agent-router",source="bundle",version="2"} 1.0' in text
    assert 'version="1"} 1.0' not in text.split("agent_router_model_info")[-1]
    assert "agent_router_champion_switches_total 1.0" in text
    rollback(_store, _store.home, reason="test")
    assert client.app.state.watcher.refresh()
    assert client.get("/healthz").json()["model_version"] == "1"


def test_landing_files_are_batched_atomic_redacted_and_ingested(client, home):
    for text in TEXTS:
        assert client.post("/route", json={"text": text}).status_code == 200
    client.post("/route", content=b"nope")  # refused requests are not production records
    writer = client.app.state.writer
    assert writer.pending == len(TEXTS)
    files = writer.flush()
    assert len(files) == 1 and writer.pending == 0
    landing = settings.landing_dir(home)
    assert [p.name for p in landing.iterdir()] == [files[0].name]  # no temporary file left behind
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert files[0].name.startswith(f"{day}-serve-test-")
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [list(r) for r in rows] == [list(RECORD_COLUMNS)] * len(TEXTS)
    assert [r["text"] for r in rows] == TEXTS  # nothing personal in these: stored as sent
    assert {r["model_version"] for r in rows} == {"1"}
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    result = ingest.ingest_partition(
        landing,
        day,
        known_labels=agents.known_labels,
        known_routes=agents.routes,
        out_dir=home / "log",
        quarantine_dir=home / "q",
    )
    assert (result.n_valid, result.n_quarantined) == (len(TEXTS), 0)
    assert writer.flush() == []  # nothing buffered: no empty file


def test_served_traffic_is_ingested_by_the_inference_log_asset(client, home):
    for text in TEXTS * 3:
        client.post("/route", json={"text": text})
    client.app.state.writer.flush()
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [inference_log],
            partition_key=day,
            instance=instance,
            resources={
                "files": RouterFiles(),
                "state": StateFolder(home=str(home)),
                "ingest_settings": IngestSettings(),
            },
        )
    assert result.success
    md = result.asset_materializations_for_node("inference_log")[0].metadata
    assert md["n_valid"].value == len(TEXTS) * 3 and md["n_quarantined"].value == 0
    checks = result.get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks} == {
        "traffic_received": True,
        "landing_files_parsed": True,
        "landing_files_named": True,
    }


def test_each_decision_is_a_span_with_its_attributes(home):
    exporter = InMemorySpanExporter()
    telemetry.setup_tracing("test-serve", exporter=exporter)
    try:
        with TestClient(make_app(home)) as c:
            c.post("/route", json={"text": "Generate contract summary"})
            c.post("/route", json={"text": "What is the weather today?"})
    finally:
        telemetry.shutdown_tracing()
    spans = [s for s in exporter.get_finished_spans() if s.name == "agent_router.route"]
    assert len(spans) == 2
    first, second = (dict(s.attributes) for s in spans)
    assert first["agent_router.route"] == "contracts" and first["agent_router.model_version"] == "1"
    assert first["agent_router.fallback_reason"] == "none" and first["agent_router.confidence"] == 1.0
    assert second["agent_router.route"] == "fallback" and second["agent_router.fallback_reason"] != "none"
    assert second["agent_router.agent"] and second["agent_router.latency_ms"] > 0
    assert spans[0].resource.attributes["service.name"] == "test-serve"


def test_personal_data_is_redacted_before_the_landing_file(client, home):
    sent = [
        "send my statement to jane.doe@example.com please",
        "call me back at +1 415 555 0132 about my card 4111 1111 1111 1111",
        "transfer 250 dollars for order 88213 on 2026-11-30",
    ]
    for text in sent:
        assert client.post("/route", json={"text": text}).status_code == 200
    (path,) = client.app.state.writer.flush()
    raw = path.read_text()
    for secret in ("jane.doe@example.com", "415 555 0132", "4111 1111 1111 1111"):
        assert secret not in raw
    texts = [json.loads(line)["text"] for line in raw.splitlines()]
    assert texts[0] == "send my statement to [EMAIL] please"
    assert "[PHONE]" in texts[1] and "[CARD]" in texts[1]
    assert texts[2] == sent[2]  # amounts, order numbers and dates stay
