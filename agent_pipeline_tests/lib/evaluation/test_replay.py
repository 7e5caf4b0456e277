"""Champion / challenger replay of recent production records."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.evaluation import replay
from agent_pipeline.lib.registry.models import LoadedModel
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.calibration import CalibrationSettings
from agent_pipeline.lib.router.model import TrainSettings, train_router

DOMAINS = ("banking", "utility", "travel", "oos")
TODAY = date(2026, 11, 20)
POLICY = {"max_disagreement_rate": 0.35, "max_accuracy_drop": 0.02, "min_reviewed_rows": 30}


@pytest.fixture(scope="module")
def routers():
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")

    def pick(path, n):
        df = load_dataset(path, agents)
        return df[df["domain"].isin(DOMAINS)].groupby("label", group_keys=False).head(n).reset_index(drop=True)

    train, val = pick(settings.DEFAULT_TRAIN_DATA, 20), pick(settings.DEFAULT_VALIDATION_DATA, 4)
    st = replace(TrainSettings.from_config(raw), max_iter=100, calibration=CalibrationSettings(method="validation"))
    good, _ = train_router(train, val, agents, [], st)
    shuffled = train.assign(label=np.random.default_rng(7).permutation(train["label"].to_numpy()))
    bad, _ = train_router(shuffled, val, agents, [], st)
    pool = pd.read_csv(settings.DEFAULT_TRAFFIC_POOL, dtype=str, keep_default_na=False)
    pool = pool[pool["domain"].isin(DOMAINS) & (pool["pool"] != "new-topic")].reset_index(drop=True)
    return agents, train, LoadedModel("m", "1", None, good), LoadedModel("m", "2", None, bad), pool


def _records(pool: pd.DataFrame, reviewed_share: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    reviewed = rng.random(len(pool)) < reviewed_share
    return pd.DataFrame(
        {
            "timestamp": "2026-11-20T10:00:00+00:00",
            "request_id": [f"r{i}" for i in range(len(pool))],
            "text": pool["text"],
            "reviewed_label": np.where(reviewed, pool["label"], None),
            "day": "2026-11-20",
        }
    )


def _judge(candidate, champion, records, agents, train_texts=(), **kw):
    return replay.judge(
        candidate,
        champion,
        records,
        days=["2026-11-20"],
        training_texts=train_texts,
        registry=agents,
        **{**POLICY, **kw},
    )


def test_nothing_to_compare_passes_and_says_why(routers):
    agents, _, good, _, pool = routers
    first = _judge(good, None, _records(pool), agents, no_champion_reason="no champion yet (the first promotion)")
    assert first.passed and not first.compared and first.description.startswith("nothing to compare: no champion")
    quiet = _judge(good, good, _records(pool).iloc[:0], agents)
    assert quiet.passed and not quiet.compared and "no production records" in quiet.description
    seen = _judge(good, good, _records(pool), agents, train_texts=pool["text"])
    assert seen.passed and not seen.compared and seen.n_trained_on == len(pool)
    assert "trained on" in seen.description


def test_a_policy_that_requires_traffic_fails_without_it(routers):
    agents, _, good, _, pool = routers
    quiet = _judge(good, good, _records(pool).iloc[:0], agents, require_traffic=True)
    assert not quiet.passed and not quiet.compared
    assert "no production records" in quiet.description and "require_traffic" in quiet.description
    first = _judge(good, None, _records(pool), agents, require_traffic=True)
    assert first.passed  # the first promotion has no champion to compare with, traffic or not


def test_the_same_router_agrees_and_trained_rows_are_excluded(routers):
    agents, _, good, _, pool = routers
    records = _records(pool)
    result = _judge(good, good, records, agents, train_texts=pool["text"].iloc[:10].str.upper())
    assert result.passed and result.compared
    assert result.n_trained_on == 10 and result.n_replayed == len(pool) - 10  # compared case-insensitively
    assert result.disagreement_rate == 0.0 and result.cases.empty
    assert result.candidate_accuracy == result.champion_accuracy > 0.6


def test_a_candidate_that_reroutes_traffic_fails_with_the_cases(routers):
    agents, _, good, bad, pool = routers
    result = _judge(bad, good, _records(pool), agents)
    assert not result.passed and result.compared
    assert result.disagreement_rate > 0.35 and "differently" in result.description
    assert result.candidate_accuracy < result.champion_accuracy - 0.02 and "reviewed records" in result.description
    assert len(result.cases) and set(result.cases.columns) == set(replay.CASE_COLUMNS)
    row = result.cases.iloc[0]
    assert row["candidate_route"] != row["champion_route"]


def test_accuracy_is_judged_only_on_enough_reviewed_rows(routers):
    agents, _, good, bad, pool = routers
    few = _records(pool, reviewed_share=0.05)
    result = _judge(bad, good, few, agents, max_disagreement_rate=1.0, min_reviewed_rows=len(pool))
    assert result.passed and "accuracy reported, not judged" in result.description
    strict = _judge(bad, good, few, agents, max_disagreement_rate=1.0, min_reviewed_rows=1)
    assert not strict.passed


def test_recent_records_reads_the_last_days_only(tmp_path):
    log = settings.inference_log_dir(tmp_path)
    log.mkdir(parents=True)
    for offset in range(10):
        day = TODAY - timedelta(days=offset)
        pd.DataFrame(
            {"timestamp": [str(day)], "request_id": [f"r{offset}"], "text": [f"t{offset}"], "reviewed_label": [None]}
        ).to_parquet(log / f"{day}.parquet")
    (log / "notes.parquet").write_bytes(b"not a day")
    records, days = replay.recent_records(tmp_path, 7, today=TODAY)
    assert days == [str(TODAY - timedelta(days=d)) for d in range(6, -1, -1)]
    assert sorted(records["text"]) == sorted(f"t{d}" for d in range(7))
    assert replay.recent_records(tmp_path / "nowhere", 7, today=TODAY)[0].empty


def test_policy_defaults():
    from agent_pipeline.lib.registry.policy import ReplayGate

    assert ReplayGate().model_dump() == {
        "days": 7, "max_disagreement_rate": 0.35, "max_accuracy_drop": 0.02, "min_reviewed_rows": 50,
        "require_traffic": False,
    }  # fmt: skip
