"""When drift asks for a retrain: the drift sensor's rule, without Dagster.

``drift_retrain_sensor`` reads the ``drift_report`` materializations since its cursor (oldest
first) and asks ``plan`` which of them start a retrain. The rule: a report without drift starts
nothing; the first drifted report starts one retrain, unless one was requested less than
``cooldown_s`` ago (a run storm on a week of drifted days would retrain seven times for one
cause); later drifted reports of the same tick are covered by it. Standard library only: it runs
on every sensor tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DriftReport:
    """What the sensor needs from one ``drift_report`` materialization."""

    partition: str
    drift_detected: bool
    drifted_features: tuple[str, ...] = ()
    reference_version: str = ""

    @property
    def run_key(self) -> str:
        """One retrain per drifted day and reference model (the daemon skips a key it has seen)."""
        return f"drift:{self.partition}:ref-v{self.reference_version}"


@dataclass
class RetrainPlan:
    retrain: list[DriftReport] = field(default_factory=list)  # at most one per tick
    notes: list[str] = field(default_factory=list)  # why each other report started nothing


def cooldown_wait(last_requested_at: float | None, now: float, cooldown_s: float) -> str | None:
    """Why a new retrain must wait, or None when it may run (``last_requested_at``: epoch seconds)."""
    if last_requested_at is None:
        return None
    age = now - last_requested_at
    if age >= cooldown_s:
        return None
    return f"a drift retrain was requested {age / 60:.0f} min ago (cooldown {cooldown_s / 60:.0f} min)"


def plan(reports: Iterable[DriftReport], last_requested_at: float | None, now: float, cooldown_s: float) -> RetrainPlan:
    """The retrain (if any) and a note per report that started none, in the reports' order."""
    out = RetrainPlan()
    for report in reports:
        if not report.drift_detected:
            out.notes.append(f"drift_report {report.partition}: no drift")
            continue
        wait = (
            "covered by the retrain requested in this tick"
            if out.retrain
            else cooldown_wait(last_requested_at, now, cooldown_s)
        )
        if wait:
            out.notes.append(
                f"drift_report {report.partition}: drift on {', '.join(report.drifted_features)}, but {wait}"
            )
            continue
        out.retrain.append(report)
    return out
