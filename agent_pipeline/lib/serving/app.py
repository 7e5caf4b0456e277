"""``agent-pipeline serve``: the champion behind HTTP (Starlette on uvicorn).

Endpoints:

* ``POST /route`` ``{"text": "..."}`` -> the decision (the fields of ``agent-pipeline route
  --json``), ``model_name``, ``request_id``, ``latency_ms`` and, when agent endpoints are
  configured, the dispatcher's result under ``dispatch``. Errors are JSON ``{"error": ...}``:
  400 (body not JSON, not an object), 413 (body or text over the limit), 415 (not UTF-8),
  422 (``text`` missing, not a string, or blank), 503 + ``Retry-After`` (overloaded, or no
  champion loaded yet).
* ``GET /healthz``: 200 with the champion's version when one is loaded (ready), else 503.
* ``GET /metrics``: Prometheus text (requests by route and fallback reason, latency
  histograms, the model version, errors, overload rejections, landing-file counts).

Every answered request becomes a production record in the landing folder
(``lib/serving/landing.py``: batched, atomic, redacted), so the monitoring loop runs on served
traffic. The champion follows the registry alias (``lib/serving/champion.py``) without dropping
a request. A serving-bundle champion routes on the event loop (a fraction of a millisecond);
a champion loaded from the registry (other tiers) and agent calls run in a small thread pool.
At most ``max_in_flight`` requests are admitted (queued or being routed) and the rest get 503
with ``Retry-After`` at once: overload sheds load instead of growing a queue without bound.
No Dagster import here.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent_pipeline.lib.core import settings as core_settings
from agent_pipeline.lib.core import telemetry
from agent_pipeline.lib.data import redaction
from agent_pipeline.lib.serving.champion import Champion, ChampionSource, ChampionWatcher
from agent_pipeline.lib.serving.decisions import decision_fields, production_record
from agent_pipeline.lib.serving.landing import LandingWriter, default_instance

log = logging.getLogger(__name__)

ROUTE_PATH = "/route"
# Decision latencies: 50 µs (the fast tier's serving bundle) to 1 s.
DECISION_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
REQUEST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class ServeSettings:
    """What the server needs; ``from_env`` reads ``AGENT_PIPELINE_SERVE_*`` (README, Serving)."""

    home: Path
    model_name: str = core_settings.DEFAULT_MODEL_NAME
    tracking_uri: str = ""
    max_text_chars: int = 4_000
    max_body_bytes: int = 65_536
    max_in_flight: int = 64
    workers: int = 4
    retry_after_seconds: int = 1
    poll_seconds: float = 5.0
    bundle_poll_seconds: float = 0.5
    flush_seconds: float = 30.0
    flush_records: int = 20_000
    instance: str = ""
    agents_config: Path = core_settings.DEFAULT_AGENTS_CONFIG

    _ENV = {
        "max_text_chars": "AGENT_PIPELINE_SERVE_MAX_TEXT_CHARS",
        "max_body_bytes": "AGENT_PIPELINE_SERVE_MAX_BODY_BYTES",
        "max_in_flight": "AGENT_PIPELINE_SERVE_MAX_IN_FLIGHT",
        "workers": "AGENT_PIPELINE_SERVE_WORKERS",
        "retry_after_seconds": "AGENT_PIPELINE_SERVE_RETRY_AFTER",
        "poll_seconds": "AGENT_PIPELINE_SERVE_POLL_SECONDS",
        "flush_seconds": "AGENT_PIPELINE_SERVE_FLUSH_SECONDS",
        "flush_records": "AGENT_PIPELINE_SERVE_FLUSH_RECORDS",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> ServeSettings:
        """Settings from ``env`` (``os.environ``, passed in by the CLI: state folder, model name,
        tracking URI, limits); a malformed value is a ``ValueError`` naming the variable."""
        base = core_settings.Settings.from_env(env)
        values: dict[str, Any] = {
            "home": base.home,
            "model_name": base.model_name,
            "tracking_uri": base.tracking_uri,
            "agents_config": base.agents_config,
        }
        types = {f.name: f.type for f in fields(cls)}
        for name, var in cls._ENV.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            cast = float if types[name] in (float, "float") else int
            try:
                value = cast(raw)
            except ValueError as exc:
                raise ValueError(f"{var}={raw!r} is not a {cast.__name__}") from exc
            if value <= 0:
                raise ValueError(f"{var}={raw!r} must be positive")
            values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Metrics:
    """The server's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "agent_router_requests",
            "Routed requests by route, fallback reason and model version.",
            ["route", "fallback_reason", "model_version"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "agent_router_decision_seconds",
            "Time of the routing decision itself (the champion's route()).",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.request_latency = Histogram(
            "agent_router_request_seconds",
            "Time from admission to the answer of POST /route (queueing for a worker included).",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "agent_router_errors",
            "Requests answered with an error, by kind and HTTP status.",
            ["kind", "status"],
            registry=r,
        )
        self.rejected = Counter(
            "agent_router_overload_rejections",
            "Requests refused with 503 because max_in_flight was reached.",
            registry=r,
        )
        self.in_flight = Gauge("agent_router_in_flight", "Requests admitted and not yet answered.", registry=r)
        self.model_info = Gauge(
            "agent_router_model_info",
            "The champion being served (value 1): model name, version and where it was loaded from.",
            ["model_name", "version", "source"],
            registry=r,
        )
        self.dispatched = Counter(
            "agent_router_dispatch",
            "Agent calls by the agent that answered and the fault that forced a fallback ('none': no fault).",
            ["agent", "fault"],
            registry=r,
        )
        self.switches = Counter("agent_router_champion_switches", "Champion changes while serving.", registry=r)
        self.landing_records = Counter(
            "agent_router_landing_records", "Production records written to landing files.", registry=r
        )
        self.landing_files = Counter("agent_router_landing_files", "Landing files written.", registry=r)
        self.landing_pending = Gauge(
            "agent_router_landing_pending", "Production records waiting for the next landing flush.", registry=r
        )
        self.landing_dropped = Gauge(
            "agent_router_landing_dropped", "Production records dropped after failed writes (buffer limit).", registry=r
        )

    def champion_changed(self, old: Champion | None, new: Champion) -> None:
        if old is not None:
            try:
                self.model_info.remove(old.model_name, old.version, old.source)
            except KeyError:
                pass
            if old.version != new.version:
                self.switches.inc()
        self.model_info.labels(new.model_name, new.version, new.source).set(1)


def resolve_dispatcher(agents_config: Path | str):
    """The dispatcher (``lib/serving/dispatcher.py``) when ``agents_config`` declares agent
    endpoints, else None (the server answers with the decision only). A half-configured file
    (agents with endpoints but none for the fallback agent) is a ``ConfigError`` at start."""
    try:
        from agent_pipeline.lib.serving import dispatcher as dispatching
    except ImportError:
        return None
    from agent_pipeline.lib.router.agents import load_yaml

    endpoints, fallback = dispatching.endpoints_from_config(
        load_yaml(agents_config, "agents config"), str(agents_config)
    )
    if not endpoints:
        return None
    return dispatching.Dispatcher(endpoints, fallback)


def _error(status: int, kind: str, message: str, metrics: Metrics, headers: dict[str, str] | None = None) -> Response:
    metrics.errors.labels(kind, str(status)).inc()
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class OverloadGuard:
    """ASGI middleware: at most ``limit`` requests to ``/route`` admitted at a time; the rest get
    503 with ``Retry-After`` immediately (no routing, no queueing)."""

    def __init__(self, app, *, limit: int, retry_after: int, metrics: Metrics) -> None:
        self.app, self.limit, self.retry_after, self.metrics = app, limit, retry_after, metrics
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE_PATH:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.metrics.rejected.inc()
            response = _error(
                503,
                "overload",
                f"overloaded: {self.in_flight} requests in flight (limit {self.limit}, "
                "AGENT_PIPELINE_SERVE_MAX_IN_FLIGHT); retry later",
                self.metrics,
                headers={"Retry-After": str(self.retry_after)},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()


def create_app(
    settings: ServeSettings,
    *,
    watcher: ChampionWatcher | None = None,
    writer: LandingWriter | None = None,
    redact: Callable[[str], str] | None = None,
    dispatcher=None,
    start_background: bool = True,
) -> Starlette:
    """The ASGI app. Without ``watcher``/``writer``, they are built from ``settings``; the lifespan
    loads the champion, starts the watcher and the landing writer, and flushes at shutdown."""
    metrics = Metrics()
    instance = settings.instance or default_instance()
    if watcher is None:
        source = ChampionSource(settings.home, settings.model_name, settings.tracking_uri or None)
        watcher = ChampionWatcher(
            source, poll_seconds=settings.poll_seconds, bundle_poll_seconds=settings.bundle_poll_seconds
        )
    previous_on_swap = watcher.on_swap

    def on_swap(old: Champion | None, new: Champion) -> None:
        metrics.champion_changed(old, new)
        telemetry.set_log_defaults(model_version=new.version)
        if previous_on_swap is not None:
            previous_on_swap(old, new)

    watcher.on_swap = on_swap
    if watcher.current is not None:
        on_swap(None, watcher.current)
    if writer is None:

        def on_flush(records: int, files: int) -> None:
            metrics.landing_records.inc(records)
            metrics.landing_files.inc(files)

        writer = LandingWriter(
            core_settings.landing_dir(settings.home),
            instance=instance,
            redact=redact or redaction.redact,
            flush_seconds=settings.flush_seconds,
            max_batch=settings.flush_records,
            max_buffer=10 * settings.flush_records,
            on_flush=on_flush,
        )
    if dispatcher is None:
        dispatcher = resolve_dispatcher(settings.agents_config)
    # Agent calls block a worker for up to the dispatcher's budget: more workers when dispatching.
    limiter = anyio.CapacityLimiter(settings.workers if dispatcher is None else max(settings.workers, 32))
    tracer = telemetry.tracer(telemetry.SERVE_SERVICE)

    def decide(champion: Champion, text: str, request_id: str) -> tuple[dict, float, dict | None]:
        with tracer.start_as_current_span("agent_router.route") as span:
            t0 = time.perf_counter()
            decision = champion.route(text)
            latency_ms = (time.perf_counter() - t0) * 1000.0
            if span.is_recording():
                span.set_attributes(telemetry.decision_attributes(decision, champion.version, latency_ms))
            result = None
            if dispatcher is not None:
                outcome = dispatcher.dispatch(decision, text, request_id=request_id)
                metrics.dispatched.labels(outcome.agent or "none", outcome.fault or "none").inc()
                result = outcome.to_dict()
                if span.is_recording():
                    span.set_attributes(
                        {
                            "agent_router.dispatch.agent": outcome.agent,
                            "agent_router.dispatch.fault": outcome.fault or "none",
                        }
                    )
        return decision, latency_ms, result

    async def route(request: Request) -> Response:
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
            return _error(
                413, "body_too_large", f"body is {declared} bytes; the limit is {settings.max_body_bytes}", metrics
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_body_bytes:
                return _error(
                    413, "body_too_large", f"body exceeds the limit of {settings.max_body_bytes} bytes", metrics
                )
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(415, "bad_encoding", "body is not UTF-8 JSON", metrics)
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError as exc:
            return _error(400, "bad_json", f'body is not JSON ({exc.msg}); send {{"text": "..."}}', metrics)
        if not isinstance(payload, dict):
            return _error(
                400,
                "bad_json",
                f'body is a JSON {type(payload).__name__}, not an object; send {{"text": "..."}}',
                metrics,
            )
        if "text" not in payload:
            return _error(422, "no_text", 'field "text" is missing; send {"text": "..."}', metrics)
        text = payload["text"]
        if not isinstance(text, str):
            return _error(422, "no_text", f'field "text" is a {type(text).__name__}, not a string', metrics)
        if not text.strip():
            return _error(422, "no_text", 'field "text" is blank', metrics)
        if len(text) > settings.max_text_chars:
            return _error(
                413,
                "text_too_long",
                f'field "text" has {len(text)} characters; the limit is {settings.max_text_chars} '
                "(AGENT_PIPELINE_SERVE_MAX_TEXT_CHARS)",
                metrics,
            )
        champion = watcher.current
        if champion is None:
            return _error(
                503,
                "no_champion",
                f"no champion loaded yet ({watcher.last_error or 'loading'})",
                metrics,
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        received = datetime.now(UTC)
        request_id = uuid.uuid4().hex
        try:
            if dispatcher is None and champion.source == "bundle":
                # A bundle decision takes ~0.1-0.5 ms of pure Python: cheaper on the event loop than a
                # thread hop (and no GIL hand-offs between threads). The checkpoint first lets every
                # request already read from the sockets be admitted, so ``in_flight`` is the real
                # queue length and overload is shed at the limit.
                await anyio.lowlevel.checkpoint()
                decision, latency_ms, dispatched = decide(champion, text, request_id)
            else:  # a registry-loaded tier (ms per decision) or agent calls (blocking I/O): worker threads
                decision, latency_ms, dispatched = await anyio.to_thread.run_sync(
                    decide, champion, text, request_id, limiter=limiter
                )
        except Exception:
            log.exception("routing failed", extra={"request_id": request_id, "model_version": champion.version})
            return _error(500, "internal", f"routing failed (request {request_id}); see the server log", metrics)
        writer.add(
            production_record(
                timestamp=received,
                request_id=request_id,
                text=text,
                decision=decision,
                latency_ms=latency_ms,
                model_version=champion.version,
            )
        )
        metrics.requests.labels(decision["route"], decision["fallback_reason"] or "none", champion.version).inc()
        metrics.decision_latency.observe(latency_ms / 1000.0)
        out = {
            **decision_fields(decision, champion.version),
            "model_name": champion.model_name,
            "request_id": request_id,
            "latency_ms": round(latency_ms, 4),
        }
        if dispatched is not None:
            out["dispatch"] = dispatched
        metrics.request_latency.observe(time.perf_counter() - started)
        return JSONResponse(out, headers={"X-Request-ID": request_id})

    async def healthz(request: Request) -> Response:
        champion = watcher.current
        if champion is None:
            return JSONResponse(
                {"status": "not ready", "reason": watcher.last_error or "no champion loaded yet"},
                status_code=503,
                headers={"Retry-After": str(settings.retry_after_seconds)},
            )
        return JSONResponse(
            {
                "status": "ready",
                "model_name": champion.model_name,
                "model_version": champion.version,
                "source": champion.source,
                "loaded_at": datetime.fromtimestamp(champion.loaded_at, UTC).isoformat(timespec="seconds"),
                "switches": watcher.switches,
            }
        )

    async def metrics_endpoint(request: Request) -> Response:
        metrics.landing_pending.set(writer.pending)
        metrics.landing_dropped.set(writer.dropped)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app):
        # The champion loads in the watcher's thread (importing MLflow takes seconds): the server
        # listens at once and /healthz says 503 until a champion is loaded.
        telemetry.set_log_defaults(run_id=f"serve:{instance}")
        if start_background:
            watcher.start()
            writer.start()
        try:
            yield
        finally:
            watcher.stop()
            await anyio.to_thread.run_sync(writer.close)
            if dispatcher is not None:
                dispatcher.close()
            telemetry.clear_log_defaults()

    app = Starlette(
        routes=[
            Route(ROUTE_PATH, route, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(
        OverloadGuard, limit=settings.max_in_flight, retry_after=settings.retry_after_seconds, metrics=metrics
    )
    app.state.metrics = metrics
    app.state.watcher = watcher
    app.state.writer = writer
    app.state.settings = settings
    app.state.dispatcher = dispatcher
    return app


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the app on uvicorn until SIGINT/SIGTERM (graceful: requests in flight finish, the
    landing buffer is flushed). Logs are JSON lines on stderr; tracing per the OTEL_* environment."""
    import uvicorn

    telemetry.configure_json_logging(("agent_pipeline", "uvicorn", "uvicorn.error"), level=log_level.upper())
    telemetry.setup_tracing(telemetry.SERVE_SERVICE)
    app = create_app(settings)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            backlog=2048,
        )
    finally:
        telemetry.shutdown_tracing()
