"""Landing files -> the validated inference log, one Parquet file per UTC day.

Production writes routing records as JSON Lines into a landing folder (the simulator in
``lib/monitoring/traffic.py`` does too). Ingesting a day (a partition, ``YYYY-MM-DD``) reads every landing
file named ``<partition>*.jsonl`` and checks each line against the record contract
(``monitoring.RECORD_COLUMNS``): valid JSON object, exactly the contract's fields, each with
the right type and a known value, its timestamp on that UTC day, and a request id not seen
before in the day (the first occurrence wins).

Nothing is dropped silently. A bad line goes to ``<quarantine_dir>/<partition>.jsonl`` as
``{"file", "line", "reason", "raw"}`` and is counted by reason. A file that is garbage as a
whole (no line is a JSON object, or the bytes are not UTF-8) raises ``IngestError`` instead:
that is a broken producer, not a few bad rows.

Valid rows go to ``<out_dir>/<partition>.parquet``, sorted by (timestamp, request_id), with
``timestamp`` as a timezone-aware UTC datetime. Both outputs are written atomically and
re-ingesting the same landing files gives the same files.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from agent_pipeline.lib.core.files import atomic_path, atomic_write
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS
from agent_pipeline.lib.router.agents import FALLBACK_ROUTE

_FIELDS = frozenset(RECORD_COLUMNS)
_STRING_FIELDS = ("request_id", "text", "agent", "model_version")


class IngestError(ValueError):
    """A landing file (or a partition's set of files) cannot be ingested at all; names the file and line."""


@dataclass(frozen=True)
class IngestResult:
    partition: str
    files: list[str]
    n_rows: int
    n_valid: int
    n_quarantined: int
    reasons: dict[str, int]
    log_path: str
    quarantine_path: str | None
    fallback_rate: float
    n_reviewed: int

    def to_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata: counts, rates as floats, paths, reasons."""
        out = asdict(self)
        out["quarantined_share"] = self.n_quarantined / self.n_rows if self.n_rows else 0.0
        out["reasons"] = dict(sorted(self.reasons.items()))
        return out


def landing_files(landing: Path, partition: str) -> list[Path]:
    """The landing files of one day: ``<partition>*.jsonl``, sorted by name."""
    return sorted(p for p in Path(landing).glob(f"{partition}*.jsonl") if p.is_file())


def ingest_partition(
    landing: Path,
    partition: str,
    *,
    known_labels: Iterable[str],
    known_routes: Iterable[str],
    out_dir: Path,
    quarantine_dir: Path,
) -> IngestResult:
    """Validate one day's landing files into ``out_dir/<partition>.parquet``; quarantine bad rows.

    A day without landing files is a quiet day, not an error: it gives an empty log (the
    ``inference_log`` asset reports it through its ``traffic_received`` warning check).
    Raises ``IngestError`` when the partition is not a date or a file cannot be parsed at all.
    """
    try:
        day = date.fromisoformat(partition)
    except ValueError as exc:
        raise IngestError(f"partition '{partition}' is not a YYYY-MM-DD date") from exc
    files = landing_files(landing, partition)
    labels, routes = frozenset(known_labels), frozenset(known_routes)

    valid: list[dict] = []
    bad: list[dict] = []
    seen: set[str] = set()
    n_rows = 0
    for path in files:
        for lineno, raw, obj in _parse_file(path):
            n_rows += 1
            reason = _problem(obj, day, labels, routes) if isinstance(obj, dict) else obj
            if reason is None and obj["request_id"] in seen:
                reason = "duplicate request_id"
            if reason is None:
                seen.add(obj["request_id"])
                valid.append(obj)
            else:
                bad.append({"file": str(path), "line": lineno, "reason": reason, "raw": raw})

    out_dir, quarantine_dir = Path(out_dir), Path(quarantine_dir)
    log = _frame(valid)
    log_path = out_dir / f"{partition}.parquet"
    with atomic_path(log_path) as tmp:
        log.to_parquet(tmp, index=False, schema=_schema())

    quarantine_path = quarantine_dir / f"{partition}.jsonl"
    if bad:
        atomic_write(quarantine_path, "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in bad))
    else:
        quarantine_path.unlink(missing_ok=True)  # a stale quarantine from an earlier ingest of this day

    reviewed = log["reviewed_label"].fillna("").astype(str).str.strip() != ""
    return IngestResult(
        partition=partition,
        files=[str(p) for p in files],
        n_rows=n_rows,
        n_valid=len(log),
        n_quarantined=len(bad),
        reasons=dict(Counter(b["reason"] for b in bad)),
        log_path=str(log_path),
        quarantine_path=str(quarantine_path) if bad else None,
        fallback_rate=float(log["fallback"].mean()) if len(log) else 0.0,
        n_reviewed=int(reviewed.sum()),
    )


def load_log(out_dir: Path, partition: str) -> pd.DataFrame:
    """The validated records of one day (raises ``FileNotFoundError`` if it was never ingested)."""
    path = Path(out_dir) / f"{partition}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no inference log for {partition}; ingest the partition first")
    return pd.read_parquet(path)


def _parse_file(path: Path):
    """(line number, raw line, parsed object or "invalid JSON") for each non-blank line.

    Raises ``IngestError`` if the file is not UTF-8 or no line in it is a JSON object.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise IngestError(f"{path}: cannot be parsed: line {line}: not UTF-8 ({exc.reason})") from exc
    rows = []
    first_error: tuple[int, str] | None = None
    any_object = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            first_error = first_error or (lineno, exc.msg)
            rows.append((lineno, raw, "invalid JSON"))
            continue
        if isinstance(obj, dict):
            any_object = True
            rows.append((lineno, raw, obj))
        else:
            first_error = first_error or (lineno, f"a JSON {type(obj).__name__}, not an object")
            rows.append((lineno, raw, "not a JSON object"))
    if rows and not any_object:
        line, msg = first_error
        raise IngestError(f"{path}: cannot be parsed: line {line}: {msg}")
    return rows


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _problem(obj: dict, day: date, labels: frozenset[str], routes: frozenset[str]) -> str | None:
    """The first contract violation of one record, as a short reason (``None`` when valid)."""
    missing = [c for c in RECORD_COLUMNS if c not in obj]
    if missing:
        return f"missing field: {missing[0]}"
    extra = sorted(set(obj) - _FIELDS)
    if extra:
        return f"unexpected field: {extra[0]}"
    for name in _STRING_FIELDS:
        value = obj[name]
        if not isinstance(value, str) or not value.strip():
            return f"{name}: not a non-empty string"
    ts = obj["timestamp"]
    try:
        parsed = datetime.fromisoformat(ts) if isinstance(ts, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        return "timestamp: not an ISO 8601 string"
    if parsed.tzinfo is None:
        return "timestamp: no UTC offset"
    if parsed.astimezone(UTC).date() != day:
        return "timestamp: not on the partition's UTC date"
    if not isinstance(obj["route"], str) or obj["route"] not in routes:
        return "route: not a known route"
    if not isinstance(obj["label"], str) or obj["label"] not in labels:
        return "label: not a known label"
    conf = obj["confidence"]
    if not _is_number(conf) or not 0.0 <= conf <= 1.0:
        return "confidence: not a number in [0, 1]"
    if not isinstance(obj["fallback"], bool):
        return "fallback: not a boolean"
    if obj["fallback"] != (obj["route"] == FALLBACK_ROUTE):
        return "fallback: disagrees with route"
    lat = obj["latency_ms"]
    if not _is_number(lat) or lat < 0:
        return "latency_ms: not a non-negative number"
    rev = obj["reviewed_label"]
    if rev is not None and not isinstance(rev, str):
        return "reviewed_label: not a string or null"
    if rev and rev.strip() and rev not in labels:
        return "reviewed_label: not a known label"
    return None


def _schema():
    """The inference log's Parquet schema (fixed, so an all-null column keeps its type)."""
    import pyarrow as pa

    types = {
        "timestamp": pa.timestamp("ns", tz="UTC"),
        "confidence": pa.float64(),
        "latency_ms": pa.float64(),
        "fallback": pa.bool_(),
    }
    return pa.schema([(name, types.get(name, pa.string())) for name in RECORD_COLUMNS])


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Valid records as the inference-log frame: contract columns and types, sorted by time."""
    df = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    for name in ("request_id", "text", "route", "agent", "label", "model_version"):
        df[name] = df[name].astype(object)
    df["confidence"] = df["confidence"].astype("float64")
    df["latency_ms"] = df["latency_ms"].astype("float64")
    df["fallback"] = df["fallback"].astype(bool)
    rev = df["reviewed_label"].astype(object)
    df["reviewed_label"] = rev.where(rev.notna() & (rev.astype(str).str.strip() != ""), None)
    return df.sort_values(["timestamp", "request_id"], kind="stable", ignore_index=True)
