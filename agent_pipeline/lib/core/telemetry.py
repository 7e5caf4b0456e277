"""Traces and logs: OpenTelemetry spans for routing decisions and pipeline steps, JSON-lines logs.

Tracing follows the OpenTelemetry environment conventions and is off unless asked for:

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set: spans are
  exported over OTLP/HTTP by a batch processor (the exporter reads its own ``OTEL_EXPORTER_OTLP_*``
  variables: headers, timeout, compression);
* otherwise ``AGENT_PIPELINE_OTEL_FILE`` set: spans are appended to that file as JSON lines;
* otherwise, or with ``OTEL_SDK_DISABLED=true``: off (the API's no-op tracer, nothing recorded).

``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the service as usual; without them
the caller's default (``agent-pipeline-serve``, ``agent-pipeline``) is used.

Span attributes are namespaced: ``agent_router.*`` for a decision (route, agent, confidence,
fallback reason, model version, latency) and ``dagster.*`` for a pipeline step (asset key,
run id), as the semantic conventions ask for attributes that are not in them.

Logs: ``configure_json_logging`` puts one JSON object per line on stderr for a logger tree,
each with ``model_version`` and ``run_id`` (from ``log_context``/``set_log_defaults``; ``null``
when unknown, never missing) and, inside a span, its trace and span ids.

No Dagster import: assets call ``step_span`` (see ``defs``), the server calls ``routing_span``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace

TRACER_NAME = "agent_pipeline"
PIPELINE_SERVICE = "agent-pipeline"
SERVE_SERVICE = "agent-pipeline-serve"
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"

_lock = threading.Lock()
_provider = None  # the SDK TracerProvider in use, or None (off)
_configured = False

# What every log line carries. Context variables win over the process defaults, so a Dagster
# step (run id) or a request (model version) can say more than the process.
_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent_pipeline_run_id", default=None)
_model_version: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agent_pipeline_model_version", default=None
)
_defaults: dict[str, str | None] = {"run_id": None, "model_version": None}


# -- tracing -----------------------------------------------------------------------------------
class JsonLinesSpanExporter:
    """Appends each finished span as one JSON object per line to a file (``AGENT_PIPELINE_OTEL_FILE``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n" for span in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _resource(default_service: str):
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: default_service}
    return Resource.create(attributes)


