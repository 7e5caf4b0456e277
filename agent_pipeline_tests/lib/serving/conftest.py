"""A real registry with two versions of a real (small) router: v1 champion, v2 registered.

Trained on 15 texts per label (5-10 s on a busy 2-core machine) and logged to a SQLite MLflow
store in a temporary state folder; ``promote`` writes the serving bundle as production does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.promotion import change_champion
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.calibration import CalibrationSettings
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router


def small_router(seed: int = 0):
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    rules = rules_from_config(load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config"), agents)
    train = pd.read_csv(settings.DEFAULT_TRAIN_DATA).groupby("label", group_keys=False).sample(n=15, random_state=seed)
    val = pd.read_csv(settings.DEFAULT_VALIDATION_DATA)
    val = pd.concat(
        [
            val[val["label"] != "oos"].groupby("label", group_keys=False).sample(n=3, random_state=0),
            val[val["label"] == "oos"].sample(n=50, random_state=0),
        ]
    )
    router, _ = train_router(
        train,
        val,
        agents,
        rules,
        TrainSettings(c=3.0, max_iter=100, calibration=CalibrationSettings(method="validation")),
    )
    return router


@pytest.fixture(scope="package")
def served_home(tmp_path_factory) -> Path:
    """A state folder whose registry holds v1 (champion, with its serving bundle) and v2."""
    home = tmp_path_factory.mktemp("serve") / "home"
    store = ModelRegistry(f"sqlite:///{settings.mlflow_dir(home) / 'mlflow.db'}", "agent-router", home=home)
    router = small_router()
    for _ in range(2):
        store.log_router(router, params={}, metrics={}, tags={})
    change_champion(store, store.home, action="promote", version="1", details={"reason": "test fixture"})
    return home
