"""Production monitoring data: routing records, their drift features, the drift reference.

A routing record is one production request and its decision (see ``RECORD_COLUMNS``). Drift
is measured on the decision columns plus numeric text features from the serving router
(``Router.text_features``: length, word count, out-of-vocabulary rate and a low-dimensional
projection of its TF-IDF features).

The drift reference is captured when a champion is promoted: its decisions and features on
the validation texts, i.e. what "normal" looked like for the model now serving.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from agent_pipeline.lib.core.files import atomic_path, atomic_write

RECORD_COLUMNS = (
    "timestamp",
    "request_id",
    "text",
    "route",
    "agent",
    "label",
    "confidence",
    "fallback",
    "latency_ms",
    "model_version",
    "reviewed_label",
)


def reference_path(home: Path) -> Path:
    return Path(home) / "monitoring" / "reference.parquet"


def with_features(records: pd.DataFrame, router) -> pd.DataFrame:
    """``records`` plus the router's numeric text features (same row order)."""
    feats = router.text_features(records["text"].astype(str).tolist())
    return pd.concat([records.reset_index(drop=True), feats.reset_index(drop=True)], axis=1)


def capture_reference(home: Path, model, texts: Iterable[str], make_current: bool = True) -> dict:
    """Route ``texts`` with the (new) champion and store decisions + features as the drift reference.

    ``make_current=False`` only writes ``reference-v<N>.parquet`` (a promotion prepares it, then
    switches with ``restore_reference`` inside its transaction).
    """
    texts = [str(t) for t in texts]
    decisions = model.route_batch(texts)
    frame = pd.DataFrame(
        {
            "text": texts,
            "route": decisions["route"].astype(str),
            "agent": decisions["agent"].astype(str),
            "label": decisions["decided_label"].astype(str),
            "confidence": decisions["confidence"].astype(float),
            "fallback": decisions["fallback"].astype(bool),
            "model_version": str(model.version),
        }
    )
    if model.router is not None:
        frame = with_features(frame, model.router)
    else:
        frame["text_length"] = frame["text"].str.len().astype(float)
        frame["word_count"] = frame["text"].str.split().str.len().astype(float)
    path = reference_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    versioned = path.with_name(f"reference-v{model.version}.parquet")
    with atomic_path(versioned) as tmp:
        frame.to_parquet(tmp, index=False)
    if not make_current:
        return {"rows": len(frame), "path": str(versioned)}
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return {"rows": len(frame), "path": str(versioned)}


def day_drift(
    log: pd.DataFrame,
    reference: pd.DataFrame,
    router,
    *,
    html_path: Path | None,
    seed: int,
    max_rows: int | None = None,
):
    """Drift of one day's records against the reference, featurizing at most ``max_rows`` rows.

    Text features are the expensive part of a drift report (a TF-IDF transform and a projection
    per text), and the drift statistics are computed on a sample of ``max_rows`` anyway, so the
    day is sampled (seeded, without replacement) *before* featurizing. The verdict then costs
    the same for 50 000 or 1 000 000 records; the fallback-rate and route-share summary is
    computed on that sample too.
    """
    import numpy as np

    from agent_pipeline.lib.monitoring import drift

    max_rows = max_rows or drift.DEFAULT_MAX_ROWS
    if len(log) > max_rows:
        rows = np.sort(np.random.default_rng([seed, 2]).choice(len(log), size=max_rows, replace=False))
        log = log.iloc[rows]
    if router is not None:
        current = with_features(log, router)
    else:  # a foreign pyfunc router has no vocabulary or projection: monitor what both frames have
        current = log.reset_index(drop=True).assign(
            text_length=log["text"].astype(str).str.len().to_numpy(dtype=float),
            word_count=log["text"].astype(str).str.split().str.len().to_numpy(dtype=float),
        )
    numerical = [
        c
        for c in list(drift.DEFAULT_NUMERICAL) + drift.projection_columns(reference, current)
        if c in reference.columns and c in current.columns
    ]
    return drift.compute_drift(
        reference, current, numerical=numerical, html_path=html_path, seed=seed, max_rows=max_rows
    )


def restore_reference(home: Path, version: str) -> bool:
    """Make the reference captured when ``version`` was promoted current again (after a rollback).

    Returns False when that version never had a reference captured (it was never promoted here).
    """
    path = reference_path(home)
    versioned = path.with_name(f"reference-v{version}.parquet")
    if not versioned.is_file():
        return False
    atomic_write(path, versioned.read_bytes())
    return True
