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
