"""The dispatcher against real loopback stand-in agents: every fault falls back to the general
agent within the budget and says why; the circuit breaker opens and recovers; threads share one
dispatcher; the agents config is validated."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.serving.dispatcher import AgentEndpoint, CircuitBreaker, Dispatcher, endpoints_from_config
from agent_pipeline.lib.serving.stand_ins import StandInAgents

FAULTS = {"r-stall": "stall", "r-reset": "reset", "r-garbage": "garbage", "r-500": "http_500"}


@pytest.fixture(scope="module")
def stand_ins():
    with StandInAgents(FAULTS, stall_s=1.0) as s:
        yield s


def dispatcher(stand_ins, timeout_ms=100.0, fallback_ms=300.0, **kw) -> Dispatcher:
    endpoints = {a: AgentEndpoint(a, stand_ins.url(a), timeout_ms) for a in ("banking", "travel")}
    endpoints["general"] = AgentEndpoint("general", stand_ins.url("general"), fallback_ms)
    return Dispatcher(endpoints, "general", budget_ms=kw.pop("budget_ms", 500.0), **kw)


def test_a_healthy_agent_answers_itself(stand_ins):
    with dispatcher(stand_ins) as d:
        r = d.dispatch({"agent": "banking", "route": "banking"}, "what's my balance", request_id="r-ok")
    assert (r.agent, r.fault, r.fell_back, r.ok) == ("banking", "", False, True)
    assert r.answer == "banking handled: what's my balance"


@pytest.mark.parametrize(
    "request_id,fault",
    [("r-stall", "timeout"), ("r-reset", "connection"), ("r-garbage", "malformed"), ("r-500", "http_status")],
)
def test_each_fault_falls_back_to_general_within_budget(stand_ins, request_id, fault, caplog):
    with dispatcher(stand_ins) as d:
        t0 = time.perf_counter()
        r = d.dispatch({"agent": "banking"}, "move money", request_id=request_id)
        elapsed = (time.perf_counter() - t0) * 1000
    assert (r.requested_agent, r.agent, r.fault, r.fell_back, r.ok) == ("banking", "general", fault, True, True)
    assert r.answer.startswith("general handled")
    assert elapsed < 500  # the stall lasts 1 s; the budget is 500 ms
    assert f"agent banking fault {fault}" in caplog.text


def test_unknown_agent_and_fallback_decisions(stand_ins):
    with dispatcher(stand_ins) as d:
        ghost = d.dispatch({"agent": "payments"}, "pay", request_id="r-x")
        direct = d.dispatch({"agent": "general", "route": "fallback"}, "weather?", request_id="r-y")
    assert (ghost.fault, ghost.agent, ghost.fell_back) == ("unknown_agent", "general", True)
    assert (direct.fault, direct.agent, direct.fell_back) == ("", "general", False)


def test_circuit_opens_after_consecutive_faults_and_half_opens_later(stand_ins):
    now = [0.0]
    with dispatcher(stand_ins, failure_threshold=2, reset_after_s=10, clock=lambda: now[0]) as d:
        faults = [d.dispatch({"agent": "banking"}, "x", request_id="r-reset").fault for _ in range(3)]
        assert faults == ["connection", "connection", "circuit_open"]
        n_calls = len(stand_ins.calls)
        skipped = d.dispatch({"agent": "banking"}, "x", request_id="r-ok")
        assert skipped.fault == "circuit_open" and skipped.ok
        assert [c for c in stand_ins.calls[n_calls:] if c[1] == "banking"] == []  # not even tried
        now[0] = 11.0  # half-open: one trial call, healthy, closes the circuit
        assert d.dispatch({"agent": "banking"}, "x", request_id="r-ok").fault == ""
        assert not d.breaker("banking").is_open


def test_breaker_reopens_when_the_trial_call_fails():
    now = [0.0]
    b = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=lambda: now[0])
    b.record(False)
    assert not b.allow()
    now[0] = 6.0
    assert b.allow() and not b.allow()  # exactly one trial
    b.record(False)
    assert not b.allow()


def test_a_dispatcher_without_timeouts_waits_for_a_stalled_agent(stand_ins):
    with dispatcher(stand_ins, timeout_ms=None) as d:
        t0 = time.perf_counter()
        r = d.dispatch({"agent": "banking"}, "x", request_id="r-stall")
    assert (r.agent, r.fault, r.fell_back) == ("banking", "", False)
    assert time.perf_counter() - t0 >= 1.0  # the whole stall


def test_threads_share_one_dispatcher(stand_ins):
    ids = ["r-ok", "r-reset", "r-garbage", "r-500"] * 10
    # Generous timeouts: this is about shared state under concurrency, not about timing on a busy machine.
    slow = {"timeout_ms": 900.0, "fallback_ms": 2000.0, "budget_ms": 3000.0, "failure_threshold": 1000}
    with dispatcher(stand_ins, **slow) as d, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: d.dispatch({"agent": "travel"}, f"t{i}", request_id=i), ids))
    assert all(r.ok for r in results)
    assert [r.fault for r in results[:4]] == ["", "connection", "malformed", "http_status"]
    assert sum(r.fell_back for r in results) == 30


def test_lost_only_when_the_fallback_itself_fails():
    with StandInAgents({"r-1": "reset"}, healthy_agent="nobody") as s:
        endpoints = {"general": AgentEndpoint("general", s.url("general"), 100.0)}
        with Dispatcher(endpoints, "general", budget_ms=300) as d:
            r = d.dispatch({"agent": "general"}, "x", request_id="r-1")
    assert (r.ok, r.agent, r.answer) == (False, "", None)


def test_endpoints_from_config():
    raw = {
        "fallback_agent": "general",
        "fallback": {"endpoint": "http://127.0.0.1:9000/general", "timeout_ms": 300},
        "agents": {
            "banking": {"labels": ["balance"], "endpoint": "http://127.0.0.1:9000/banking", "timeout_ms": 80},
            "travel": {"labels": ["book_flight"]},  # no endpoint: decisions for it fall back (unknown_agent)
        },
    }
    endpoints, fallback = endpoints_from_config(raw)
    assert fallback == "general" and set(endpoints) == {"general", "banking"}
    assert endpoints["banking"].timeout_ms == 80.0
    with pytest.raises(ConfigError, match=r"agents config: agents.banking.timeout_ms must be a positive"):
        endpoints_from_config({**raw, "agents": {"banking": {"labels": [], "endpoint": "http://x", "timeout_ms": 0}}})
    with pytest.raises(ConfigError, match=r"agents.banking.endpoint must be an http\(s\) URL"):
        endpoints_from_config({**raw, "agents": {"banking": {"labels": [], "endpoint": "ftp://x"}}})
    with pytest.raises(ConfigError, match="the fallback agent 'general' has no endpoint"):
        Dispatcher({}, "general")
    with pytest.raises(ConfigError, match="budget_ms 200 must exceed the fallback agent's timeout_ms 300"):
        Dispatcher(endpoints, "general", budget_ms=200)
