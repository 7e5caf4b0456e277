"""Tests for ``agent_pipeline.lib.monitoring.drift``: the verdict on real CLINC150 traffic scenarios, and the API.

The scenarios use a stand-in featurizer trained once per module (TF-IDF word 1-2 grams, an
8-dimensional TruncatedSVD projection and a quick logistic regression, all fit on ``train.csv``),
so they do not depend on the router module. A request falls back when its confidence is
below 0.4 or its predicted label is ``oos``, as in the router.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from agent_pipeline.lib.core.settings import DEFAULT_TRAFFIC_POOL, DEFAULT_TRAIN_DATA, DEFAULT_VALIDATION_DATA
from agent_pipeline.lib.monitoring.drift import (
    DEFAULT_NUMERICAL,
    DriftResult,
    compute_drift,
)
from agent_pipeline.lib.router.agents import FALLBACK_ROUTE, OOS_LABEL

N = 1500
FALLBACK_BELOW = 0.4
K = 8


class StandInRouter:
    """Adds the router's monitoring columns to a frame of texts (see module docstring)."""

    def __init__(self) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        train = pd.read_csv(DEFAULT_TRAIN_DATA)
        self.domains = json.loads((DEFAULT_TRAIN_DATA.parent / "domains.json").read_text())
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        features = self.vectorizer.fit_transform(train["text"])
        self.svd = TruncatedSVD(K, random_state=0).fit(features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 5 epochs of saga: quick, good enough
            self.classifier = LogisticRegression(C=100, solver="saga", max_iter=5, random_state=0)
            self.classifier.fit(features, train["label"])
        self.vocabulary = {term for term in self.vectorizer.vocabulary_ if " " not in term}
        self.token = re.compile(r"(?u)\b\w\w+\b")

    def featurize(self, texts: pd.Series) -> pd.DataFrame:
        features = self.vectorizer.transform(texts)
        proba = self.classifier.predict_proba(features)
        confidence = proba.max(axis=1)
        label = self.classifier.classes_[proba.argmax(axis=1)]
        fallback = (confidence < FALLBACK_BELOW) | (label == OOS_LABEL)
        domain = np.array([self.domains.get(x, FALLBACK_ROUTE) for x in label])
        words = [self.token.findall(t.lower()) for t in texts]
        out = pd.DataFrame(
            {
                "text": texts.to_numpy(),
                "route": np.where(fallback, FALLBACK_ROUTE, domain),
                "fallback": fallback,
                "confidence": confidence,
                "text_length": texts.str.len().to_numpy(),
                "word_count": texts.str.split().str.len().to_numpy(),
                "oov_rate": [sum(w not in self.vocabulary for w in ws) / len(ws) if ws else 0.0 for ws in words],
            }
        )
        projection = self.svd.transform(features)
        for i in range(K):
            out[f"proj_{i}"] = projection[:, i]
        return out


@pytest.fixture(scope="module")
def traffic() -> dict[str, pd.DataFrame]:
    """Featurized validation rows and traffic-pool rows, one frame per scenario."""
    router = StandInRouter()
    pool = pd.read_csv(DEFAULT_TRAFFIC_POOL)
    frames = {name: router.featurize(rows["text"].reset_index(drop=True)) for name, rows in pool.groupby("pool")}
    frames["val"] = router.featurize(pd.read_csv(DEFAULT_VALIDATION_DATA)["text"])
    return frames


def _day(traffic: dict[str, pd.DataFrame], seed: int, extra: str | None = None, share: float = 0.0) -> pd.DataFrame:
    """``N`` rows of stable traffic (1450 exist, so drawn with replacement), ``share`` of them from ``extra``."""
    n_extra = int(round(N * share))
    parts = [traffic["stable"].sample(N - n_extra, replace=True, random_state=seed)]
    if extra is not None:
        parts.append(traffic[extra].sample(n_extra, replace=True, random_state=seed + 1))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def reference(traffic) -> pd.DataFrame:
    return traffic["val"].sample(N, random_state=0).reset_index(drop=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_stable_days_raise_no_alarm(traffic, reference, seed):
    result = compute_drift(reference, _day(traffic, seed))

    assert result.drift_detected is False, result.reasons
    assert result.reasons == []
    assert result.drift_share < 0.5
    assert not {"route", "fallback"} & set(result.drifted_features)


def test_new_topic_day_drifts_on_text_features(traffic, reference):
    result = compute_drift(reference, _day(traffic, 1, extra="new-topic", share=0.4))

    assert result.drift_detected is True
    projections = [f for f in result.drifted_features if f.startswith("proj_")]
    assert len(projections) >= K // 2
    assert {"oov_rate", "confidence"} <= set(result.drifted_features)
    assert any("text topic" in reason for reason in result.reasons)
    assert result.summary["fallback_rate_current"] > result.summary["fallback_rate_reference"] + 0.2


def test_oos_surge_drifts_on_fallback_and_confidence(traffic, reference):
    result = compute_drift(reference, _day(traffic, 1, extra="oos", share=0.3))

    assert result.drift_detected is True
    assert {"fallback", "confidence"} <= set(result.drifted_features)
    assert "key signal 'fallback' drifted" in result.reasons
    assert result.features["fallback"].score >= result.features["fallback"].threshold
    assert result.summary["fallback_rate_change"] > 0.1


def _synthetic(n: int, seed: int, *, routes=("billing", "travel", "fallback"), p=(0.45, 0.45, 0.1), shift=0.0):
    rng = np.random.default_rng(seed)
    route = rng.choice(routes, size=n, p=p)
    frame = pd.DataFrame(
        {
            "text": ["some request"] * n,
            "route": route,
            "fallback": route == FALLBACK_ROUTE,
            "confidence": rng.beta(5, 2, n),
            "text_length": rng.normal(40, 15, n).round(),
            "word_count": rng.poisson(8, n).astype(float),
            "oov_rate": rng.beta(1, 20, n),
        }
    )
    for i in range(4):
        frame[f"proj_{i}"] = rng.normal(shift if i < 2 else 0.0, 1.0, n)
    return frame


def test_a_key_signal_alone_is_drift_even_below_the_share():
    reference = _synthetic(2000, 0)
    current = _synthetic(2000, 1, p=(0.25, 0.65, 0.1))  # the route mix moves, nothing else

    result = compute_drift(reference, current)

    assert result.drifted_features == ["route"]
    assert result.drift_share == pytest.approx(1 / len(result.features))
    assert result.drift_detected is True
    assert result.reasons == ["key signal 'route' drifted"]


def test_half_the_projections_drifting_is_a_topic_shift():
    result = compute_drift(_synthetic(2000, 0), _synthetic(2000, 1, shift=0.5))

    assert result.drifted_features == ["proj_0", "proj_1"]
    assert result.drift_detected is True
    assert result.reasons == ["text topic shifted: 2/4 projections drifted"]


def test_methods_do_not_flip_at_evidently_1000_row_boundary():
    reference = _synthetic(3000, 0)
    small = compute_drift(reference, _synthetic(900, 1), numerical=["confidence", "oov_rate"])
    large = compute_drift(reference, _synthetic(1100, 1), numerical=["confidence", "oov_rate"])

    for result in (small, large):
        assert {f.method for f in result.features.values() if f.kind == "numerical"} == {"wasserstein"}
        assert {f.method for f in result.features.values() if f.kind == "categorical"} == {"jensenshannon"}
        assert result.drift_detected is False
    assert small.features["fallback"].threshold == large.features["fallback"].threshold == 0.08


def test_large_frames_are_sampled_deterministically_but_summarised_on_all_rows():
    reference = _synthetic(1200, 0)
    current = _synthetic(5000, 1)
    current.loc[:999, "fallback"] = True  # only a full pass sees the exact rate

    columns = {"categorical": ["route"], "numerical": ["confidence"], "max_rows": 1000}
    first = compute_drift(reference, current, seed=3, **columns)
    again = compute_drift(reference, current, seed=3, **columns)
    other = compute_drift(reference, current, seed=4, **columns)

    assert (first.n_current, first.n_sampled_current) == (5000, 1000)
    assert (first.n_reference, first.n_sampled_reference) == (1200, 1000)
    assert first.to_dict() == again.to_dict()
    assert first.features["confidence"].score != other.features["confidence"].score
    assert first.summary["fallback_rate_current"] == pytest.approx(current["fallback"].mean())


def test_projection_columns_are_monitored_only_when_both_frames_have_them():
    reference = _synthetic(600, 0)
    current = _synthetic(600, 1).drop(columns=["proj_3"])

    result = compute_drift(reference, current)

    assert list(result.features) == ["route", "fallback", *DEFAULT_NUMERICAL, "proj_0", "proj_1", "proj_2"]


def test_html_report_is_written_and_results_serialise(tmp_path):
    target = tmp_path / "reports" / "2026-11-25" / "drift.html"

    result = compute_drift(_synthetic(600, 0), _synthetic(600, 1), numerical=["confidence"], html_path=target)

    assert result.html_path == str(target)
    assert target.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html>")
    assert [p.name for p in target.parent.iterdir()] == ["drift.html"]  # no temporary file left
    assert isinstance(result, DriftResult)
    assert json.loads(json.dumps(result.to_dict()))["features"]["route"]["method"] == "jensenshannon"
    meta = result.to_metadata()
    assert meta["drift_detected"] is False
    assert meta["drifted_features"] == (", ".join(result.drifted_features) or "none")
    assert meta["report_html"] == str(target)
    scores = {k: v for k, v in meta.items() if k.startswith("drift_score_")}
    assert len(scores) == len(result.features) and all(type(v) is float for v in scores.values())
    assert type(meta["fallback_rate_current"]) is float


def test_thresholds_can_be_overridden_per_feature():
    result = compute_drift(
        _synthetic(600, 0), _synthetic(600, 1), numerical=["confidence", "word_count"], thresholds={"confidence": 0.0}
    )

    assert result.features["confidence"].threshold == 0.0
    assert "confidence" in result.drifted_features


def test_missing_columns_are_named():
    reference = _synthetic(600, 0)
    current = _synthetic(600, 1).drop(columns=["oov_rate", "route"])

    with pytest.raises(ValueError, match=r"current frame is missing column\(s\) \['route', 'oov_rate'\]"):
        compute_drift(reference, current)
    with pytest.raises(ValueError, match=r"reference frame is missing column\(s\) \['route', 'oov_rate'\]"):
        compute_drift(current, reference)


def test_too_few_rows_is_an_error():
    with pytest.raises(ValueError, match="need at least 500 rows, current has 120"):
        compute_drift(_synthetic(600, 0), _synthetic(120, 1))
    with pytest.raises(ValueError, match="need at least 200 rows, reference has 120"):
        compute_drift(_synthetic(120, 0), _synthetic(600, 1), min_rows=200)


def test_bad_arguments_are_rejected():
    frame = _synthetic(600, 0)
    with pytest.raises(ValueError, match="both categorical and numerical"):
        compute_drift(frame, frame, numerical=["route", "confidence"])
    with pytest.raises(ValueError, match="must be numeric"):
        compute_drift(frame, frame, categorical=["fallback"], numerical=["text"])
    with pytest.raises(ValueError, match=r"unmonitored column\(s\) \['latency_ms'\]"):
        compute_drift(frame, frame, thresholds={"latency_ms": 0.2})
