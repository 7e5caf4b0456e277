"""The dispatcher: the second half of routing, calling the agent the router chose.

``Dispatcher.dispatch(decision, text)`` POSTs the request to the chosen agent's endpoint
(declared in ``config/agents.yaml``: ``endpoint`` URL and ``timeout_ms`` per agent, plus the
fallback agent's under ``fallback:``) and returns a ``DispatchResult``. When the call cannot give
an answer, the request goes to the fallback (general) agent instead, within the time budget, and
the result names the fault:

==================  ======================================================================
fault               when
==================  ======================================================================
``timeout``         no complete reply within the agent's ``timeout_ms``
``connection``      connection refused or reset, or another transport error
``http_status``     the agent answered with a status other than 200
``malformed``       the reply is not a JSON object with a string ``answer`` (or is too large)
``unknown_agent``   the decision names an agent that has no endpoint in the registry
``circuit_open``    the agent's circuit breaker is open (``failure_threshold`` consecutive
                    faults; the agent is skipped for ``reset_after_s``, then tried again)
==================  ======================================================================

Budget: the chosen agent gets ``min(timeout_ms, budget_ms - fallback timeout_ms)``, so the
fallback always keeps its own full timeout inside ``budget_ms``. The reply is read as a stream
against one deadline, so an agent that trickles bytes cannot stretch a call past its timeout.
Every fault is logged (logger ``agent_pipeline.dispatcher``, one line with the request id, the
agent, the fault and the detail).

Wire format: ``POST <endpoint>`` with JSON ``{"request_id", "text", "agent", "route",
"decided_label", "confidence"}``; a healthy agent answers 200 with a JSON object whose
``answer`` is a string (other keys are kept in ``reply``).

Thread-safe: one ``httpx.Client`` (a thread-safe connection pool) and one lock per circuit
breaker, so the serving endpoint can share one dispatcher between request threads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from agent_pipeline.lib.core.errors import ConfigError

log = logging.getLogger("agent_pipeline.dispatcher")

FAULTS = ("timeout", "connection", "http_status", "malformed", "unknown_agent", "circuit_open")
MAX_REPLY_BYTES = 64 * 1024
DEFAULT_TIMEOUT_MS = 100.0
DEFAULT_BUDGET_MS = 1000.0


@dataclass(frozen=True)
class AgentEndpoint:
    """Where an agent answers and how long it may take (``timeout_ms=None``: no timeout, tests only)."""

    name: str
    url: str
    timeout_ms: float | None = DEFAULT_TIMEOUT_MS


@dataclass
class DispatchResult:
    """What happened to one request: who answered, and the fault that forced a fallback, if any."""

    request_id: str
    requested_agent: str
    agent: str  # who answered ("" when nobody did)
    answer: str | None
    fault: str  # "" when the chosen agent answered
    fault_detail: str
    fell_back: bool
    latency_ms: float
    reply: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A reply reached the user (from the chosen agent or the fallback)."""
        return self.answer is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


