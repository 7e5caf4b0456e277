"""The drift sensor's rule (``lib/monitoring/retrain.py``): which drift reports start a retrain."""

from __future__ import annotations

from agent_pipeline.lib.monitoring import retrain
from agent_pipeline.lib.monitoring.retrain import DriftReport

HOUR = 3600.0
NOW = 1_800_000_000.0
COOLDOWN = 6 * HOUR


def report(day: str, drift: bool) -> DriftReport:
    return DriftReport(day, drift, ("route", "fallback") if drift else (), "1")


def test_the_first_drifted_report_retrains_and_covers_the_rest_of_the_tick():
    days = [report("2026-11-27", False), report("2026-11-30", True), report("2026-12-01", True)]
    decided = retrain.plan(days, last_requested_at=None, now=NOW, cooldown_s=COOLDOWN)
    assert [r.partition for r in decided.retrain] == ["2026-11-30"]
    assert decided.retrain[0].run_key == "drift:2026-11-30:ref-v1"
    assert decided.notes == [
        "drift_report 2026-11-27: no drift",
        "drift_report 2026-12-01: drift on route, fallback, but covered by the retrain requested in this tick",
    ]


def test_the_cooldown_holds_back_drift_until_it_has_passed():
    day = [report("2026-12-02", True)]
    waiting = retrain.plan(day, last_requested_at=NOW - 2 * HOUR, now=NOW, cooldown_s=COOLDOWN)
    assert waiting.retrain == []
    assert waiting.notes == [
        "drift_report 2026-12-02: drift on route, fallback, but a drift retrain was requested 120 min ago "
        "(cooldown 360 min)"
    ]
    later = retrain.plan(day, last_requested_at=NOW - COOLDOWN, now=NOW, cooldown_s=COOLDOWN)
    assert [r.partition for r in later.retrain] == ["2026-12-02"]


def test_no_drift_no_retrain():
    decided = retrain.plan([report("2026-11-27", False)], last_requested_at=None, now=NOW, cooldown_s=COOLDOWN)
    assert decided.retrain == [] and decided.notes == ["drift_report 2026-11-27: no drift"]
    assert retrain.plan([], None, NOW, COOLDOWN).notes == []
