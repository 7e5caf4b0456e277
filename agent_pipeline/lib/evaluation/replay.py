"""Champion / challenger on replayed production traffic (the gate ``agrees_with_champion_on_traffic``).

Before a promotion the candidate and the serving champion route the same recent production
records: the inference log's last ``days`` days (``$AGENT_PIPELINE_HOME/traffic/log/<day>.parquet``).
Rows whose text the candidate was trained on (reviewed feedback becomes training data) are
excluded and counted: on those the candidate would be judged on its own training set.

What is compared:

* the **disagreement rate**: the share of the remaining rows the two route differently. A
  retrain after drift is meant to change some decisions (a new topic now has an agent), so the
  budget is generous (``max_disagreement_rate``); it catches a candidate that re-routes a large
  part of real traffic, which the eval sets may not show;
* on **human-reviewed rows** not trained on (ground truth), the candidate's route accuracy
  against the champion's: the candidate may be worse by at most ``max_accuracy_drop``, judged
  only when at least ``min_reviewed_rows`` such rows exist (fewer would make one row decide);
* the **disagreeing cases** themselves, for a person to read.

Nothing to compare (no champion yet, or no traffic left in the window after the exclusions)
passes with an explicit "nothing to compare". That is not failing open: this gate is relative
(is the candidate at least as good as what serves now, on what users send now?); with no champion
or no traffic there is no such evidence either way, and the absolute gates (holdout, baseline,
critical cases) still judge the candidate. Failing instead would make the first promotion, and
every promotion of a system that has no traffic log, impossible.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from agent_pipeline.lib.core import settings

CASE_COLUMNS = ("day", "text", "reviewed_label", "champion_route", "candidate_route", "candidate_confidence")


def recent_records(home: Path, days: int, today: date | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The inference log's records of the last ``days`` days up to ``today`` (UTC), with the days read."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=max(1, int(days)) - 1)
    folder = settings.inference_log_dir(home)
    frames, read = [], []
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            day = date.fromisoformat(path.stem)
        except ValueError:
            continue
        if first <= day <= today:
            df = pd.read_parquet(path, columns=["timestamp", "request_id", "text", "reviewed_label"])
            frames.append(df.assign(day=path.stem))
            read.append(path.stem)
    if not frames:
        return pd.DataFrame(columns=["timestamp", "request_id", "text", "reviewed_label", "day"]), read
    return pd.concat(frames, ignore_index=True), read


@dataclass
class ReplayJudgement:
    passed: bool
    compared: bool
    description: str
    days: list[str]
    n_records: int
    n_trained_on: int
    n_replayed: int
    n_disagree: int
    disagreement_rate: float
    n_reviewed: int
    candidate_accuracy: float
    champion_accuracy: float
    cases: pd.DataFrame

    def metadata(self) -> dict:
        return {
            "compared": self.compared,
            "days": ",".join(self.days) or "none",
            "n_records": self.n_records,
            "n_excluded_trained_on": self.n_trained_on,
            "n_replayed": self.n_replayed,
            "n_disagree": self.n_disagree,
            "disagreement_rate": self.disagreement_rate,
            "n_reviewed_scored": self.n_reviewed,
            "candidate_reviewed_route_accuracy": self.candidate_accuracy,
            "champion_reviewed_route_accuracy": self.champion_accuracy,
        }


def _norm(texts: pd.Series) -> pd.Series:
    return texts.astype(str).str.lower().str.strip().str.replace(r"\s+", " ", regex=True)


def judge(
    candidate,
    champion,
    records: pd.DataFrame,
    *,
    days: list[str],
    training_texts: Iterable[str],
    registry,
    max_disagreement_rate: float,
    max_accuracy_drop: float,
    min_reviewed_rows: int,
    max_cases: int = 50,
    require_traffic: bool = False,
    no_champion_reason: str = "",
) -> ReplayJudgement:
    """Replay ``records`` through both models (``route_batch``); see the module docstring."""
    nan = float("nan")
    empty = pd.DataFrame(columns=list(CASE_COLUMNS))
    n_records = len(records)
    if champion is None:
        return ReplayJudgement(
            True, False, f"nothing to compare: {no_champion_reason or 'no champion yet'}", days, n_records,
            0, 0, 0, nan, 0, nan, nan, empty,
        )  # fmt: skip
    trained = set(_norm(pd.Series(list(training_texts), dtype=str)))
    in_training = _norm(records["text"]).isin(trained).to_numpy() if n_records else np.zeros(0, dtype=bool)
    rows = records[~in_training].reset_index(drop=True)
    n_trained = int(in_training.sum())
    if rows.empty:
        why = (
            f"no production records in the last {len(days) or 0} day(s)"
            if n_records == 0
            else f"all {n_records} recent records are texts the candidate was trained on"
        )
        if require_traffic:
            why += (
                " and the policy requires traffic to compare (gates.agrees_with_champion_on_traffic.require_traffic): "
                "serve the champion (or land production records) until the window holds some, or widen `days`"
            )
        return ReplayJudgement(
            not require_traffic, False, ("" if require_traffic else "nothing to compare: ") + why, days, n_records,
            n_trained, 0, 0, nan, 0, nan, nan, empty,
        )  # fmt: skip
    texts = rows["text"].astype(str).tolist()
    cand = candidate.route_batch(texts).reset_index(drop=True)
    champ = champion.route_batch(texts).reset_index(drop=True)
    differ = (cand["route"].astype(str) != champ["route"].astype(str)).to_numpy()
    rate = float(differ.mean())
    reviewed = rows["reviewed_label"].fillna("").astype(str).str.strip()
    has_review = (reviewed != "").to_numpy()
    n_rev = int(has_review.sum())
    cand_acc = champ_acc = nan
    failures = []
    if n_rev:
        expected = np.asarray([registry.route_for_label(lab) for lab in reviewed[has_review]], dtype=object)
        cand_acc = float((cand["route"].astype(str).to_numpy()[has_review] == expected).mean())
        champ_acc = float((champ["route"].astype(str).to_numpy()[has_review] == expected).mean())
    if rate > max_disagreement_rate + 1e-12:
        failures.append(
            f"candidate and champion route {rate:.1%} of {len(rows)} replayed records differently "
            f"(> {max_disagreement_rate:.0%})"
        )
    judged_accuracy = n_rev >= min_reviewed_rows
    if judged_accuracy and cand_acc < champ_acc - max_accuracy_drop - 1e-12:
        failures.append(
            f"on {n_rev} reviewed records the candidate routes {cand_acc:.1%} correctly, the champion {champ_acc:.1%} "
            f"(drop > {max_accuracy_drop:.0%})"
        )
    cases = pd.DataFrame(
        {
            "day": rows["day"].astype(str),
            "text": rows["text"].astype(str),
            "reviewed_label": reviewed,
            "champion_route": champ["route"].astype(str),
            "candidate_route": cand["route"].astype(str),
            "candidate_confidence": cand["confidence"].astype(float).round(3),
        }
    )[differ]
    cases = cases.drop_duplicates("text").head(max_cases)
    accuracy_note = (
        f"reviewed route accuracy candidate {cand_acc:.3f} vs champion {champ_acc:.3f} on {n_rev} rows"
        if judged_accuracy
        else f"{n_rev} reviewed rows not trained on (< {min_reviewed_rows}: accuracy reported, not judged)"
    )
    head = f"replayed {len(rows)} of {n_records} records ({n_trained} trained on, excluded) from {len(days)} day(s)"
    description = (
        f"{head}: disagreement {rate:.1%} (<= {max_disagreement_rate:.0%}); {accuracy_note}"
        if not failures
        else f"{head}: " + "; ".join(failures)
    )
    return ReplayJudgement(
        not failures, True, description, days, n_records, n_trained, len(rows), int(differ.sum()), rate, n_rev,
        cand_acc, champ_acc, cases,
    )  # fmt: skip
