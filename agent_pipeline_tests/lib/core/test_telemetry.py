"""Telemetry: pipeline-step spans and routing spans (SDK in-memory exporter), OTLP/HTTP export to a
real receiver on loopback, the file exporter, off by default, JSON log lines with the run id and
model version, and the MLflow run <-> Dagster run links."""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_pipeline.defs.datasets.assets import validation_examples
from agent_pipeline.defs.resources import RouterFiles
from agent_pipeline.lib.core import telemetry
from agent_pipeline.lib.registry.models import ModelRegistry

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "AGENT_PIPELINE_OTEL_FILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)
    # Another test in this worker may have run a server, which sets process-wide log defaults.
    telemetry.clear_log_defaults()
    yield
    telemetry.shutdown_tracing()
    telemetry.clear_log_defaults()


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    telemetry.setup_tracing("test-pipeline", exporter=exporter)
    return exporter


def test_tracing_is_off_without_configuration():
    assert telemetry.tracing_mode() == "off"
    assert telemetry.setup_tracing() is None and not telemetry.enabled()
    assert isinstance(telemetry.tracer(), trace.NoOpTracer)


def test_step_span_and_json_logs_carry_run_id_and_model_version(spans):
    stream = io.StringIO()
    telemetry.configure_json_logging(("agent_pipeline.test_telemetry",), stream=stream)
    log = logging.getLogger("agent_pipeline.test_telemetry")
    log.info("before any step")
    with telemetry.step_span("router_candidate", "run-123") as span:
        log.info("training")
        telemetry.set_step_model_version(span, "7")
        log.info("registered", extra={"rows": 5})
    log.info("after the step")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["before any step", "training", "registered", "after the step"]
    assert all({"time", "level", "logger", "model_version", "run_id"} <= set(line) for line in lines)
    assert (lines[0]["run_id"], lines[0]["model_version"]) == (None, None)
    assert (lines[1]["run_id"], lines[1]["model_version"]) == ("run-123", None)
    assert (lines[2]["run_id"], lines[2]["model_version"], lines[2]["rows"]) == ("run-123", "7", 5)
    assert lines[3]["run_id"] is None
    (finished,) = spans.get_finished_spans()
    assert lines[1]["trace_id"] == f"{finished.context.trace_id:032x}"
    assert finished.name == "pipeline.step router_candidate"
    assert finished.attributes["dagster.asset_key"] == "router_candidate"
    assert finished.attributes["dagster.run_id"] == "run-123"
    assert finished.attributes["dagster.run_url"].endswith("/runs/run-123")
    assert finished.attributes["agent_router.model_version"] == "7"


def test_a_failing_step_records_the_error(spans):
    with pytest.raises(ValueError), telemetry.step_span("drift_report", "run-9"):
        raise ValueError("no reference")
    (finished,) = spans.get_finished_spans()
    assert finished.status.status_code == trace.StatusCode.ERROR
    assert finished.events[0].name == "exception"


def test_materialized_assets_get_a_step_span_with_the_dagster_run_id(spans):
    with dg.instance_for_test() as instance:
        result = dg.materialize([validation_examples], instance=instance, resources={"files": RouterFiles()})
    assert result.success
    (step,) = [s for s in spans.get_finished_spans() if s.name.startswith("pipeline.step")]
    assert step.name == "pipeline.step validation_examples"
    assert step.attributes["dagster.run_id"] == result.run_id


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_spans_are_exported_over_otlp_http_when_the_endpoint_is_set(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received.clear()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "router-under-test")
        assert telemetry.tracing_mode() == "otlp"
        telemetry.setup_tracing(telemetry.SERVE_SERVICE)
        with telemetry.tracer().start_as_current_span("agent_router.route") as span:
            span.set_attribute("agent_router.route", "banking")
        telemetry.shutdown_tracing()  # flushes the batch processor
    finally:
        server.shutdown()
    assert _Receiver.received, "no OTLP request arrived"
    path, content_type, body = _Receiver.received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    assert b"agent_router.route" in body and b"router-under-test" in body and b"banking" in body


def test_spans_go_to_a_json_lines_file_when_configured(monkeypatch, tmp_path):
    path = tmp_path / "spans.jsonl"
    monkeypatch.setenv("AGENT_PIPELINE_OTEL_FILE", str(path))
    telemetry.setup_tracing()
    with telemetry.step_span("inference_log", "run-5", partition_key="2026-12-01"):
        pass
    telemetry.shutdown_tracing()
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["name"] == "pipeline.step inference_log"
    assert record["attributes"]["dagster.partition_key"] == "2026-12-01"
    assert record["resource"]["attributes"]["service.name"] == telemetry.PIPELINE_SERVICE


def test_mlflow_runs_link_back_to_their_dagster_run(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_PIPELINE_DAGSTER_UI_URL", "http://dagster.example:3000/")
    store = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", "agent-router", home=tmp_path)
    run_id = store.log_evaluation(
        "1", metrics={"route_accuracy": 0.9}, params={}, tags={"dagster_run_id": "abc-123"}, files={}
    )
    tags = store.client.get_run(run_id).data.tags
    assert tags["dagster_run_id"] == "abc-123"
    assert tags["dagster_run_url"] == "http://dagster.example:3000/runs/abc-123"
    assert f"/runs/{run_id}?" in store.run_url(run_id)  # ?workflowType=...: the model-training view
