"""Human-reviewed production traffic as training examples.

Production records (``inference_log``, one Parquet file per day under
``$AGENT_PIPELINE_HOME/traffic/log/``) may carry a ``reviewed_label`` set by a person. Those
rows are what retraining after drift learns from. Labels were validated against the agent
registry when the records were ingested (bad rows are quarantined there), so every row here
has a known label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import case_id, normalize
from agent_pipeline.lib.router.agents import AgentRegistry


def normalized(texts: pd.Series) -> pd.Series:
    """Texts compared as the no-leakage check compares them: lowercased, trimmed, spaces collapsed."""
    return texts.str.lower().str.strip().str.replace(r"\s+", " ", regex=True)


def reviewed_examples(home: Path, registry: AgentRegistry, exclude_texts: Iterable[str] = ()) -> pd.DataFrame:
    """Every reviewed traffic row so far, in the dataset schema, one row per distinct text.

    The latest review of a text wins; texts already in ``exclude_texts`` (the curated training
    file) are left out so a text is never trained on twice.
    """
    files = sorted(settings.inference_log_dir(home).glob("*.parquet"))
    columns = ["id", "text", "label", "expected_route", "tags", "source"]
    if not files:
        return pd.DataFrame(columns=columns)
    frames = [pd.read_parquet(f, columns=["request_id", "timestamp", "text", "reviewed_label"]) for f in files]
    log = pd.concat(frames, ignore_index=True)
    log = log[log["reviewed_label"].fillna("").astype(str).str.strip() != ""]
    if log.empty:
        return pd.DataFrame(columns=columns)
    log = log.sort_values(["timestamp", "request_id"]).drop_duplicates("text", keep="last")
    seen = set(normalized(pd.Series(list(exclude_texts), dtype=str)))
    log = log[~normalized(log["text"].astype(str)).isin(seen)]
    out = pd.DataFrame(
        {
            "id": [case_id(t, "", "feedback") for t in log["text"].astype(str)],  # one row per text
            "text": log["text"].astype(str),
            "label": log["reviewed_label"].astype(str),
            "tags": "feedback",
        }
    )
    out = normalize(out, registry)
    out["source"] = "feedback"
    return out[columns].sort_values("id", ignore_index=True)


@dataclass(frozen=True)
class Admission:
    """What retraining learns from: the curated rows plus the reviewed rows admitted."""

    examples: pd.DataFrame  # curated + admitted, in the dataset schema (``source``: curated / feedback)
    admitted: pd.DataFrame
    held_back: dict[str, int]  # label -> reviewed rows held back (a new label with too few rows)
    n_in_eval_sets: int  # reviewed rows left out because their text is an evaluation case

    def metadata(self) -> dict:
        return {
            "n_curated": int((self.examples["source"] == "curated").sum()),
            "n_feedback": len(self.admitted),
            "n_feedback_held_back": int(sum(self.held_back.values())),
            "n_feedback_in_eval_sets": self.n_in_eval_sets,
        }


def admit_feedback(
    curated: pd.DataFrame, reviewed: pd.DataFrame, eval_texts: Iterable[str], min_examples_per_label: int
) -> Admission:
    """Which reviewed rows join the curated training rows.

    A reviewed text that is also a validation or golden case stays out (it would leak into
    training and fail the no-leakage checks, blocking every retrain). A label the curated rows
    lack joins only once it has ``min_examples_per_label`` reviewed rows; until then its rows
    are held back (counted, and kept in the log), so one thinly reviewed new topic cannot block
    a retraining.
    """
    curated = curated.assign(source="curated")
    in_eval = normalized(reviewed["text"].astype(str)).isin(set(normalized(pd.Series(list(eval_texts), dtype=str))))
    reviewed = reviewed[~in_eval.to_numpy()]
    counts = reviewed["label"].value_counts()
    known = set(curated["label"])
    thin = [lab for lab, n in counts.items() if n < min_examples_per_label and lab not in known]
    admitted = reviewed[~reviewed["label"].isin(thin)]
    examples = pd.concat([curated, admitted], ignore_index=True) if len(admitted) else curated
    return Admission(examples, admitted, {str(k): int(v) for k, v in counts[thin].items()}, int(in_eval.sum()))
