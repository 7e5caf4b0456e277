"""Served requests -> landing files, in batches, atomically, redacted.

The server hands every answered request to ``LandingWriter.add`` (an in-memory append). A
background thread flushes the buffer every ``flush_seconds``, or as soon as ``max_batch``
records wait, into one new file per UTC day of the records:

    <landing>/<YYYY-MM-DD>-serve-<instance>-<seq>.jsonl

which the ingestion pattern (``<partition>*.jsonl``) and the landing sensor accept. Each file
is written under a hidden temporary name and renamed, so a reader never sees half a file, and
is never appended to afterwards. Texts go through ``redact`` in the flushing thread, before
anything reaches the disk; the original text is never written.

If a write fails (disk full, folder gone) the batch goes back to the buffer and is retried at
the next flush; beyond ``max_buffer`` waiting records the oldest are dropped, counted in
``dropped`` and logged (the server's metrics export both), never silently.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS

log = logging.getLogger(__name__)
_INSTANCE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def instance_name(raw: str) -> str:
    """A file-name-safe instance name (host, pid, start time)."""
    return _INSTANCE_RE.sub("-", raw).strip("-.")[:80] or "serve"


class LandingWriter:
    def __init__(
        self,
        landing: Path,
        *,
        instance: str,
        redact: Callable[[str], str],
        flush_seconds: float = 30.0,
        max_batch: int = 20_000,
        max_buffer: int = 200_000,
        on_flush: Callable[[int, int], None] | None = None,
    ) -> None:
        if flush_seconds <= 0 or max_batch < 1 or max_buffer < max_batch:
            raise ValueError(
                f"landing writer: flush_seconds ({flush_seconds}) > 0, max_batch ({max_batch}) >= 1 and "
                f"max_buffer ({max_buffer}) >= max_batch are required"
            )
        self.landing = Path(landing)
        self.instance = instance_name(instance)
        self.redact = redact
        self.flush_seconds = float(flush_seconds)
        self.max_batch = int(max_batch)
        self.max_buffer = int(max_buffer)
        self.on_flush = on_flush
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self.records_written = 0
        self.files_written = 0
        self.dropped = 0
        self.write_errors = 0

    # -- producer side (request handlers) ---------------------------------------------------
    def add(self, record: dict[str, Any]) -> None:
        """Queue one production record (text not yet redacted); never blocks on the disk."""
        with self._lock:
            self._buffer.append(record)
            full = len(self._buffer) >= self.max_batch
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    # -- flushing ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and write what is buffered (the server's shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a bug here must not kill the thread; it is logged
                log.exception("landing writer: flush failed")

    def flush(self) -> list[Path]:
        """Write everything buffered now; returns the files written (none when the buffer is empty)."""
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return []
            by_day: dict[str, list[dict[str, Any]]] = {}
            for rec in batch:
                by_day.setdefault(rec["timestamp"][:10], []).append(rec)
            written: list[Path] = []
            failed: list[dict[str, Any]] = []
            for day, records in sorted(by_day.items()):
                try:
                    written.append(self._write(day, records))
                except OSError as exc:
                    self.write_errors += 1
                    log.error(
                        "landing writer: cannot write %d records of %s to %s: %s", len(records), day, self.landing, exc
                    )
                    failed += records
            if failed:
                self._requeue(failed)
            if self.on_flush is not None:
                self.on_flush(len(batch) - len(failed), len(written))
            return written

    def _requeue(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self._buffer = records + self._buffer
            excess = len(self._buffer) - self.max_buffer
            if excess > 0:
                del self._buffer[:excess]
                self.dropped += excess
        if excess > 0:
            log.error("landing writer: %d production records dropped (buffer limit %d)", excess, self.max_buffer)

    def _write(self, day: str, records: list[dict[str, Any]]) -> Path:
        lines = []
        for rec in records:
            row = {k: rec[k] for k in RECORD_COLUMNS}
            row["text"] = self.redact(row["text"])
            lines.append(json.dumps(row, ensure_ascii=False))
        self._seq += 1
        name = f"{day}-serve-{self.instance}-{self._seq:06d}.jsonl"
        path = atomic_write(self.landing / name, "\n".join(lines) + "\n")
        self.records_written += len(records)
        self.files_written += 1
        return path


def default_instance() -> str:
    import socket

    return f"{socket.gethostname()}-{os.getpid()}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
