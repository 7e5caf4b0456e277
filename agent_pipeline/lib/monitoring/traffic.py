"""Production traffic for the monitoring loop: real held-out requests routed by a real model.

A traffic pool is a CSV with the columns ``text``, ``label`` (the true label, given to the
reviewed rows) and ``pool``, one of ``stable`` (in-scope requests the router was trained on),
``oos`` (out-of-scope requests) and ``new-topic`` (requests of a topic the router never saw),
spelled as the CLI's scenarios are (``new_topic`` and a column named ``scenario`` are read too).
``data/clinc150/traffic_pool.csv`` holds texts that are in neither training nor evaluation
(see ``scripts/prepare_data.py``). A scenario is a daily mix of those pools:

=============  =============================================================================
scenario       mix of each day's requests
=============  =============================================================================
``stable``     97% ``stable`` texts, 3% ``oos`` (about the out-of-scope share of validation)
``new-topic``  3% ``oos``; ``new-topic`` texts make up 25% on the first day, 5 points more
               each following day up to 50%; the rest ``stable``
``oos-surge``  30% ``oos``, 70% ``stable``
=============  =============================================================================

Each request is routed on its own with ``model.route_one`` (the serving path), timed with
``perf_counter``: decisions are the model's, latencies are real. A ``review_share`` of the
requests carry ``reviewed_label`` = the pool's true label, as human feedback would.

One JSON Lines file per day lands in the landing folder, named
``<YYYY-MM-DD>-<scenario>-s<seed>.jsonl``, with exactly ``monitoring.RECORD_COLUMNS`` per row.
Files are written to a hidden temporary name and renamed, so a sensor never sees half a file.
Everything except ``latency_ms`` is a function of (seed, day, scenario, pool, model); with
``day_origin``, the drawn requests depend on the day's offset from it rather than on its date.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS

SCENARIOS = ("stable", "new-topic", "oos-surge")
POOLS = ("stable", "oos", "new-topic")
POOL_COLUMNS = ("text", "label", "pool")
STABLE_OOS_SHARE = 0.03
SURGE_OOS_SHARE = 0.30
NEW_TOPIC_START, NEW_TOPIC_STEP, NEW_TOPIC_MAX = 0.25, 0.05, 0.50
_MICROS_PER_DAY = 86_400_000_000


class TrafficError(ValueError):
    """Traffic cannot be simulated (bad arguments or pool); the message names what is wrong."""


def _with_pool_column(pool: pd.DataFrame, source: str) -> pd.DataFrame:
    """``pool`` with its ``pool`` column in the CLI's spelling; unknown values are refused."""
    if "pool" not in pool.columns and "scenario" in pool.columns:  # the earlier name of the column
        pool = pool.rename(columns={"scenario": "pool"})
    missing = [c for c in POOL_COLUMNS if c not in pool.columns]
    if missing:
        raise TrafficError(
            f"{source}: traffic pool lacks column(s) {', '.join(missing)} "
            f"(needs text, label and pool, one of {', '.join(POOLS)})"
        )
    pool = pool.assign(pool=pool["pool"].astype(str).str.strip().str.replace("_", "-"))
    unknown = sorted(set(pool["pool"]) - set(POOLS))
    if unknown:
        raise TrafficError(f"{source}: traffic pool values {unknown} are not one of {', '.join(POOLS)}")
    return pool


def read_pool(path: Path | str) -> pd.DataFrame:
    """Read a traffic pool CSV (``text``, ``label``, ``pool`` required) as strings."""
    path = Path(path)
    if not path.is_file():
        raise TrafficError(f"{path}: traffic pool file not found")
    try:
        pool = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrafficError(f"{path}: cannot parse traffic pool: {exc}") from exc
    return _with_pool_column(pool, str(path))


def day_mix(scenario: str, day_index: int) -> dict[str, float]:
    """Share of each pool (``stable``, ``oos``, ``new-topic``) on day ``day_index`` (0 = first day)."""
    if scenario == "stable":
        oos, new = STABLE_OOS_SHARE, 0.0
    elif scenario == "new-topic":
        oos, new = STABLE_OOS_SHARE, min(NEW_TOPIC_START + NEW_TOPIC_STEP * day_index, NEW_TOPIC_MAX)
    elif scenario == "oos-surge":
        oos, new = SURGE_OOS_SHARE, 0.0
    else:
        raise TrafficError(f"unknown traffic scenario '{scenario}'; expected one of {', '.join(SCENARIOS)}")
    return {"stable": 1.0 - oos - new, "oos": oos, "new-topic": new}


