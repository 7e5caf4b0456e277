"""Landing files -> the validated inference log, one Parquet file per UTC day.

Production writes routing records as JSON Lines into a landing folder (the simulator in
``lib/monitoring/traffic.py`` does too). Ingesting a day (a partition, ``YYYY-MM-DD``) reads every
landing file named ``<partition>*.jsonl`` and checks each line against the record contract
(``monitoring.RECORD_COLUMNS``): valid JSON object, exactly the contract's fields, each with
the right type and a known value, its timestamp on that UTC day, a text no longer than the
limit and without control characters (tab, LF and CR aside), and a request id not seen before
in the day (the first occurrence wins).

Nothing is lost and nothing is dropped silently:

- Lines are split on ``\n`` (bytes) only: U+2028, U+0085 and other Unicode line breaks inside
  JSON strings stay part of their record; a ``\r`` before the ``\n`` is JSON whitespace. A
  UTF-8 byte order mark at the start of a file is skipped.
- A bad line goes to ``<quarantine_dir>/<partition>.jsonl`` as ``{"file", "line", "reason",
  "raw"}`` and is counted by reason (``raw`` redacted, cut to ``RAW_KEEP_CHARS``).
- A file that cannot be parsed at all (no line is a JSON object) is quarantined whole: one
  record with ``line`` null and the reason, and a redacted copy under
  ``<quarantine_dir>/<partition>/``. The day's other files are still ingested;
  ``IngestResult.rejected_files`` names it (the ``landing_files_parsed`` check fails).
- Lines past ``max_file_bytes`` of a file are quarantined (``file larger than N bytes``)
  without being parsed; a text longer than ``max_text_chars`` quarantines its row.
- Symlinks, and any entry that is not a regular file inside the landing folder, are refused
  (never opened) and reported in ``rejected_files``.
- Files in the landing folder whose name does not match ``YYYY-MM-DD*.jsonl`` (hidden files
  excepted: writers' temporary files) are listed in ``unmatched_files`` (a warning check).

Texts of valid rows are redacted (``lib/data/redaction.py``) before the log is written, so
personal data never reaches the inference log, the feedback used for retraining, drift
reports or anything downstream; ``IngestResult.redacted`` counts the replacements by kind.

Valid rows go to ``<out_dir>/<partition>.parquet``, sorted by (timestamp, request_id), with
``timestamp`` as a timezone-aware UTC datetime. Both outputs are written atomically and
re-ingesting the same landing files gives the same files.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from agent_pipeline.lib.core.files import atomic_path, atomic_write
from agent_pipeline.lib.data.redaction import redact, redact_counts
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS
from agent_pipeline.lib.router.agents import FALLBACK_ROUTE

_FIELDS = frozenset(RECORD_COLUMNS)
_STRING_FIELDS = ("request_id", "text", "agent", "model_version")
LANDING_NAME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[^/]*\.jsonl$")
DEFAULT_MAX_TEXT_CHARS = 10_000
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
RAW_KEEP_CHARS = 2_000
_BOM = b"\xef\xbb\xbf"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 and DEL except tab, LF, CR


class IngestError(ValueError):
    """A partition cannot be ingested at all (e.g. its key is not a date); names what is wrong."""


@dataclass(frozen=True)
class IngestLimits:
    """Size limits for landing data; rows beyond them are quarantined, never truncated."""

    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_file_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IngestError(f"ingest limit {name} must be a positive integer, got {value!r}")


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
    rejected_files: dict[str, str] = field(default_factory=dict)
    unmatched_files: list[str] = field(default_factory=list)
    redacted: dict[str, int] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata: counts, rates as floats, paths, reasons."""
        out = asdict(self)
        out["quarantined_share"] = self.n_quarantined / self.n_rows if self.n_rows else float("nan")
        out["reasons"] = dict(sorted(self.reasons.items()))
        out["rejected_files"] = dict(sorted(self.rejected_files.items()))
        out["n_rejected_files"] = len(self.rejected_files)
        out["n_unmatched_files"] = len(self.unmatched_files)
        out["redacted"] = dict(sorted(self.redacted.items()))
        return out


@dataclass(frozen=True)
class LandingScan:
    """One look at the landing folder: a day's files, refused entries, misnamed files."""

    files: list[Path]
    refused: dict[str, str]
    unmatched: list[str]


