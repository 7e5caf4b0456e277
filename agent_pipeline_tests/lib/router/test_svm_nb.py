"""The fast tier's opt-in model (fast_model: svm_nb): LinearSVC + MultinomialNB as one linear model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import LinearSVC

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.router.agents import ConfigError, load_agent_registry, load_yaml
from agent_pipeline.lib.router.model import COUNTS_BLOCK, TextClassifier, TrainSettings
from agent_pipeline.lib.router.svm_nb import SvmNbBlend


@pytest.fixture(scope="module")
def data():
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents).groupby("label", group_keys=False).head(20)
    val = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents).groupby("label", group_keys=False).head(4)
    return train, val


@pytest.fixture(scope="module")
def fast(data):
    train, _ = data
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    assert TrainSettings.from_config(raw).fast_model == "logistic_regression"  # svm_nb is opt-in
    return TextClassifier.fit(
        train["text"], train["label"], replace(TrainSettings.from_config(raw), fast_model="svm_nb")
    )


def test_svm_nb_is_a_blend_over_tfidf_and_char_counts(fast):
    names = [name for name, _ in fast.pipeline.named_steps["features"].transformer_list]
    assert names == ["word", "char", COUNTS_BLOCK]
    assert isinstance(fast.pipeline.named_steps["clf"], SvmNbBlend)
    assert [name for name, _ in fast.tfidf_features.transformer_list] == ["word", "char"]  # what accurate uses


def test_blend_is_the_weighted_sum_of_a_linear_svc_and_a_naive_bayes(data, fast):
    """Refit both models on their own columns: the blend's probabilities are exactly their mix."""
    train, val = data
    clf = fast.pipeline.named_steps["clf"]
    x, xv = fast._fast.transform(train["text"].tolist()), fast._fast.transform(val["text"].tolist())
    split = x.shape[1] - clf.nb_features
    svm = LinearSVC(C=clf.C, random_state=clf.random_state).fit(x[:, :split], train["label"])
    nb = MultinomialNB(alpha=clf.alpha).fit(x[:, split:], train["label"])
    z = (1 - clf.nb_weight) * clf.temperature * svm.decision_function(xv[:, :split])
    z += clf.nb_weight * clf.nb_temperature * nb.predict_joint_log_proba(xv[:, split:])
    z -= z.max(axis=1, keepdims=True)
    want = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(fast.predict_proba(val["text"].tolist()), want, rtol=0, atol=1e-12)
    assert (clf.predict(xv) == clf.classes_[want.argmax(1)]).all()


def test_single_request_path_and_pipeline_agree_with_the_batch_path(data, fast):
    _, val = data
    texts = val["text"].tolist()[:100] + ["", "a", "THE CAR!!", "ünïcödé café", "x" * 500]
    batch = fast.predict_proba(texts)
    np.testing.assert_array_equal(batch, fast.pipeline.predict_proba(texts))
    np.testing.assert_allclose(np.vstack([fast.predict_proba_one(t) for t in texts]), batch, rtol=0, atol=1e-12)


def test_logistic_regression_is_still_available(data):
    from sklearn.linear_model import LogisticRegression

    train, val = data
    st = replace(TrainSettings(), fast_model="logistic_regression", max_iter=50)
    clf = TextClassifier.fit(train["text"], train["label"], st)
    assert [name for name, _ in clf.pipeline.named_steps["features"].transformer_list] == ["word", "char"]
    assert isinstance(clf.pipeline.named_steps["clf"], LogisticRegression)
    texts = val["text"].tolist()[:50]
    np.testing.assert_allclose(
        np.vstack([clf.predict_proba_one(t) for t in texts]), clf.predict_proba(texts), atol=1e-12
    )


