"""The router: rules, classifier, threshold, agent map, fallback, fast path, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.router.agents import AgentRegistry, ConfigError, load_agent_registry, load_yaml
from agent_pipeline.lib.router.calibration import CalibrationSettings
from agent_pipeline.lib.router.model import Rule, TrainSettings, rules_from_config, train_router

# The threshold tuned on the validation curve (the earlier method): these tests are about the
# router, not the threshold choice (lib/router/test_calibration.py), and it costs no refits.
VALIDATION = CalibrationSettings(method="validation", objective="label_accuracy")


@pytest.fixture(scope="module")
def agents() -> AgentRegistry:
    return load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)


@pytest.fixture(scope="module")
def trained(agents):
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents).groupby("label", group_keys=False).head(25)
    val = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents).groupby("label", group_keys=False).head(5)
    st = TrainSettings.from_config(raw)
    router, report = train_router(
        train,
        val,
        agents,
        rules_from_config(raw, agents),
        TrainSettings(
            c=st.c, max_iter=100, tol=st.tol, seed=st.seed, threshold_grid=st.threshold_grid, calibration=VALIDATION
        ),
    )
    return router, report, val


def test_canonical_cases(trained):
    router, _, _ = trained
    d = router.route("Generate contract summary")
    assert (d.route, d.agent, d.rule, d.fallback, d.decided_label) == (
        "contracts",
        "contracts",
        "contract_summary",
        False,
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


def test_rule_needs_every_pattern(trained):
    router, _, _ = trained
    assert router.route("summary of my bank transactions").rule == ""
    assert router.route("please review this contract clause").rule == "contract_review"


def test_low_confidence_and_oos_fall_back(trained):
    router, _, _ = trained
    gibberish = router.route("zxqv blorp fnord")
    assert gibberish.fallback and gibberish.route == "fallback" and gibberish.agent == "general"
    assert gibberish.fallback_reason in {"low_confidence", "out_of_scope"}
    assert gibberish.decided_label == "oos"


def test_threshold_is_applied_exactly(trained, agents):
    router, _, val = trained
    decisions = router.route_batch(val["text"])
    classifier = decisions[decisions["rule"] == ""]
    low = classifier["confidence"] < router.threshold
    assert (classifier.loc[low, "fallback_reason"] == "low_confidence").all()
    confident = classifier[~low]
    expected = [agents.route_for_label(lab) for lab in confident["pred_label"]]
    assert confident["route"].tolist() == expected


def test_fast_path_equals_predict_proba(trained):
    router, _, val = trained
    texts = val["text"].tolist()[:300] + ["", "a", "THE CAR!!", "ünïcödé café"]
    batch = router.classifier.predict_proba(texts)
    single = np.vstack([router.classifier.predict_proba_one(t) for t in texts])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-12)


def test_batch_path_equals_the_fitted_pipeline_bit_for_bit(trained, agents):
    """The router's batch features (lib/router/textfeatures.py) are the pipeline's own, to the last bit."""
    router, _, _ = trained
    texts = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents)["text"].tolist()
    texts += ["", " ", "a", "THE CAR!!", "ünïcödé café", "ΟΔΟΣ ΣΑΣ", "tab\there\u00a0nbsp  runs", "İstanbul"]
    pipeline = router.classifier.pipeline
    got, want = router.classifier._fast.transform(texts), pipeline.named_steps["features"].transform(texts)
    for attr in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(got, attr), getattr(want, attr))
    np.testing.assert_array_equal(router.classifier.predict_proba(texts), pipeline.predict_proba(texts))


def test_single_and_batch_decisions_agree_and_repeat(trained):
    router, _, val = trained
    texts = val["text"].tolist()[:200]
    batch = router.route_batch(texts)
    singles = pd.DataFrame([router.route(t).to_dict() for t in texts])
    pd.testing.assert_frame_equal(batch.drop(columns="confidence"), singles[batch.columns].drop(columns="confidence"))
    np.testing.assert_allclose(batch["confidence"], singles["confidence"], atol=1e-12)
    pd.testing.assert_frame_equal(batch, router.route_batch(texts))


def test_training_is_deterministic(trained, agents):
    router, report, val = trained
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents).groupby("label", group_keys=False).head(25)
    st = TrainSettings.from_config(raw)
    again, report2 = train_router(
        train,
        val,
        agents,
        rules_from_config(raw, agents),
        TrainSettings(
            c=st.c, max_iter=100, tol=st.tol, seed=st.seed, threshold_grid=st.threshold_grid, calibration=VALIDATION
        ),
    )
    assert report2["threshold"] == report["threshold"]
    pd.testing.assert_frame_equal(again.route_batch(val["text"]), router.route_batch(val["text"]))


def test_threshold_report_and_curve(trained):
    _, report, _ = trained
    curve = report["threshold_curve"]
    assert {"threshold", "in_scope_accuracy", "fallback_recall", "label_accuracy"} <= set(curve.columns)
    best = curve["label_accuracy"].max()
    assert curve.loc[curve["threshold"] == report["threshold"], "label_accuracy"].iloc[0] == best
    assert 0 < report["val_in_scope_accuracy"] <= 1


def test_text_features_for_drift(trained):
    router, _, _ = trained
    feats = router.text_features(["transfer money to savings", "qwzx plorf", ""])
    assert list(feats.columns[:3]) == ["text_length", "word_count", "oov_rate"]
    assert [c for c in feats.columns if c.startswith("proj_")] == [f"proj_{i}" for i in range(8)]
    assert feats["oov_rate"].tolist()[:2] == [0.0, 1.0]
    assert feats.loc[2, "word_count"] == 0


def test_config_errors_are_clear(agents):
    with pytest.raises(ConfigError, match="rule 'bad': invalid regular expression"):
        Rule.create("bad", ["("], "contract_summary")
    with pytest.raises(ConfigError, match=r"'rules' moved to the agent map.*agents.<agent>.rules"):
        rules_from_config({"rules": [{"name": "x", "all": ["a"], "label": "nope"}]}, agents)
    with pytest.raises(
        ConfigError, match=r"agents.a.rules\[0\]: rule 'x' sets label 'y', which is not one of agent 'a''s"
    ):
        AgentRegistry.from_dict(
            {"agents": {"a": {"labels": ["x"], "rules": [{"name": "x", "all": ["z"], "label": "y"}]}}}
        )
    with pytest.raises(ConfigError, match="listed under both"):
        AgentRegistry.from_dict({"agents": {"a": {"labels": ["x"]}, "b": {"labels": ["x"]}}})
    with pytest.raises(ConfigError, match="agent registry file not found"):
        load_agent_registry("/nonexistent/agents.yaml")


def test_registry_routes(agents):
    assert agents.route_for_label("weather") == "fallback"
    assert agents.route_for_label("oos") == "fallback"
    assert agents.route_for_label("transfer") == "banking"
    assert agents.route_for_label("contract_summary") == "contracts"
    assert "weather" in agents.known_labels and "fallback" in agents.routes


def test_serving_bundle_routes_exactly_like_the_router(trained, tmp_path):
    """The sklearn-free serving path (fast CLI cold start) gives the router's decisions."""
    from agent_pipeline.lib.serving import bundle as serving

    router, _, val = trained
    path = serving.export(router, "agent-router", "7", tmp_path / "champion.npz")
    assert serving.read_bundle(path)["format"] == 1  # TF-IDF blocks only: readable by every version
    fast = serving.load(path)
    assert (fast.model_name, fast.version) == ("agent-router", "7")
    texts = val["text"].tolist() + [
        "Generate contract summary",
        "What is the weather today?",
        "  Two   spaces\tand TAB ",
        "",
    ]
    for text in texts:
        want, got = router.route(text).to_dict(), fast.route(text)
        assert abs(want.pop("confidence") - got.pop("confidence")) < 1e-12, text
        assert got == want, text


def test_batch_path_handles_rules_and_every_fallback_reason(trained):
    router, _, _ = trained
    texts = [
        "Generate contract summary",
        "please review this contract clause",
        "What is the weather today?",
        "zxqv blorp fnord",
        "transfer 100 dollars from checking to savings",
        "",
    ]
    batch = router.route_batch(texts)
    for i, text in enumerate(texts):
        want = router.route(text).to_dict()
        got = batch.iloc[i].to_dict()
        assert abs(got.pop("confidence") - want.pop("confidence")) < 1e-12, text
        assert {k: (bool(v) if k == "fallback" else v) for k, v in got.items()} == want, text