def scan_landing(landing: Path, partition: str) -> LandingScan:
    """Classify the landing folder's entries for ``partition`` without opening any file.

    Regular files named ``<partition>*.jsonl`` are the day's files. An entry with such a name
    that is a symlink, not a regular file, or resolves outside the folder is refused with a
    reason. Names that match no day's pattern are ``unmatched`` (hidden names are skipped).
    """
    landing = Path(landing)
    files: list[Path] = []
    refused: dict[str, str] = {}
    unmatched: list[str] = []
    if not landing.is_dir():
        return LandingScan(files, refused, unmatched)
    root = landing.resolve()
    with os.scandir(landing) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        match = LANDING_NAME_RE.match(name)
        if not match:
            unmatched.append(name)
            continue
        if not name.startswith(partition):
            continue
        path = landing / name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            refused[str(path)] = "refused: a symlink (landing files must be regular files in the folder)"
        elif not stat.S_ISREG(st.st_mode):
            refused[str(path)] = "refused: not a regular file"
        elif path.resolve().parent != root:
            refused[str(path)] = "refused: resolves outside the landing folder"
        else:
            files.append(path)
    return LandingScan(files, refused, unmatched)


def landing_files(landing: Path, partition: str) -> list[Path]:
    """The landing files of one day: regular files ``<partition>*.jsonl``, sorted by name."""
    return scan_landing(landing, partition).files


def ingest_partition(
    landing: Path,
    partition: str,
    *,
    known_labels: Iterable[str],
    known_routes: Iterable[str],
    out_dir: Path,
    quarantine_dir: Path,
    limits: IngestLimits | None = None,
) -> IngestResult:
    """Validate one day's landing files into ``out_dir/<partition>.parquet``; quarantine the rest.

    A day without landing files is a quiet day, not an error: it gives an empty log (the
    ``inference_log`` asset reports it through its ``traffic_received`` warning check).
    Raises ``IngestError`` only when the partition is not a date.
    """
    try:
        day = date.fromisoformat(partition)
    except ValueError as exc:
        raise IngestError(f"partition '{partition}' is not a YYYY-MM-DD date") from exc
    limits = limits or IngestLimits()
    scan = scan_landing(landing, partition)
    labels, routes = frozenset(known_labels), frozenset(known_routes)
    out_dir, quarantine_dir = Path(out_dir), Path(quarantine_dir)
    files_dir = quarantine_dir / partition

    valid: list[dict] = []
    bad: list[dict] = []
    rejected = dict(scan.refused)
    for path, reason in scan.refused.items():
        bad.append({"file": path, "line": None, "reason": reason, "raw": None})
    seen: set[str] = set()
    redacted: Counter = Counter()
    n_rows = 0
    whole_files: list[Path] = []
    for path in scan.files:
        rows, file_problem = _parse_file(path, limits)
        if file_problem is not None:
            rejected[str(path)] = file_problem
            bad.append({"file": str(path), "line": None, "reason": file_problem, "raw": None})
            whole_files.append(path)
            continue
        for lineno, raw, obj in rows:
            n_rows += 1
            reason = _problem(obj, day, labels, routes, limits) if isinstance(obj, dict) else obj
            if reason is None and obj["request_id"] in seen:
                reason = "duplicate request_id"
            if reason is None:
                seen.add(obj["request_id"])
                text, counts = redact_counts(obj["text"])
                redacted.update(counts)
                valid.append({**obj, "text": text})
            else:
                bad.append({"file": str(path), "line": lineno, "reason": reason, "raw": _keep(raw)})

    log = _frame(valid)
    log_path = out_dir / f"{partition}.parquet"
    with atomic_path(log_path) as tmp:
        log.to_parquet(tmp, index=False, schema=_schema())

    quarantine_path = quarantine_dir / f"{partition}.jsonl"
    shutil.rmtree(files_dir, ignore_errors=True)  # whole-file copies of an earlier ingest of this day
    if bad:
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        for path in whole_files:
            _quarantine_copy(path, files_dir, limits)
        atomic_write(quarantine_path, "".join(json.dumps(b, ensure_ascii=False) + "\n" for b in bad))
    else:
        quarantine_path.unlink(missing_ok=True)  # a stale quarantine from an earlier ingest of this day

    reviewed = log["reviewed_label"].fillna("").astype(str).str.strip() != ""
    return IngestResult(
        partition=partition,
        files=[str(p) for p in scan.files],
        n_rows=n_rows,
        n_valid=len(log),
        n_quarantined=len(bad),
        reasons=dict(Counter(b["reason"] for b in bad)),
        log_path=str(log_path),
        quarantine_path=str(quarantine_path) if bad else None,
        fallback_rate=float(log["fallback"].mean()) if len(log) else float("nan"),
        n_reviewed=int(reviewed.sum()),
        rejected_files=rejected,
        unmatched_files=scan.unmatched,
        redacted=dict(redacted),
    )


