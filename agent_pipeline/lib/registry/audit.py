"""The tamper-evident audit log: append-only JSON lines, each record chained to the one before.

Every promotion, approval, revocation, bless and rollback appends one record
(``$AGENT_PIPELINE_HOME/registry/audit.jsonl``) with who, when, why and the hashes involved.
Each record carries ``seq`` (1, 2, ...), ``prev_hash`` (the previous record's ``hash``; 64 zeros
for the first) and ``hash`` = sha256 of the record's canonical JSON without ``hash``. A head
file (``audit.head``) keeps the last ``seq`` and ``hash``, so removing the last records is
caught too. ``verify`` names the first record that was changed, removed or reordered.

Writers take an exclusive ``fcntl`` lock on the log, read the last record, and append the new
line with a single ``write`` followed by ``fsync`` (and the head the same way), so concurrent
writers (two Dagster runs, a CLI) cannot interleave partial records or fork the chain.

What this does not stop: someone who can write the state folder can rewrite the whole chain and
the head consistently. Copy the head elsewhere (``ModelRegistry`` mirrors it into a registered
model tag) to catch that.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.files import atomic_write

GENESIS = "0" * 64


def log_path(home: Path | None = None) -> Path:
    return settings.audit_log_path(home)


def head_path(home: Path | None = None) -> Path:
    return log_path(home).with_name("audit.head")


def canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """The record as it will read back (tuples as lists, other objects as strings, NaN as null)."""

    def fix(v: Any) -> Any:
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return v

    return json.loads(json.dumps(fix(record), default=str))


def _last_line(fd: int) -> bytes:
    """The last non-empty line of the open file (read backwards in blocks)."""
    end = os.lseek(fd, 0, os.SEEK_END)
    buf = b""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        stripped = buf.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return buf.rstrip(b"\n")


@contextmanager
def locked(home: Path) -> Iterator[int]:
    """The audit log opened for appending under an exclusive lock (held for the block)."""
    path = log_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append(home: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append ``record`` to the chain; returns it with ``seq``, ``prev_hash`` and ``hash``."""
    with locked(home) as fd:
        last = _last_line(fd)
        if last:
            prev = json.loads(last)
            seq, prev_hash = int(prev["seq"]) + 1, str(prev["hash"])
        else:
            seq, prev_hash = 1, GENESIS
        full = _jsonable({**record, "seq": seq, "prev_hash": prev_hash})
        full["hash"] = record_hash(full)
        line = json.dumps(full, sort_keys=True, ensure_ascii=False, allow_nan=False).encode() + b"\n"
        os.write(fd, line)  # one write of the whole line (O_APPEND): never interleaved
        os.fsync(fd)
        atomic_write(head_path(home), json.dumps({"seq": seq, "hash": full["hash"]}) + "\n")
        return full


def read(home: Path) -> list[dict[str, Any]]:
    """Every record, oldest first (unverified; see ``verify``)."""
    path = log_path(home)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class Verification:
    ok: bool
    n_records: int
    first_bad: int | None  # 1-based line number of the first bad record
    reason: str

    def line(self, home: Path) -> str:
        if self.ok:
            return f"audit log {log_path(home)}: {self.n_records} records, chain intact"
        return f"audit log {log_path(home)}: record {self.first_bad} is bad: {self.reason}"


def verify(home: Path, anchor: str | None = None) -> Verification:
    """Check every record's hash, its link to the previous one, its sequence number, and the head.

    ``anchor``: a copy of the head kept outside the state folder (``"<seq>:<hash>"``; the registry's
    ``audit.head`` tag, written at every champion change). The record it names must be in the log
    with that hash: rewriting the chain and the head file together is then caught too.
    """
    path = log_path(home)
    lines = path.read_text(encoding="utf-8").split("\n") if path.is_file() else []
    if lines and lines[-1] == "":
        lines.pop()
    prev_hash, n = GENESIS, 0
    hashes: list[str] = []
    for i, raw in enumerate(lines, start=1):
        try:
            rec = json.loads(raw)
            assert isinstance(rec, dict)
        except (ValueError, AssertionError):
            return Verification(False, len(lines), i, "not a JSON object (a partial or edited line)")
        if "hash" not in rec or "prev_hash" not in rec:
            return Verification(False, len(lines), i, "no hash chain fields (written outside the audit log API)")
        if rec["prev_hash"] != prev_hash:
            return Verification(
                False,
                len(lines),
                i,
                "prev_hash does not match the record before it (a record was removed or reordered)",
            )
        if rec.get("seq") != i:
            return Verification(
                False, len(lines), i, f"seq {rec.get('seq')} where {i} was expected (a record was removed or reordered)"
            )
        if record_hash(rec) != rec["hash"]:
            return Verification(False, len(lines), i, "its content does not match its hash (the record was edited)")
        prev_hash, n = rec["hash"], i
        hashes.append(rec["hash"])
    if anchor:
        seq_text, _, anchored = str(anchor).partition(":")
        seq = int(seq_text) if seq_text.isdigit() else 0
        if not (1 <= seq <= n and hashes[seq - 1] == anchored):
            return Verification(
                False,
                n,
                min(max(seq, 1), max(n, 1)),
                f"the registry's copy of the head (audit.head {anchor}) is not in this log: the log was rewritten or "
                "replaced since that champion change (restore it from a backup)",
            )
    head = head_path(home)
    if head.is_file():
        h = json.loads(head.read_text())
        if h.get("seq") != n or h.get("hash") != prev_hash:
            return Verification(
                False,
                n,
                n + 1 if int(h.get("seq", 0)) > n else n,
                f"the head says record {h.get('seq')} ends the log but the log ends at {n} (records were removed "
                "from the end, or the head was changed)",
            )
    elif n:
        return Verification(False, n, n, f"the head file {head} is missing")
    return Verification(True, n, None, "")
