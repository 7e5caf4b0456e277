"""Traffic simulation with a real (small) router: files, determinism, scenario mixes, reviews,
decisions equal to the model's, and the landing -> inference log -> feedback path."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data import feedback
from agent_pipeline.lib.monitoring import ingest, traffic
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS
from agent_pipeline.lib.registry.models import LoadedModel
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.calibration import CalibrationSettings
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router

START = date(2026, 3, 1)
ROWS = 400
SEED = 11


@pytest.fixture(scope="module")
def agents():
    return load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)


@pytest.fixture(scope="module")
def model(agents) -> LoadedModel:
    """A real router trained on 15 texts per label (5-10 s on a busy 2-core box), as a registry model."""
    rules = rules_from_config(load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config"), agents)
    train = pd.read_csv(settings.DEFAULT_TRAIN_DATA).groupby("label", group_keys=False).sample(n=15, random_state=0)
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
    return LoadedModel("agent-router", "7", None, router)


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    return traffic.read_pool(settings.DEFAULT_TRAFFIC_POOL)


@pytest.fixture(scope="module")
def landed(model, pool, tmp_path_factory) -> dict[str, list[Path]]:
    """Two days of each scenario, all in one landing folder."""
    landing = tmp_path_factory.mktemp("landing")
    return {
        sc: traffic.simulate(
            model, pool, start=START, days=2, scenario=sc, seed=SEED, rows_per_day=ROWS, landing=landing
        )
        for sc in traffic.SCENARIOS
    }


def read(path: Path) -> pd.DataFrame:
    return pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()])


def pool_share(frame: pd.DataFrame, pool: pd.DataFrame, name: str) -> float:
    return float(frame["text"].isin(set(pool.loc[pool["pool"] == name, "text"])).mean())


def test_one_file_per_day_with_exactly_the_record_columns(landed):
    for sc, paths in landed.items():
        assert [p.name for p in paths] == [f"2026-03-01-{sc}-s{SEED}.jsonl", f"2026-03-02-{sc}-s{SEED}.jsonl"]
        for day, path in zip((date(2026, 3, 1), date(2026, 3, 2)), paths):
            lines = path.read_text(encoding="utf-8").splitlines()
            assert len(lines) == ROWS
            assert all(list(json.loads(line)) == list(RECORD_COLUMNS) for line in lines)
            df = read(path)
            ts = [datetime.fromisoformat(t) for t in df["timestamp"]]
            assert all(t.tzinfo is not None and t.astimezone(UTC).date() == day for t in ts)
            assert ts == sorted(ts)
            assert df["request_id"].is_unique
            assert (df["model_version"] == "7").all()
            assert (df["latency_ms"] > 0).all()
    landing = landed["stable"][0].parent
    assert sorted(p.name for p in landing.iterdir()) == sorted(p.name for ps in landed.values() for p in ps)


def test_same_seed_gives_same_files_except_latency(model, pool, landed, tmp_path):
    again = traffic.simulate(
        model, pool, start=START, days=2, scenario="new-topic", seed=SEED, rows_per_day=ROWS, landing=tmp_path
    )
    for first, second in zip(landed["new-topic"], again):
        a, b = read(first), read(second)
        assert a.drop(columns="latency_ms").equals(b.drop(columns="latency_ms"))
    other = traffic.simulate(
        model, pool, start=START, days=1, scenario="new-topic", seed=SEED + 1, rows_per_day=ROWS, landing=tmp_path
    )
    assert list(read(other[0])["text"]) != list(read(landed["new-topic"][0])["text"])
    assert set(read(other[0])["request_id"]).isdisjoint(read(landed["new-topic"][0])["request_id"])


def test_day_origin_draws_the_same_requests_on_any_date(model, pool, tmp_path):
    """The demo tells its story relative to today: keyed on the offset from ``day_origin``, a run
    on another date draws the same texts, labels and reviews (only dates and ids move)."""
    runs = [
        traffic.simulate(
            model, pool, start=start, days=2, scenario="new-topic", seed=SEED, rows_per_day=ROWS,
            landing=tmp_path / str(start), day_origin=start,
        )
        for start in (START, date(2026, 12, 3))
    ]  # fmt: skip
    columns = ["text", "route", "label", "confidence", "reviewed_label"]
    for first, second in zip(*runs):
        assert read(first)[columns].equals(read(second)[columns])
    calendar = traffic.simulate(
        model, pool, start=date(2026, 12, 3), days=1, scenario="new-topic", seed=SEED, rows_per_day=ROWS,
        landing=tmp_path / "calendar",
    )  # fmt: skip
    assert list(read(calendar[0])["text"]) != list(read(runs[1][0])["text"])
    with pytest.raises(traffic.TrafficError, match="day_origin"):
        traffic.simulate(
            model, pool, start=START, days=1, scenario="stable", seed=SEED, landing=tmp_path,
            day_origin=date(2026, 3, 2),
        )  # fmt: skip


def test_the_clis_scenarios_are_the_simulators():
    from agent_pipeline import cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    scenario = next(a for a in sub.choices["simulate-traffic"]._actions if a.dest == "scenario")
    assert tuple(scenario.choices) == tuple(traffic.SCENARIOS)


def test_scenario_mixes(landed, pool):
    stable = [read(p) for p in landed["stable"]]
    new_topic = [read(p) for p in landed["new-topic"]]
    surge = [read(p) for p in landed["oos-surge"]]
    for day in stable:
        assert pool_share(day, pool, "oos") == pytest.approx(0.03, abs=0.005)
        assert pool_share(day, pool, "new-topic") == 0.0
    # the new topic ramps from 25% on the first day by 5 points a day
    assert [pool_share(d, pool, "new-topic") for d in new_topic] == pytest.approx([0.25, 0.30], abs=0.005)
    for day in surge:
        assert pool_share(day, pool, "oos") == pytest.approx(0.30, abs=0.005)
    stable_fallback = pd.concat(stable)["fallback"].mean()
    assert pd.concat(surge)["fallback"].mean() > stable_fallback + 0.05
    assert pd.concat(new_topic)["fallback"].mean() > stable_fallback + 0.05


def test_review_share_carries_the_true_label(landed, pool):
    truth = dict(zip(pool["text"], pool["label"]))
    for path in landed["oos-surge"]:
        df = read(path)
        reviewed = df[df["reviewed_label"].notna()]
        assert len(reviewed) == round(0.2 * ROWS)
        assert (reviewed["reviewed_label"] == reviewed["text"].map(truth)).all()
        assert "oos" in set(reviewed["reviewed_label"])


def test_decisions_are_the_models(landed, model):
    df = pd.concat([read(p) for p in landed["oos-surge"] + landed["new-topic"]], ignore_index=True)
    expected = model.route_batch(df["text"].tolist())
    assert list(df["route"]) == list(expected["route"])
    assert list(df["agent"]) == list(expected["agent"])
    assert list(df["label"]) == list(expected["decided_label"])
    assert list(df["fallback"]) == list(expected["fallback"])
    assert df["confidence"].to_numpy() == pytest.approx(expected["confidence"].to_numpy(), abs=1e-9)


def test_bad_arguments_are_one_line_errors(model, pool, tmp_path):
    with pytest.raises(traffic.TrafficError, match="unknown traffic scenario 'weekend'.*stable, new-topic, oos-surge"):
        traffic.simulate(model, pool, start=START, days=1, scenario="weekend", seed=1, landing=tmp_path)
    with pytest.raises(traffic.TrafficError, match="no rows with pool 'new-topic'"):
        traffic.simulate(
            model,
            pool[pool["pool"] != "new-topic"],
            start=START,
            days=1,
            scenario="new-topic",
            seed=1,
            landing=tmp_path,
        )
    with pytest.raises(traffic.TrafficError, match="review_share"):
        traffic.simulate(
            model, pool, start=START, days=1, scenario="stable", seed=1, review_share=1.5, landing=tmp_path
        )
    bad = tmp_path / "pool.csv"
    bad.write_text("text,label\nhello,greeting\n")
    with pytest.raises(traffic.TrafficError, match=r"pool.csv: traffic pool lacks column\(s\) pool \(needs text"):
        traffic.read_pool(bad)
    bad.write_text("text,label,pool\nhello,greeting,weekend\n")
    with pytest.raises(traffic.TrafficError, match=r"values \['weekend'\] are not one of stable, oos, new-topic"):
        traffic.read_pool(bad)
    legacy = tmp_path / "legacy.csv"  # the earlier column name and spelling are read too
    legacy.write_text("text,label,scenario\nvisa for canada,international_visa,new_topic\n")
    assert traffic.read_pool(legacy)["pool"].tolist() == ["new-topic"]
    assert list(tmp_path.glob("*.jsonl")) == []


def test_simulated_traffic_ingests_clean_and_feeds_back(landed, agents, pool, tmp_path):
    out = settings.inference_log_dir(tmp_path)
    result = ingest.ingest_partition(
        landed["stable"][0].parent,
        "2026-03-02",
        known_labels=agents.known_labels,
        known_routes=set(agents.routes),
        out_dir=out,
        quarantine_dir=tmp_path / "quarantine",
    )
    assert (result.n_rows, result.n_valid, result.n_quarantined) == (3 * ROWS, 3 * ROWS, 0)
    assert result.n_reviewed == 3 * round(0.2 * ROWS)
    log = ingest.load_log(out, "2026-03-02")
    examples = feedback.reviewed_examples(tmp_path, agents)
    reviewed = log[log["reviewed_label"].notna()]
    assert len(examples) == reviewed["text"].nunique()
    truth = dict(zip(pool["text"], pool["label"]))
    assert (examples["label"] == examples["text"].map(truth)).all()
    assert set(examples["expected_route"]) <= set(agents.routes)