def landing_name(day: date, scenario: str, seed: int) -> str:
    return f"{day:%Y-%m-%d}-{scenario}-s{seed}.jsonl"


def simulate(
    model,
    pool: pd.DataFrame,
    *,
    start: date,
    days: int,
    scenario: str,
    seed: int,
    rows_per_day: int = 1000,
    review_share: float = 0.2,
    landing: Path,
    day_origin: date | None = None,
) -> list[Path]:
    """Route ``days`` days of ``scenario`` traffic from ``pool`` with ``model``; one landing file per day.

    ``model`` needs ``.version`` and ``.route_one(text) -> dict`` (``route``, ``agent``,
    ``decided_label``, ``confidence``, ``fallback``), e.g. ``registry.LoadedModel``. Texts are
    drawn with replacement. Returns the written paths, in day order; an existing file of the
    same day, scenario and seed is replaced. Each day's draw is keyed on its calendar date; with
    ``day_origin`` (on or before ``start``) on its distance in days from that date instead, so a
    story told relative to today (the demo) draws the same requests on whatever date it runs.
    """
    if days < 1 or rows_per_day < 1:
        raise TrafficError(f"days ({days}) and rows_per_day ({rows_per_day}) must be at least 1")
    if day_origin is not None and day_origin > start:
        raise TrafficError(f"day_origin ({day_origin}) must not be after start ({start})")
    if not 0.0 <= review_share <= 1.0:
        raise TrafficError(f"review_share ({review_share}) must be between 0 and 1")
    pool = _with_pool_column(pool, "traffic pool")
    mixes = [day_mix(scenario, d) for d in range(days)]
    pools = {name: pool[pool["pool"] == name] for name in POOLS}
    for name, sub in pools.items():
        if sub.empty and any(m[name] > 0 for m in mixes):
            raise TrafficError(f"traffic pool has no rows with pool '{name}', needed by scenario '{scenario}'")

    landing = Path(landing)
    landing.mkdir(parents=True, exist_ok=True)
    version = str(model.version)
    paths = []
    for d, mix in enumerate(mixes):
        day = start + timedelta(days=d)
        day_key = day.toordinal() if day_origin is None else (day - day_origin).days
        rng = np.random.default_rng([seed, day_key, SCENARIOS.index(scenario)])
        texts, labels = _draw(pools, mix, rows_per_day, rng)
        reviewed = np.zeros(rows_per_day, dtype=bool)
        reviewed[rng.choice(rows_per_day, size=round(review_share * rows_per_day), replace=False)] = True
        micros = np.sort(rng.integers(0, _MICROS_PER_DAY, size=rows_per_day))
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)

        lines = []
        for i in range(rows_per_day):
            t0 = time.perf_counter()
            dec = model.route_one(texts[i])
            latency_ms = (time.perf_counter() - t0) * 1000.0
            ts = midnight + timedelta(microseconds=int(micros[i]))
            record = {
                "timestamp": ts.isoformat(timespec="microseconds"),
                "request_id": f"{day:%Y%m%d}-{scenario}-s{seed}-{i:06d}",
                "text": texts[i],
                "route": str(dec["route"]),
                "agent": str(dec["agent"]),
                "label": str(dec["decided_label"]),
                "confidence": float(dec["confidence"]),
                "fallback": bool(dec["fallback"]),
                "latency_ms": round(latency_ms, 4),
                "model_version": version,
                "reviewed_label": labels[i] if reviewed[i] else None,
            }
            lines.append(json.dumps({k: record[k] for k in RECORD_COLUMNS}, ensure_ascii=False))

        path = landing / landing_name(day, scenario, seed)
        atomic_write(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths


def _draw(pools: dict[str, pd.DataFrame], mix: dict[str, float], n: int, rng: np.random.Generator):
    """``n`` (text, true label) pairs in the mix's exact proportions, in random order."""
    counts = {name: round(share * n) for name, share in mix.items() if name != "stable"}
    counts["stable"] = n - sum(counts.values())
    texts: list[str] = []
    labels: list[str] = []
    for name in POOLS:
        k = counts.get(name, 0)
        if k <= 0:
            continue
        sub = pools[name]
        idx = rng.integers(0, len(sub), size=k)
        texts += sub["text"].astype(str).to_numpy()[idx].tolist()
        labels += sub["label"].astype(str).to_numpy()[idx].tolist()
    order = rng.permutation(n)
    return [texts[i] for i in order], [labels[i] for i in order]
