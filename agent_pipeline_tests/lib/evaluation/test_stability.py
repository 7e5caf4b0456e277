"""Routing stability: exact for our routers, within a flakiness budget for routers that are not ours."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.evaluation import metrics, stability
from agent_pipeline.lib.evaluation.runs import route_items
from agent_pipeline.lib.registry.models import LoadedModel
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.calibration import CalibrationSettings
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router


class CoinRouter:
    """A router that is not ours: a fixed route per text, except that each call flips a seeded coin
    per text in ``unsure`` and answers ``fallback`` on heads."""

    router = None

    def __init__(self, unsure: set[str], seed: int = 1) -> None:
        self.unsure, self.rng = unsure, np.random.default_rng(seed)

    def route_batch(self, texts):
        texts = list(texts)
        heads = self.rng.random(len(texts)) < 0.5
        route = ["fallback" if (t in self.unsure and h) else "banking" for t, h in zip(texts, heads)]
        return pd.DataFrame(
            {
                "route": route, "agent": route, "pred_label": "balance", "decided_label": "balance",
                "confidence": 0.9, "fallback": [r == "fallback" for r in route], "fallback_reason": "", "rule": "",
            }
        )  # fmt: skip

    def route_one(self, text):
        return self.route_batch([text]).iloc[0].to_dict()


@pytest.fixture(scope="module")
def cases():
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    golden = load_dataset(settings.DEFAULT_GOLDEN_DATA, agents, id_prefix="golden")
    return agents, golden


def test_our_router_is_judged_exactly(cases):
    agents, golden = cases
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents).groupby("label", group_keys=False).head(15)
    val = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents).groupby("label", group_keys=False).head(3)
    st = replace(TrainSettings.from_config(raw), max_iter=50, calibration=CalibrationSettings(method="validation"))
    router, _ = train_router(train, val, agents, rules_from_config(raw, agents), st)
    model = LoadedModel("m", "1", None, router)
    items = route_items(model, {"golden": golden})
    result = stability.judge(model, items, metrics.decisions_fingerprint(items), repeats=2, flakiness_budget=0.5)
    assert result.passed and result.exact and result.n_flaky == 0 and result.mean_agreement == 1.0
    # a wrong fingerprint (decisions that changed since the evaluation) fails however large the budget
    changed = stability.judge(model, items, "not-the-fingerprint", repeats=1, flakiness_budget=1.0)
    assert not changed.passed and "must be deterministic" in changed.description


def test_a_router_not_ours_is_judged_against_the_budget(cases):
    _, golden = cases
    texts = golden["text"].astype(str).tolist()
    unsure = set(texts[:10])
    model = CoinRouter(unsure)
    items = route_items(model, {"golden": golden})
    result = stability.judge(model, items, metrics.decisions_fingerprint(items), repeats=4, flakiness_budget=0.1)
    assert not result.exact
    # 10 coin-flip texts over 5 runs: each is flaky unless all five flips agree (1 in 16)
    assert 7 <= result.n_flaky <= 10 and set(result.flaky_cases["text"]) <= unsure
    assert result.flaky_rate == result.n_flaky / len(golden)
    assert result.passed == (result.flaky_rate <= 0.1)
    tight = stability.judge(CoinRouter(unsure, seed=2), items, "", repeats=4, flakiness_budget=0.01)
    assert not tight.passed and "over the flakiness budget" in tight.description
    row = result.flaky_cases.iloc[0]
    assert 0.5 <= row["agreement"] < 1.0 and set(row["routes"].split("|")) == {"banking", "fallback"}


def test_per_case_agreement():
    routes = np.array([["a", "a", "a"], ["a", "b", "a"], ["a", "b", "c"]], dtype=object)
    agreement, modal = stability.per_case_agreement(routes)
    np.testing.assert_allclose(agreement, [1.0, 2 / 3, 1 / 3])
    assert modal[:2] == ["a", "a"]


def test_no_cases_cannot_be_judged_and_fails_closed(cases):
    _, golden = cases
    model = CoinRouter(set())
    empty = route_items(model, {"golden": golden}).iloc[:0]
    result = stability.judge(model, empty, "", repeats=2, flakiness_budget=0.1)
    assert not result.passed and "cannot be judged" in result.description
    assert result.n_cases == 0 and np.isnan(result.flaky_rate)
