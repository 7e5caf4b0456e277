"""Human-reviewed production traffic as training examples.

Production records (``inference_log``, one Parquet file per day under
``$AGENT_PIPELINE_HOME/traffic/log/``) may carry a ``reviewed_label`` set by a person. Those
rows are what retraining after drift learns from. Labels were validated against the agent
registry when the records were ingested (bad rows are quarantined there), so every row here
has a known label.
"""

from __future__ import annotations

from collections.abc import Iterable
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