def tracing_mode() -> str:
    """``otlp``, ``file`` or ``off``: what ``setup_tracing`` does with this environment."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "off"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    if os.environ.get("AGENT_PIPELINE_OTEL_FILE"):
        return "file"
    return "off"


def setup_tracing(default_service: str = PIPELINE_SERVICE, *, exporter=None):
    """Install this process's tracer provider from the environment (see the module docstring).

    ``exporter`` (e.g. the SDK's ``InMemorySpanExporter``) replaces the environment's choice and
    exports each span synchronously: for tests. Returns the provider, or None when tracing is off.
    Calling it again replaces the provider (the previous one is flushed and shut down).
    """
    global _provider, _configured
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    with _lock:
        old = _provider
        mode = "test" if exporter is not None else tracing_mode()
        if mode == "off":
            provider = None
        else:
            provider = TracerProvider(resource=_resource(default_service))
            if exporter is not None:
                provider.add_span_processor(SimpleSpanProcessor(exporter))
            elif mode == "otlp":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            else:
                provider.add_span_processor(
                    BatchSpanProcessor(JsonLinesSpanExporter(os.environ["AGENT_PIPELINE_OTEL_FILE"]))
                )
        _provider, _configured = provider, True
    if old is not None and old is not provider:
        old.shutdown()
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the exporter (end of a server or a test); tracing is off afterwards."""
    global _provider, _configured
    with _lock:
        old, _provider, _configured = _provider, None, False
    if old is not None:
        old.shutdown()


def tracer(default_service: str = PIPELINE_SERVICE) -> trace.Tracer:
    """The tracer of this process (set up from the environment on first use; no-op when off)."""
    if not _configured:
        setup_tracing(default_service)
    provider = _provider
    return provider.get_tracer(TRACER_NAME) if provider is not None else trace.NoOpTracer()


def enabled() -> bool:
    return _provider is not None


def decision_attributes(decision: Mapping[str, Any], model_version: str, latency_ms: float) -> dict[str, Any]:
    """The ``agent_router.*`` span attributes of one routing decision."""
    return {
        "agent_router.route": str(decision["route"]),
        "agent_router.agent": str(decision["agent"]),
        "agent_router.label": str(decision["decided_label"]),
        "agent_router.confidence": float(decision["confidence"]),
        "agent_router.fallback": bool(decision["fallback"]),
        "agent_router.fallback_reason": str(decision["fallback_reason"] or "none"),
        "agent_router.rule": str(decision["rule"] or ""),
        "agent_router.model_version": str(model_version),
        "agent_router.latency_ms": float(latency_ms),
    }


@contextmanager
def step_span(
    asset_key: str, run_id: str, model_version: str | None = None, partition_key: str | None = None
) -> Iterator[Any]:
    """One span per pipeline step (``dagster.asset_key``, ``dagster.run_id``, model version), and the
    same run id and model version on every log line written inside it.

    Yields the span: a step that learns its model version later sets
    ``agent_router.model_version`` on it (``set_step_model_version``). Exceptions are recorded on
    the span and re-raised.
    """
    ensure_json_logging()
    tokens = [_run_id.set(run_id), _model_version.set(model_version)]
    attrs = {"dagster.asset_key": asset_key, "dagster.run_id": run_id, "dagster.run_url": dagster_run_url(run_id)}
    if model_version:
        attrs["agent_router.model_version"] = str(model_version)
    if partition_key:
        attrs["dagster.partition_key"] = partition_key
    try:
        with tracer().start_as_current_span(f"pipeline.step {asset_key}", attributes=attrs) as span:
            yield span
    finally:
        for var, token in zip((_run_id, _model_version), tokens):
            var.reset(token)


def set_step_model_version(span, model_version: str | None) -> None:
    """Name the model version a step worked on, on its span and on its later log lines."""
    if model_version is None:
        return
    span.set_attribute("agent_router.model_version", str(model_version))
    _model_version.set(str(model_version))


def dagster_run_url(run_id: str) -> str:
    """The Dagster UI page of a run (``AGENT_PIPELINE_DAGSTER_UI_URL``, default the local ``make run``)."""
    base = (os.environ.get("AGENT_PIPELINE_DAGSTER_UI_URL") or DEFAULT_DAGSTER_UI_URL).rstrip("/")
    return f"{base}/runs/{run_id}"


def with_dagster_links(tags: Mapping[str, str]) -> dict[str, str]:
    """MLflow run tags plus ``dagster_run_url`` when they name a ``dagster_run_id``: the MLflow run
    links back to the Dagster run that made it (the asset metadata links the other way)."""
    out = dict(tags)
    run_id = out.get("dagster_run_id")
    if run_id and "dagster_run_url" not in out:
        out["dagster_run_url"] = dagster_run_url(run_id)
    return out


# -- logs --------------------------------------------------------------------------------------
def set_log_defaults(*, run_id: str | None = None, model_version: str | None = None) -> None:
    """Process-wide values for log lines that have no context of their own (e.g. the server's)."""
    if run_id is not None:
        _defaults["run_id"] = run_id
    if model_version is not None:
        _defaults["model_version"] = str(model_version)


def clear_log_defaults() -> None:
    """Forget the process-wide values (a server that stops, so later log lines do not carry them)."""
    _defaults.update(run_id=None, model_version=None)


@contextmanager
def log_context(*, run_id: str | None = None, model_version: str | None = None) -> Iterator[None]:
    """Log lines inside carry this run id / model version (context-local: threads and tasks)."""
    tokens = []
    if run_id is not None:
        tokens.append((_run_id, _run_id.set(run_id)))
    if model_version is not None:
        tokens.append((_model_version, _model_version.set(str(model_version))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_log_context() -> dict[str, str | None]:
    return {
        "model_version": _model_version.get() or _defaults["model_version"],
        "run_id": _run_id.get() or _defaults["run_id"],
    }


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, model_version, run_id (always
    present, null when unknown), trace/span ids inside a span, the exception, and ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current_log_context(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            out["trace_id"] = f"{ctx.trace_id:032x}"
            out["span_id"] = f"{ctx.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


_HANDLER_FLAG = "_agent_pipeline_json"
_json_logging_done = False


def ensure_json_logging() -> None:
    """``configure_json_logging()`` for the ``agent_pipeline`` logger, once per process."""
    global _json_logging_done
    if not _json_logging_done:
        configure_json_logging()
        _json_logging_done = True


def configure_json_logging(
    loggers: tuple[str, ...] = ("agent_pipeline",), level: int | str = logging.INFO, stream=None
) -> logging.Handler:
    """Send these loggers' records to ``stream`` (stderr) as JSON lines; idempotent per logger.

    The loggers stop propagating to the root (so a line is not printed twice in another format).
    Returns the handler.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_FLAG, True)
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return handler