def test_fast_model_settings_are_read_and_checked():
    cfg = TrainSettings.from_config(
        {
            "classifier": {
                "fast_model": "svm_nb",
                "svm_C": 1,
                "svm_temperature": 10,
                "nb_alpha": 0.1,
                "nb_weight": 0.5,
                "nb_temperature": 0.05,
            }
        }
    )
    assert (cfg.svm_c, cfg.svm_temperature, cfg.nb_alpha, cfg.nb_weight, cfg.nb_temperature) == (
        1.0,
        10.0,
        0.1,
        0.5,
        0.05,
    )
    with pytest.raises(ConfigError, match="classifier.fast_model 'forest' is not one of svm_nb, logistic_regression"):
        TrainSettings.from_config({"classifier": {"fast_model": "forest"}})
    with pytest.raises(ConfigError, match="classifier.nb_weight must be in"):
        TrainSettings.from_config({"classifier": {"nb_weight": 1.5}})
    with pytest.raises(ConfigError, match="classifier.svm_C must be > 0"):
        TrainSettings.from_config({"classifier": {"svm_C": 0}})


def test_nb_features_must_name_trailing_columns():
    x = np.abs(np.random.default_rng(0).normal(size=(6, 4)))
    with pytest.raises(ValueError, match="nb_features must be in 1..3"):
        SvmNbBlend(nb_features=0).fit(x, ["a", "b", "c"] * 2)
    two = SvmNbBlend(nb_features=2, random_state=0).fit(x, ["a", "b"] * 3)  # binary: two symmetric rows
    assert two.coef_.shape == (2, 4) and np.allclose(two.predict_proba(x).sum(1), 1.0)


def test_serving_bundle_runs_the_blend_with_its_counts_block(data, fast, tmp_path):
    """The bundle stores the counts block (no idf, no norm) like any other and routes the same."""
    from agent_pipeline.lib.router.model import Router
    from agent_pipeline.lib.serving import bundle as serving

    _, val = data
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    router = Router(fast, agents, [], threshold=0.3)
    path = serving.export(router, "agent-router", "3", tmp_path / "champion.npz")
    assert serving.read_bundle(path)["format"] == 2  # a reader that knows only format 1 refuses it at load
    bundle = serving.load(path)
    for text in val["text"].tolist()[:80] + ["", "transfer   money\tnow"]:
        want, got = router.route(text).to_dict(), bundle.route(text)
        assert abs(want.pop("confidence") - got.pop("confidence")) < 1e-12, text
        assert got == want, text


def test_cascade_with_svm_nb_builds_accurate_on_tfidf_only_and_reloads(tmp_path):
    """accurate never sees the NB counts: fit, both paths and a pickle round trip."""
    import io

    import joblib

    from agent_pipeline.lib.router.model import rules_from_config, train_router

    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    pick = lambda df, n: df[df["domain"].isin(("banking", "utility", "oos"))].groupby("label", group_keys=False).head(n)  # noqa: E731
    train = pick(load_dataset(settings.DEFAULT_TRAIN_DATA, agents), 10)
    val = pick(load_dataset(settings.DEFAULT_VALIDATION_DATA, agents), 3)
    st = replace(
        TrainSettings.from_config(raw), tier="cascade", fast_model="svm_nb", cascade_threshold=0.95, max_iter=100
    )
    router, _ = train_router(train, val, agents, rules_from_config(raw, agents), st, tmp_path / "embeddings")
    cascade = router.classifier
    assert [n for n, _ in cascade.fast.pipeline.named_steps["features"].transformer_list] == [
        "word",
        "char",
        COUNTS_BLOCK,
    ]
    assert [n for n, _ in cascade.accurate.features.transformer_list] == ["word", "char"]
    n_tfidf = sum(len(t.vocabulary_) for _, t in cascade.accurate.features.transformer_list)
    assert cascade.accurate.clf.coef_.shape[1] == n_tfidf + int(cascade.accurate.embedding["dim"])
    texts = val["text"].tolist()[:40] + ["", "transfer 100 dollars to savings"]
    batch = cascade.predict_proba(texts)
    np.testing.assert_allclose(np.vstack([cascade.predict_proba_one(t) for t in texts]), batch, rtol=0, atol=1e-5)
    buf = io.BytesIO()
    joblib.dump(router, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).classifier.predict_proba(texts), batch)
