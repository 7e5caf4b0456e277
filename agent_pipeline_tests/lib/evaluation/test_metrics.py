"""Tests for agent_pipeline.lib.evaluation.metrics: hand-computed metrics on small item frames, the baseline
comparison, the threshold curve against a naive loop, the decisions fingerprint, timing helpers."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from agent_pipeline.lib.evaluation.metrics import (
    HEADLINE,
    batch_throughput,
    compare_to_baseline,
    compute_metrics,
    confusion_markdown,
    decisions_fingerprint,
    failing_cases,
    finite_metrics,
    latency_profile,
    per_route_metrics,
    threshold_curve,
    with_outcomes,
)

COLUMNS = ["id", "text", "label", "expected_route", "tags", "pred_label", "decided_label", "route", "agent",
           "confidence", "fallback", "fallback_reason", "rule"]  # fmt: skip

# (id, text, label, expected_route, tags, pred_label, decided_label, route, confidence, fallback_reason, rule)
_ROWS = [
    ("g1", "Generate contract summary", "contract_summary", "contracts", "critical;rule", "contract_summary", "contract_summary", "contracts", 1.0, "", "contract_summary"),
    ("g2", "What is the weather today?", "weather", "fallback", "critical", "weather", "weather", "fallback", 0.9, "no_agent", ""),
    ("g3", "what's my balance", "balance", "banking", "", "balance", "balance", "banking", 0.9, "", ""),
    ("g4", "transfer money to mom", "transfer", "banking", "critical", "transfer", "oos", "fallback", 0.2, "low_confidence", ""),
    ("g5", "book a flight to rome", "book_flight", "travel", "", "book_hotel", "book_hotel", "travel", 0.8, "", ""),
    ("g6", "tell me a joke about cheese", "oos", "fallback", "", "oos", "oos", "fallback", 0.7, "out_of_scope", ""),
    ("g7", "how do I cook rice", "oos", "fallback", "", "balance", "balance", "banking", 0.95, "", ""),
    ("g8", "i lost my card", "report_lost_card", "credit_cards", "", "report_lost_card", "oos", "fallback", 0.3, "low_confidence", ""),
]  # fmt: skip


def make_items(rows=_ROWS) -> pd.DataFrame:
    records = []
    for id_, text, label, expected, tags, pred, decided, route, conf, reason, rule in rows:
        agent = "general" if route == "fallback" else route
        records.append(
            (id_, text, label, expected, tags, pred, decided, route, agent, conf, route == "fallback", reason, rule)
        )
    return pd.DataFrame(records, columns=COLUMNS)


@pytest.fixture
def items() -> pd.DataFrame:
    return make_items()


def test_compute_metrics_matches_hand_computed_values(items):
    m = compute_metrics(items)
    assert m["n"] == 8.0
    assert m["label_accuracy"] == pytest.approx(4 / 8)  # g1 g2 g3 g6
    assert m["in_scope_accuracy"] == pytest.approx(3 / 6)  # a low-confidence fallback (g4, g8) counts as wrong
    assert m["fallback_recall"] == pytest.approx(1 / 2)  # g6 caught, g7 not
    assert m["fallback_precision"] == pytest.approx(1 / 3)  # decided oos: g4 g6 g8
    assert m["route_accuracy"] == pytest.approx(5 / 8)  # g5 routes right despite the wrong label
    assert m["route_fallback_recall"] == pytest.approx(2 / 3)  # expected fallback g2 g6 g7
    assert m["route_fallback_precision"] == pytest.approx(2 / 4)  # routed fallback g2 g4 g6 g8
    # per-label F1: cs 1, weather 1, balance 2/3, transfer 0, book_flight 0, oos 2/5, report_lost_card 0
    assert m["macro_f1"] == pytest.approx(46 / 105)
    # per-route F1: contracts 1, fallback 4/7, banking 1/2, travel 1, credit_cards 0
    assert m["route_macro_f1"] == pytest.approx(43 / 70)
    assert (m["n_critical"], m["n_critical_failed"]) == (3.0, 1.0)
    assert m["critical_pass_rate"] == pytest.approx(2 / 3)
    assert set(HEADLINE) <= set(m)
    assert all(isinstance(v, float) for v in m.values())


def test_metrics_agree_with_sklearn_on_random_items():
    rng = np.random.default_rng(7)
    n = 400
    labels = np.array(["a", "b", "c", "d", "oos"], dtype=object)
    gold = rng.choice(labels, n)
    decided = np.where(rng.random(n) < 0.6, gold, rng.choice(np.append(labels, "e"), n))
    route_of = {"a": "r1", "b": "r1", "c": "r2", "d": "fallback", "e": "r3", "oos": "fallback"}
    items = pd.DataFrame({"label": gold, "decided_label": decided, "tags": "",
                          "expected_route": [route_of[x] for x in gold], "route": [route_of[x] for x in decided]})  # fmt: skip
    m = compute_metrics(items)
    expected_f1 = f1_score(gold, decided, average="macro", labels=sorted(set(gold)), zero_division=0)
    assert m["macro_f1"] == pytest.approx(expected_f1)
    routes_gold = sorted(set(items["expected_route"]))
    assert m["route_macro_f1"] == pytest.approx(
        f1_score(items["expected_route"], items["route"], average="macro", labels=routes_gold, zero_division=0)
    )
    table = per_route_metrics(items)
    p, r, f, s = precision_recall_fscore_support(
        items["expected_route"], items["route"], labels=list(table["route"]), zero_division=0
    )
    assert list(table["route"]) == ["fallback", "r1", "r2", "r3"]  # r3 is taken but never expected
    assert np.allclose(table["f1"], f)
    assert list(table["support"]) == list(s)
    assert np.allclose(table["precision"], p)
    assert math.isnan(table.loc[table["route"] == "r3", "recall"].item())
    assert np.allclose(table["recall"].iloc[:3], r[:3])


def test_undefined_metrics_are_nan_and_dropped_from_float_metadata(items):
    in_scope_only = items[items["label"] != "oos"]
    m = compute_metrics(in_scope_only.assign(tags=""))
    assert math.isnan(m["fallback_recall"])  # no oos case: recall is undefined, not 0 or 1
    assert math.isnan(m["fallback_precision"])  # nothing out of scope to catch: undefined, not 0.0
    assert math.isnan(m["critical_pass_rate"]) and m["n_critical"] == 0.0  # undefined, not a vacuous 1.0
    floats = finite_metrics(m)
    assert "fallback_recall" not in floats and "fallback_precision" not in floats and "critical_pass_rate" not in floats
    assert finite_metrics({"a": None, "b": float("inf"), "c": np.float64(0.5), "d": 2}) == {"c": 0.5, "d": 2.0}

    empty = compute_metrics(items.iloc[0:0])
    assert empty["n"] == 0.0
    assert all(math.isnan(empty[k]) for k in HEADLINE)
    assert finite_metrics(empty) == {"n": 0.0, "n_critical": 0.0, "n_critical_failed": 0.0}


def test_missing_column_is_named(items):
    with pytest.raises(ValueError, match=r"compute_metrics: items frame lacks column\(s\) tags"):
        compute_metrics(items.drop(columns="tags"))
    with pytest.raises(ValueError, match="by must be 'route' or 'label'"):
        confusion_markdown(items, by="agent")


def test_with_outcomes_adds_columns_without_mutating(items):
    out = with_outcomes(items)
    assert list(out.loc[~out["passed"], "id"]) == ["g4", "g7", "g8"]
    assert list(out.loc[out["label_correct"], "id"]) == ["g1", "g2", "g3", "g6"]
    assert "passed" not in items.columns


def test_per_route_metrics_hand_computed(items):
    table = per_route_metrics(items)
    assert list(table.columns) == ["route", "precision", "recall", "f1", "support"]
    rows = {r.route: r for r in table.itertuples()}
    assert list(table["route"]) == ["banking", "contracts", "credit_cards", "fallback", "travel"]
    assert (rows["banking"].precision, rows["banking"].recall, rows["banking"].support) == (0.5, 0.5, 2)
    assert rows["fallback"].f1 == pytest.approx(4 / 7) and rows["fallback"].recall == pytest.approx(2 / 3)
    assert math.isnan(rows["credit_cards"].precision) and rows["credit_cards"].recall == 0.0  # never routed there


def test_confusion_markdown_rows_gold_columns_predicted(items):
    assert confusion_markdown(items) == "\n".join(
        [
            "| expected_route \\ route | banking | contracts | fallback | travel |",
            "|---|---|---|---|---|",
            "| banking | 1 | 0 | 1 | 0 |",
            "| contracts | 0 | 1 | 0 | 0 |",
            "| credit_cards | 0 | 0 | 1 | 0 |",
            "| fallback | 1 | 0 | 2 | 0 |",
            "| travel | 0 | 0 | 0 | 1 |",
        ]
    )
    by_label = confusion_markdown(items, by="label").splitlines()
    assert by_label[0].startswith(
        "| label \\ decided_label | balance | book_hotel | contract_summary | oos | weather |"
    )
    assert "| oos | 1 | 0 | 0 | 1 | 0 |" in by_label


def test_failing_cases_lists_wrong_routes_in_order(items):
    failing = failing_cases(items)
    assert list(failing.columns) == ["id", "text", "expected_route", "route", "label", "decided_label", "confidence"]
    assert list(failing["id"]) == ["g4", "g7", "g8"]
    assert list(failing_cases(items, limit=2)["id"]) == ["g4", "g7"]


def _route_changed(items: pd.DataFrame, ids: dict[str, str]) -> pd.DataFrame:
    out = items.copy()
    for id_, route in ids.items():
        out.loc[out["id"] == id_, "route"] = route
    return out


def test_tolerance_boundary_is_inclusive_and_summary_names_the_drop(items):
    base = {"route_accuracy": 0.8}
    at_boundary = compare_to_baseline({"route_accuracy": 0.7}, base, items, items, {"route_accuracy": 0.1})
    assert at_boundary.passed and at_boundary.summary() == "ok"  # 0.8 - 0.1 == 0.7 despite float noise
    below = compare_to_baseline({"route_accuracy": 0.69}, base, items, items, {"route_accuracy": 0.1})
    assert not below.passed
    (delta,) = below.deltas
    assert (delta.metric, delta.ok) == ("route_accuracy", False) and delta.delta == pytest.approx(-0.11)
    assert below.summary() == "route_accuracy dropped 0.110 (tolerance 0.1)"
    assert compare_to_baseline({"route_accuracy": 0.95}, base, items, items, {"route_accuracy": 0.0}).passed


def test_missing_or_undefined_metrics_are_skipped(items):
    report = compare_to_baseline(
        {"route_accuracy": 0.5, "macro_f1": 0.1, "fallback_recall": float("nan")},
        {"route_accuracy": 0.5, "fallback_recall": 0.9},
        items,
        items,
        {"route_accuracy": 0.0, "macro_f1": 0.0, "fallback_recall": 0.0},
    )
    assert report.passed
    assert [d.metric for d in report.deltas] == ["route_accuracy"]
    assert report.skipped == ("macro_f1", "fallback_recall")
    assert "Not compared (missing or undefined on one side): macro_f1, fallback_recall" in report.markdown()


def test_newly_failing_cases_are_named(items):
    baseline = items[items["id"] != "g8"]  # g8 only in the candidate: not compared
    # candidate: g2 and g3 break, g4 (failed in baseline) is fixed, g5 is missing
    candidate = _route_changed(items, {"g2": "banking", "g3": "travel", "g4": "banking"})
    candidate = candidate[candidate["id"] != "g5"]
    metrics = compute_metrics(items)
    report = compare_to_baseline(metrics, metrics, candidate, baseline, {"route_accuracy": 0.01})
    assert list(report.newly_failing["id"]) == ["g2", "g3"]
    assert report.newly_failing.loc[0, "route"] == "banking"
    assert (report.newly_passing, report.compared_cases) == (1, 6)
    assert not report.passed
    assert report.summary() == "2 cases newly fail: g2, g3"
    md = report.markdown()
    assert "| metric | baseline | candidate | delta | tolerance | ok |" in md
    assert "| g2 | What is the weather today? | fallback | banking |" in md

    allowed = compare_to_baseline(metrics, metrics, candidate, baseline, {"route_accuracy": 0.01}, max_new_failures=2)
    assert allowed.passed and allowed.summary() == "ok; 2 cases newly fail: g2, g3 (allowed 2)"


def test_compare_rejects_duplicate_ids_and_negative_tolerance(items):
    doubled = pd.concat([items, items.iloc[[0]]])
    with pytest.raises(ValueError, match="baseline items have duplicate id 'g1'"):
        compare_to_baseline({}, {}, items, doubled, {})
    with pytest.raises(ValueError, match="tolerance for 'route_accuracy' must be a finite number >= 0"):
        compare_to_baseline({}, {}, items, items, {"route_accuracy": -0.1})


def _naive_curve(labels, preds, confs, thresholds, oos="oos") -> pd.DataFrame:
    rows = []
    for t in thresholds:
        decided = [p if (c >= t and p != oos) else oos for p, c in zip(preds, confs)]
        in_scope = [(g, d) for g, d in zip(labels, decided) if g != oos]
        oos_rows = [d for g, d in zip(labels, decided) if g == oos]
        decided_oos = [g for g, d in zip(labels, decided) if d == oos]
        rows.append(
            {
                "threshold": t,
                "in_scope_accuracy": sum(g == d for g, d in in_scope) / len(in_scope) if in_scope else math.nan,
                "fallback_recall": sum(d == oos for d in oos_rows) / len(oos_rows) if oos_rows else math.nan,
                "fallback_precision": (
                    sum(g == oos for g in decided_oos) / len(decided_oos) if decided_oos and oos_rows else math.nan
                ),
                "label_accuracy": sum(g == d for g, d in zip(labels, decided)) / len(labels),
            }
        )
    return pd.DataFrame(rows)


def test_threshold_curve_matches_naive_loop():
    rng = np.random.default_rng(3)
    n = 600
    labels = rng.choice(["a", "b", "c", "oos"], n)
    preds = np.where(rng.random(n) < 0.7, labels, rng.choice(["a", "b", "c", "oos"], n))
    thresholds = np.round(np.arange(0.0, 1.0001, 0.05), 2)
    confs = rng.choice(thresholds, n)  # exact ties with thresholds: a tie is accepted (conf >= t)
    curve = threshold_curve(labels, preds, confs, thresholds)
    pd.testing.assert_frame_equal(curve, _naive_curve(labels, preds, confs, thresholds), check_exact=False)

    no_oos = labels != "oos"
    curve_in = threshold_curve(labels[no_oos], preds[no_oos], confs[no_oos], thresholds)
    assert curve_in["fallback_recall"].isna().all()
    pd.testing.assert_frame_equal(
        curve_in, _naive_curve(labels[no_oos], preds[no_oos], confs[no_oos], thresholds), check_exact=False
    )


def test_threshold_curve_agrees_with_compute_metrics(items):
    t = 0.5
    row = threshold_curve(items["label"], items["pred_label"], items["confidence"], [t]).iloc[0]
    decided = np.where((items["confidence"] >= t) & (items["pred_label"] != "oos"), items["pred_label"], "oos")
    m = compute_metrics(items.assign(decided_label=decided))
    for name in ("in_scope_accuracy", "fallback_recall", "fallback_precision", "label_accuracy"):
        assert row[name] == pytest.approx(m[name]), name


def test_threshold_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        threshold_curve(["a"], ["a", "b"], [0.1], [0.5])
    with pytest.raises(ValueError, match="confidences contain NaN \\(first at position 1\\)"):
        threshold_curve(["a", "b"], ["a", "b"], [0.1, float("nan")], [0.5])


def test_fingerprint_is_stable_order_independent_and_sensitive(items):
    fp = decisions_fingerprint(items)
    assert len(fp) == 64 and fp == decisions_fingerprint(make_items())
    shuffled = items.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert decisions_fingerprint(shuffled) == fp
    assert decisions_fingerprint(items.assign(text="other text", tags="x")) == fp  # not part of a decision
    assert decisions_fingerprint(items.assign(confidence=items["confidence"] + 1e-12)) == fp  # below 9 places
    assert decisions_fingerprint(items.assign(rule=items["rule"].replace("", None))) == fp  # missing == ""

    changed = [
        _route_changed(items, {"g3": "travel"}),
        items.assign(confidence=items["confidence"].where(items["id"] != "g3", 0.900001)),
        items.assign(rule=items["rule"].where(items["id"] != "g3", "contract_review")),
        items.assign(agent=items["agent"].where(items["id"] != "g3", "other")),
        items.assign(decided_label=items["decided_label"].where(items["id"] != "g3", "oos")),
        items.assign(id=items["id"].replace({"g3": "g3b"})),
        items.iloc[1:],
    ]
    assert len({fp, *(decisions_fingerprint(df) for df in changed)}) == len(changed) + 1


def test_fingerprint_encoding_is_pinned():
    """Baselines store fingerprints, so the encoding must not drift between processes or releases:
    rows of (id, route, agent, decided_label, rule, confidence to 9 places) joined by 0x1f, each ended by 0x1e."""
    assert (
        decisions_fingerprint(make_items(_ROWS[:2]))
        == "c33d009a5bca0feadf842205a97fd3ea5b7800c478fa76f91ac6477b8679841c"
    )


def test_latency_profile_times_each_call():
    calls: list[str] = []

    def slow(text: str) -> None:
        calls.append(text)
        time.sleep(0.002)

    stats = latency_profile(slow, ["a", "b", "c", "d"], warmup=3, repeats=2)
    assert len(calls) == 3 + 8 and stats["n"] == 8.0
    assert set(stats) == {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms", "n"}
    assert 2.0 <= stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    with pytest.raises(ValueError, match="texts is empty"):
        latency_profile(slow, [])


def test_batch_throughput_takes_best_of_repeats():
    durations = iter([0.03, 0.01, 0.02])

    def batch(texts) -> None:
        time.sleep(next(durations))

    stats = batch_throughput(batch, ["x"] * 50, repeats=3)
    assert 0.01 <= stats["seconds"] < 0.02  # the fastest of the three runs
    assert stats["items_per_s"] == pytest.approx(50 / stats["seconds"])
    assert stats["n"] == 50.0