def load_log(out_dir: Path, partition: str) -> pd.DataFrame:
    """The validated records of one day (raises ``FileNotFoundError`` if it was never ingested)."""
    path = Path(out_dir) / f"{partition}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no inference log for {partition}; ingest the partition first")
    return pd.read_parquet(path)


def _lines(path: Path, max_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, raw bytes without the newline, ends past ``max_bytes``) per line, split on ``\\n`` only.

    Reads in 1 MiB chunks. A line that ends past ``max_bytes`` is yielded cut to
    ``RAW_KEEP_CHARS`` bytes, so memory stays bounded whatever the file holds.
    """
    chunk_size = 1 << 20
    with path.open("rb") as fh:
        lineno, pos, buf, start = 0, 0, b"", True
        overflow: bytes | None = None  # the head of a line too long to keep whole
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            if start:
                start = False
                if chunk.startswith(_BOM):
                    chunk, pos = chunk[len(_BOM) :], len(_BOM)
            if overflow is not None:
                head, sep, rest = chunk.partition(b"\n")
                pos += len(head)
                if not sep:
                    continue
                lineno += 1
                pos += 1
                yield lineno, overflow, True
                overflow, chunk = None, rest
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                lineno += 1
                pos += len(raw) + 1
                over = pos > max_bytes
                yield lineno, raw[:RAW_KEEP_CHARS] if over else raw, over
            if pos + len(buf) > max_bytes and len(buf) > RAW_KEEP_CHARS:
                overflow, pos, buf = buf[:RAW_KEEP_CHARS], pos + len(buf), b""
        if overflow is not None:
            yield lineno + 1, overflow, True
        elif buf:
            pos += len(buf)
            over = pos > max_bytes
            yield lineno + 1, buf[:RAW_KEEP_CHARS] if over else buf, over


def _parse_file(path: Path, limits: IngestLimits) -> tuple[list, str | None]:
    """(rows, None) with (line number, raw line, parsed object or a reason) per non-blank line,
    or ([], reason) when the file cannot be parsed at all (no line is a JSON object)."""
    rows = []
    first_error: tuple[int, str] | None = None
    any_object = False
    try:
        lines = list(_lines(path, limits.max_file_bytes))
    except OSError as exc:
        return [], f"cannot be read: {exc.strerror or exc}"
    for lineno, raw_bytes, too_far in lines:
        if not raw_bytes.strip(b" \t\r"):
            continue
        raw = raw_bytes.decode("utf-8", errors="replace")
        if too_far:
            rows.append((lineno, raw, f"file larger than {limits.max_file_bytes} bytes"))
            continue
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            first_error = first_error or (lineno, f"not UTF-8 ({exc.reason})")
            rows.append((lineno, raw, "not UTF-8"))
            continue
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            first_error = first_error or (lineno, getattr(exc, "msg", "nested too deeply"))
            rows.append((lineno, raw, "invalid JSON"))
            continue
        if isinstance(obj, dict):
            any_object = True
            rows.append((lineno, raw, obj))
        else:
            first_error = first_error or (lineno, f"a JSON {type(obj).__name__}, not an object")
            rows.append((lineno, raw, "not a JSON object"))
    if rows and not any_object and first_error is not None:
        line, msg = first_error
        return [], f"cannot be parsed: line {line}: {msg}"
    return rows, None


def _keep(raw: str) -> str:
    """A quarantined line as stored: redacted, cut to ``RAW_KEEP_CHARS`` characters."""
    return redact(raw[:RAW_KEEP_CHARS])


def _quarantine_copy(path: Path, files_dir: Path, limits: IngestLimits) -> None:
    """A redacted copy of a whole-file reject (its first ``max_file_bytes``), for the producer to inspect."""
    files_dir.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as fh:
        data = fh.read(limits.max_file_bytes)
    text = data.decode("utf-8", errors="backslashreplace")
    out = files_dir / path.name
    atomic_write(out, "\n".join(redact(line) for line in text.split("\n")))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _problem(obj: dict, day: date, labels: frozenset[str], routes: frozenset[str], limits: IngestLimits) -> str | None:
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
    if len(obj["text"]) > limits.max_text_chars:
        return f"text: longer than {limits.max_text_chars} characters"
    m = _CONTROL.search(obj["text"])
    if m is not None:
        return f"text: contains the control character U+{ord(m.group(0)):04X}"
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
