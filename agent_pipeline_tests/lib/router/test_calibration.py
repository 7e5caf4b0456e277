"""Threshold choice by cross-validation: curves, objectives, the cascade's hand-off, config errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.router import calibration as cal
from agent_pipeline.lib.router.agents import ConfigError, load_agent_registry, load_yaml
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router

# Four in-scope rows and two out-of-scope rows, hand-checkable.
GOLD = np.array(["a", "a", "b", "b", "oos", "oos"], dtype=object)
PRED = np.array(["a", "b", "b", "oos", "a", "b"], dtype=object)
CONF = np.array([0.9, 0.4, 0.6, 0.8, 0.3, 0.7])


def test_label_curve_counts_unnecessary_fallbacks():
    curve = cal.label_curve(GOLD, PRED, CONF, np.array([0.0, 0.5, 0.65, 0.95]))
    # t=0: in-scope a/a right, a->b wrong, b/b right, b->oos fallback: 2/4 right, 1/4 fallback
    # t=0.5: the 0.4 row falls back too; t=0.65: the 0.6 row as well; t=0.95: every row falls back.
    assert curve["in_scope_accuracy"].tolist() == [0.5, 0.5, 0.25, 0.0]
    assert curve["in_scope_fallback_rate"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert curve["fallback_recall"].tolist() == [0.0, 0.5, 0.5, 1.0]  # oos rows at 0.3 and 0.7


def test_expected_cost_objective_by_hand():
    cfg = cal.CalibrationSettings(
        objective="expected_cost", oos_share=0.5, cost_misroute=1.0, cost_unnecessary_fallback=0.5
    )
    curve = cal.label_curve(GOLD, PRED, CONF, np.array([0.0, 0.5, 0.65, 0.95]))
    # cost = 0.5 * (misroute_in + 0.5 * fallback_in) + 0.5 * (1 - recall)
    expected = [
        0.5 * (0.25 + 0.5 * 0.25) + 0.5 * 1.0,
        0.5 * (0.0 + 0.5 * 0.5) + 0.5 * 0.5,
        0.5 * (0.0 + 0.5 * 0.75) + 0.5 * 0.5,
        0.5 * (0.0 + 0.5 * 1.0) + 0.5 * 0.0,
    ]
    np.testing.assert_allclose(-cal.score(curve, cfg), expected)
    assert cal.choose(curve, cfg) == int(np.argmin(expected))
    # misroutes cheap, unnecessary fallbacks dear: the lowest threshold wins
    cheap = replace(cfg, cost_misroute=0.1, cost_unnecessary_fallback=1.0)
    assert cal.choose(curve, cheap) == 0


def test_recall_constraint_and_unreachable_recall():
    curve = cal.label_curve(GOLD, PRED, CONF, np.array([0.0, 0.5, 0.65, 0.95]))
    cfg = cal.CalibrationSettings(objective="in_scope_at_fallback_recall", min_fallback_recall=0.5)
    i = cal.choose(curve, cfg)
    assert curve["threshold"].iloc[i] == 0.5 and cal.constraint_met(curve.iloc[i], cfg)
    # a recall the curve never reaches: the most recall on offer, reported as not met
    tight = cal.label_curve(GOLD, PRED, CONF, np.array([0.0, 0.5]))
    j = cal.choose(tight, replace(cfg, min_fallback_recall=0.9))
    assert not cal.constraint_met(tight.iloc[j], replace(cfg, min_fallback_recall=0.9))


def test_cascade_choice_simulates_the_cascade_and_keeps_the_handoff_budget():
    classes = np.array(["a", "b", "oos"], dtype=object)
    gold = np.array(["a", "a", "b", "b", "oos", "a"], dtype=object)
    fast = np.array(
        [[0.9, 0.05, 0.05], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]]
    )
    accurate = np.array(
        [
            [0.95, 0.03, 0.02],
            [0.9, 0.05, 0.05],
            [0.1, 0.85, 0.05],
            [0.1, 0.85, 0.05],
            [0.1, 0.1, 0.8],
            [0.85, 0.1, 0.05],
        ]
    )
    oof = cal.OutOfFold(gold, classes, fast, accurate, 2, 0.0)
    cfg = cal.CalibrationSettings(
        objective="label_accuracy", cascade_grid=(0.5, 0.95, 0.05), grid=(0.05, 0.5, 0.05), max_handoff_share=1.0
    )
    result = cal.choose_thresholds(oof, "cascade", cfg)
    # from 0.55 the two rows fast is unsure of (0.5) go to accurate, which gets them right: the
    # lowest such hand-off threshold wins
    assert result.at["label_accuracy"] == 1.0 and result.cascade_threshold == 0.55
    assert result.at["handoff_share"] == pytest.approx(2 / 6)
    # a hand-off budget of 20 %: only 0.5 (fast answers everything) fits, and two rows are wrong
    budget = cal.choose_thresholds(oof, "cascade", replace(cfg, max_handoff_share=0.2))
    assert budget.cascade_threshold == 0.5 and budget.at["handoff_share"] == 0.0
    row = budget.cascade_curve.loc[budget.cascade_curve["cascade_threshold"] == budget.cascade_threshold].iloc[0]
    assert row["handoff_share"] == 0.0 and budget.at["label_accuracy"] == pytest.approx(4 / 6)
    assert budget.at["handoff_budget_met"] == 1.0
    # no hand-off threshold on the grid within budget: the smallest share is taken, and flagged
    over = cal.choose_thresholds(oof, "cascade", replace(cfg, max_handoff_share=0.1, cascade_grid=(0.9, 0.95, 0.05)))
    assert over.cascade_threshold == 0.9 and over.at["handoff_share"] == pytest.approx(5 / 6)
    assert over.at["handoff_budget_met"] == 0.0


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"method": "test_set"}, "method"),
        ({"objective": "vibes"}, "objective"),
        ({"folds": 1}, "folds"),
        ({"oos_share": 1.5}, "oos_share"),
        ({"max_handoff_share": 2}, "max_handoff_share"),
        ({"grid_start": 0.9, "grid_stop": 0.1}, "grid"),
    ],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"threshold\.{key}"):
        cal.CalibrationSettings.from_config(raw)


def test_router_config_declares_the_objective():
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    st = TrainSettings.from_config(raw)
    assert st.calibration.method == "cross_validation"
    assert st.calibration.objective == raw["threshold"]["objective"]
    assert st.threshold_objective == st.calibration.objective


@pytest.fixture(scope="module")
def small():
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")

    def pick(df, n):
        return df[df["domain"].isin(("banking", "utility", "travel", "oos"))].groupby("label", group_keys=False).head(n)

    train = pick(load_dataset(settings.DEFAULT_TRAIN_DATA, agents), 30)
    val = pick(load_dataset(settings.DEFAULT_VALIDATION_DATA, agents), 8)
    st = replace(TrainSettings.from_config(raw), tier="fast", max_iter=100, calibration=replace(
        TrainSettings.from_config(raw).calibration, folds=3
    ))  # fmt: skip
    return agents, raw, train, val, st


def test_cross_validated_threshold_in_train_router(small):
    agents, raw, train, val, st = small
    router, report = train_router(train, val, agents, rules_from_config(raw, agents), st)
    cv = report["cv_curve"]
    # the threshold is the objective's best on the out-of-fold curve, not on validation
    assert router.threshold == report["threshold"] == cv["threshold"].iloc[cal.choose(cv, st.calibration)]
    assert report["cv_rows"] == len(train) + len(val) and report["cv_folds"] == 3
    assert report["cv_oos_rows"] == int((train["label"] == "oos").sum() + (val["label"] == "oos").sum())
    at = cv.loc[np.isclose(cv["threshold"], router.threshold)].iloc[0]
    assert report["cv_in_scope_accuracy"] == pytest.approx(at["in_scope_accuracy"])
    # out-of-fold probabilities are honest: worse than the final model on its own training data
    proba = router.classifier.predict_proba(train["text"].tolist())
    in_sample = float((router.classifier.classes_[proba.argmax(1)] == train["label"].to_numpy()).mean())
    assert report["cv_in_scope_accuracy"] < in_sample
    # validation numbers are reported at the chosen threshold
    vcurve = report["threshold_curve"]
    vat = vcurve.loc[np.isclose(vcurve["threshold"], router.threshold)].iloc[0]
    assert report["val_in_scope_accuracy"] == vat["in_scope_accuracy"]
    assert router.describe()["threshold_choice"]["objective"] == st.calibration.objective


def test_out_of_fold_is_deterministic_and_covers_every_row(small):
    _, _, train, val, st = small
    data = pd.concat([train, val], ignore_index=True)
    a = cal.out_of_fold(data["text"], data["label"], st, folds=2)
    b = cal.out_of_fold(data["text"], data["label"], st, folds=2)
    np.testing.assert_array_equal(a.fast, b.fast)
    np.testing.assert_allclose(a.fast.sum(axis=1), 1.0)  # every row scored by exactly one fold model
    assert a.accurate is None and a.folds == 2


def test_folds_in_worker_processes_equal_folds_in_one(small):
    _, _, train, val, st = small
    data = pd.concat([train, val], ignore_index=True)
    one = cal.out_of_fold(data["text"], data["label"], replace(st, calibration=replace(st.calibration, jobs=1)))
    two = cal.out_of_fold(data["text"], data["label"], replace(st, calibration=replace(st.calibration, jobs=2)))
    np.testing.assert_array_equal(one.fast, two.fast)
    assert len(two.fold_seconds) == two.folds == 3


def test_labels_only_validation_has_are_scored_never_fitted(small):
    """A tuning pool of out-of-scope texts (validation only) must not teach the folds an ``oos``
    class the final model, fitted on train, will not have."""
    _, _, train, val, st = small
    train = train[train["label"] != "oos"]
    data = pd.concat([train, val], ignore_index=True)
    oof = cal.out_of_fold(data["text"], data["label"], st, fit_labels=frozenset(train["label"]))
    oos_column = list(oof.classes).index("oos")
    assert (oof.fast[:, oos_column] == 0).all()  # no fold model knows the label
    assert (oof.labels == "oos").sum() == (val["label"] == "oos").sum()  # and its rows are still scored
