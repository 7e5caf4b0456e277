"""Session-wide real servers for the integration tests (see services.py)."""

from __future__ import annotations

import pytest

from agent_pipeline_tests.integration import services


@pytest.fixture(scope="session")
def postgres():
    pg = services.start_postgres()
    yield pg
    services.stop_postgres(pg)


@pytest.fixture(scope="session")
def redis_server():
    rd = services.start_redis()
    yield rd
    services.stop_redis(rd)


@pytest.fixture(scope="session")
def relaxed_latency_gates(tmp_path_factory):
    """The small inputs' promotion policy (holdout floors for the 40-per-label slice) with a 2 s
    latency SLO. These tests are about storage, executors and the UI, on a 2-core machine that
    other jobs share; a loaded machine must not turn the latency gate (tested on its own in
    defs/) into a failed run here."""
    import yaml

    from agent_pipeline_tests.conftest import small_policy_config

    policy = small_policy_config()
    policy["gates"]["latency_within_slo"] = {"slo_ms": {"p50": 2000.0, "p99": 2000.0}, "slo_ms_by_tier": {}}
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path