class CircuitBreaker:
    """Per-agent breaker: opens after ``failure_threshold`` consecutive faults, half-opens after
    ``reset_after_s`` (one trial call; success closes it, a fault re-opens it)."""

    def __init__(
        self, failure_threshold: int = 5, reset_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        if failure_threshold < 1:
            raise ConfigError(f"circuit breaker: failure_threshold must be >= 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if not self._trial and self._clock() - self._opened_at >= self.reset_after_s:
                self._trial = True  # half-open: exactly one caller tries
                return True
            return False

    def record(self, success: bool) -> None:
        with self._lock:
            if success:
                self._failures, self._opened_at, self._trial = 0, None, False
                return
            self._failures += 1
            if self._trial or self._failures >= self.failure_threshold:
                self._opened_at, self._trial = self._clock(), False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None


class _Fault(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class Dispatcher:
    """Calls the chosen agent; falls back to the general agent on any fault (see the module docstring)."""

    def __init__(
        self,
        endpoints: Mapping[str, AgentEndpoint],
        fallback_agent: str,
        *,
        budget_ms: float = DEFAULT_BUDGET_MS,
        failure_threshold: int = 5,
        reset_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fallback_agent not in endpoints:
            raise ConfigError(
                f"dispatcher: the fallback agent '{fallback_agent}' has no endpoint; declare fallback.endpoint "
                "in config/agents.yaml"
            )
        fb_timeout = endpoints[fallback_agent].timeout_ms
        if fb_timeout is not None and budget_ms <= fb_timeout:
            raise ConfigError(
                f"dispatcher: budget_ms {budget_ms} must exceed the fallback agent's timeout_ms {fb_timeout}, "
                "so a fallback always fits in the budget"
            )
        self.endpoints = dict(endpoints)
        self.fallback_agent = fallback_agent
        self.budget_ms = float(budget_ms)
        self._breakers = {name: CircuitBreaker(failure_threshold, reset_after_s, clock) for name in self.endpoints}
        self._client = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def breaker(self, agent: str) -> CircuitBreaker:
        return self._breakers[agent]

    # -- the one public call -------------------------------------------------------------------
    def dispatch(self, decision: Mapping[str, Any] | Any, text: str, request_id: str | None = None) -> DispatchResult:
        """Send ``text`` to the agent of ``decision`` (a ``Decision`` or its dict); fall back on a fault."""
        d = decision if isinstance(decision, Mapping) else decision.to_dict()
        request_id = request_id or uuid.uuid4().hex
        agent = str(d.get("agent") or self.fallback_agent)
        payload = {
            "request_id": request_id,
            "text": text,
            "agent": agent,
            "route": str(d.get("route", "")),
            "decided_label": str(d.get("decided_label", "")),
            "confidence": float(d.get("confidence", 0.0) or 0.0),
        }
        t0 = time.perf_counter()
        fault, detail = "", ""
        if agent == self.fallback_agent:
            pass
        elif agent not in self.endpoints:
            fault, detail = "unknown_agent", f"no endpoint for agent '{agent}' in the agent registry"
        elif not self._breakers[agent].allow():
            fault, detail = "circuit_open", f"circuit of '{agent}' is open after repeated faults"
        else:
            endpoint = self.endpoints[agent]
            fb = self.endpoints[self.fallback_agent].timeout_ms
            limit = endpoint.timeout_ms
            if limit is not None and fb is not None:
                limit = min(limit, self.budget_ms - fb)
            try:
                reply = self._call(endpoint, payload, limit)
            except _Fault as exc:
                fault, detail = exc.kind, exc.detail
                self._breakers[agent].record(False)
            else:
                self._breakers[agent].record(True)
                return DispatchResult(request_id, agent, agent, reply["answer"], "", "", False, _ms(t0), reply)
        if fault:
            log.warning("request %s: agent %s fault %s (%s); falling back to %s", request_id, agent, fault, detail,
                        self.fallback_agent)  # fmt: skip
        fb_endpoint = self.endpoints[self.fallback_agent]
        try:
            reply = self._call(fb_endpoint, {**payload, "agent": self.fallback_agent}, fb_endpoint.timeout_ms)
        except _Fault as exc:
            log.error("request %s: fallback agent %s fault %s (%s); request lost", request_id, self.fallback_agent,
                      exc.kind, exc.detail)  # fmt: skip
            return DispatchResult(
                request_id, agent, "", None, fault or exc.kind, f"{detail}; fallback: {exc.detail}".strip("; "),
                bool(fault), _ms(t0),
            )  # fmt: skip
        return DispatchResult(
            request_id, agent, self.fallback_agent, reply["answer"], fault, detail, bool(fault), _ms(t0), reply
        )

    def _call(self, endpoint: AgentEndpoint, payload: dict, timeout_ms: float | None) -> dict:
        """POST and read the reply against one deadline; a ``_Fault`` for anything but a good reply."""
        deadline = None if timeout_ms is None else time.perf_counter() + timeout_ms / 1000.0

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.perf_counter()
            if left <= 0:
                raise _Fault("timeout", f"{endpoint.name}: no reply within {timeout_ms:.0f} ms")
            return left

        try:
            left = remaining()
            timeout = httpx.Timeout(left) if left is not None else httpx.Timeout(None)
            with self._client.stream("POST", endpoint.url, json=payload, timeout=timeout) as resp:
                if resp.status_code != 200:
                    raise _Fault("http_status", f"{endpoint.name}: HTTP {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_raw():
                    body += chunk
                    if len(body) > MAX_REPLY_BYTES:
                        raise _Fault("malformed", f"{endpoint.name}: reply larger than {MAX_REPLY_BYTES} bytes")
                    remaining()
        except _Fault:
            raise
        except httpx.TimeoutException:
            raise _Fault("timeout", f"{endpoint.name}: no reply within {timeout_ms:.0f} ms") from None
        except httpx.HTTPError as exc:
            raise _Fault("connection", f"{endpoint.name}: {type(exc).__name__}: {exc}") from None
        remaining()
        try:
            reply = json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError):
            raise _Fault("malformed", f"{endpoint.name}: reply is not JSON ({bytes(body[:40])!r})") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("answer"), str):
            raise _Fault("malformed", f"{endpoint.name}: reply lacks a string 'answer'")
        return reply


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def endpoints_from_config(raw: Mapping, source: str = "agents config") -> tuple[dict[str, AgentEndpoint], str]:
    """``(endpoints, fallback agent)`` from ``config/agents.yaml``: ``agents.<name>.endpoint`` /
    ``timeout_ms`` and ``fallback.endpoint`` / ``timeout_ms``. Agents without an endpoint are left
    out (a decision for one of them falls back with ``unknown_agent``)."""
    fallback = str(raw.get("fallback_agent") or "general")
    out: dict[str, AgentEndpoint] = {}
    specs = [(str(n), s, f"agents.{n}") for n, s in (raw.get("agents") or {}).items()]
    specs.append((fallback, raw.get("fallback") or {}, "fallback"))
    for name, spec, key in specs:
        if not isinstance(spec, Mapping) or not spec.get("endpoint"):
            continue
        url = str(spec["endpoint"])
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: {key}.endpoint must be an http(s) URL, got {url!r}")
        timeout = spec.get("timeout_ms", DEFAULT_TIMEOUT_MS)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"{source}: {key}.timeout_ms must be a positive number of milliseconds, got {timeout!r}")
        out[name] = AgentEndpoint(name, url, float(timeout))
    return out, fallback
