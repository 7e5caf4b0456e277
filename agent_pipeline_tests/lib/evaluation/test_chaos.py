"""The chaos drill: the real dispatcher passes it, a dispatcher without timeouts fails it, and the
fault schedule is the same for the same seed."""

from __future__ import annotations

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.evaluation import chaos
from agent_pipeline.lib.router.agents import load_agent_registry
from agent_pipeline.lib.serving.dispatcher import AgentEndpoint, Dispatcher


@pytest.fixture(scope="module")
def registry():
    return load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)


@pytest.fixture(scope="module")
def decisions(registry) -> pd.DataFrame:
    """The golden cases routed as expected (the drill only needs id, text and the chosen agent)."""
    golden = load_dataset(settings.DEFAULT_GOLDEN_DATA, registry)
    return golden.assign(agent=[registry.agent_for_route(r) for r in golden["expected_route"]])


def test_the_dispatcher_survives_every_fault_kind(registry, decisions):
    report = chaos.survives_agent_faults(decisions, registry.agents, registry.fallback_agent)
    assert report.passed, report.description
    table = report.table.set_index("fault_kind")
    assert set(table.index) == {*chaos.INJECTED, "circuit_open", "none"}
    faulted = table.drop(index="none")
    assert (faulted["n"] > 0).all()
    assert (faulted["fallback_rate"] == 1.0).all()
    assert report.n_lost == 0 and int(table["lost"].sum()) == 0
    # healthy requests are answered by their agent (a busy machine may push one past its 80 ms timeout)
    assert table.loc["none", "fallback_rate"] < 0.05
    # a stall costs about the timeout, far less than the stall itself
    assert table.loc["stall", "added_p99_ms"] < chaos.ChaosSettings().stall_s * 1000 / 2
    md = report.metrics()
    assert md["fallback_rate.stall"] == 1.0 and "added_p99_ms.circuit_open" in md


def test_a_dispatcher_without_timeouts_fails_the_drill(registry, decisions):
    def no_timeouts(endpoints, fallback, s):
        bare = {name: AgentEndpoint(e.name, e.url, None) for name, e in endpoints.items()}
        return Dispatcher(bare, fallback, budget_ms=s.budget_ms, failure_threshold=s.failure_threshold)

    report = chaos.survives_agent_faults(
        decisions, registry.agents, registry.fallback_agent, make_dispatcher=no_timeouts
    )
    assert not report.passed
    assert "stall: fallback rate 0.000 < 1.0" in report.description
    assert "stall: added p99 " in report.description
    assert report.table.set_index("fault_kind").loc["stall", "added_p99_ms"] > 900  # the whole 1 s stall


def test_the_schedule_is_deterministic_for_a_seed(registry, decisions):
    d = decisions.assign(request_id=[f"r{i}" for i in range(len(decisions))])
    s = chaos.ChaosSettings()
    first = chaos.fault_schedule(d, registry.fallback_agent, s)
    assert first == chaos.fault_schedule(d, registry.fallback_agent, s)
    other = chaos.fault_schedule(d, registry.fallback_agent, chaos.ChaosSettings(seed=s.seed + 1))
    assert other[0] != first[0]
    kinds = pd.Series(first[0]).value_counts()
    assert set(kinds.index) == set(chaos.INJECTED)


def test_a_router_that_always_falls_back_leaves_kinds_unexercised_but_not_failed(registry, decisions):
    few = decisions.assign(agent=["general"] * (len(decisions) - 6) + ["banking"] * 6)
    report = chaos.survives_agent_faults(few, registry.agents, registry.fallback_agent)
    assert report.passed, report.description
    assert "not exercised" in report.description
    none = decisions.assign(agent="general")
    report = chaos.survives_agent_faults(none, registry.agents, registry.fallback_agent)
    assert not report.passed and "no fault could be injected" in report.description
