"""Ingesting landing files into the inference log: valid rows kept with their types, every bad
row quarantined with its reason and counted, garbage files refused, re-ingest idempotent, and
the log readable by the feedback loop."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data import feedback
from agent_pipeline.lib.monitoring.ingest import IngestError, ingest_partition, landing_files, load_log
from agent_pipeline.lib.monitoring.records import RECORD_COLUMNS
from agent_pipeline.lib.router.agents import AgentRegistry

DAY = "2026-03-02"
AGENTS = AgentRegistry(
    "general", {"balance": "banking", "transfer": "banking", "book_flight": "travel"}, frozenset({"weather"})
)


def record(i: int, **changes) -> dict:
    rec = {
        "timestamp": f"{DAY}T10:{i // 60 % 60:02d}:{i % 60:02d}.250000+00:00",
        "request_id": f"req-{i:04d}",
        "text": f"what is my balance number {i}",
        "route": "banking",
        "agent": "banking",
        "label": "balance",
        "confidence": 0.91,
        "fallback": False,
        "latency_ms": 0.42,
        "model_version": "3",
        "reviewed_label": None,
    }
    rec.update(changes)
    return rec


def write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def run(landing: Path, tmp_path: Path, partition: str = DAY):
    return ingest_partition(
        landing,
        partition,
        known_labels=AGENTS.known_labels,
        known_routes=set(AGENTS.routes),
        out_dir=tmp_path / "log",
        quarantine_dir=tmp_path / "quarantine",
    )


def test_good_file_is_ingested_whole_with_contract_types(tmp_path):
    landing = tmp_path / "landing"
    rows = [record(i) for i in range(5, 0, -1)]  # out of time order on purpose
    rows[1] |= {
        "route": "fallback",
        "agent": "general",
        "label": "oos",
        "confidence": 0.2,
        "fallback": True,
        "reviewed_label": "transfer",
    }
    rows[2]["reviewed_label"] = ""
    rows[3]["timestamp"] = f"{DAY}T23:59:59+01:00"  # 22:59:59 UTC, same day
    write(landing / f"{DAY}-stable-s1.jsonl", rows)
    write(landing / "2026-03-03-stable-s1.jsonl", [record(9, timestamp="2026-03-03T01:00:00+00:00")])

    result = run(landing, tmp_path)
    assert result.files == [str(landing / f"{DAY}-stable-s1.jsonl")]
    assert (result.n_rows, result.n_valid, result.n_quarantined, result.reasons) == (5, 5, 0, {})
    assert result.quarantine_path is None and not (tmp_path / "quarantine" / f"{DAY}.jsonl").exists()
    assert result.fallback_rate == pytest.approx(0.2)
    assert result.n_reviewed == 1
    log = load_log(tmp_path / "log", DAY)
    assert list(log.columns) == list(RECORD_COLUMNS)
    assert str(log["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert log["timestamp"].is_monotonic_increasing
    assert log["timestamp"].iloc[-1] == pd.Timestamp(f"{DAY}T22:59:59", tz="UTC")
    assert log["fallback"].dtype == bool and log["confidence"].dtype == "float64"
    assert log["reviewed_label"].tolist().count(None) == 4
    assert result.to_metadata()["n_valid"] == 5 and result.to_metadata()["quarantined_share"] == 0.0


def test_every_bad_row_is_quarantined_with_its_reason(tmp_path):
    landing = tmp_path / "landing"
    no_text = record(3)
    del no_text["text"]
    bad = {
        "invalid JSON": '{"timestamp": "2026-03-02T10:00:00+00:00", "request_id": ',
        "not a JSON object": "[1, 2, 3]",
        "missing field: text": no_text,
        "unexpected field: user_id": record(4, user_id="u1"),
        "text: not a non-empty string": record(5, text="   "),
        "request_id: not a non-empty string": record(6, request_id=17),
        "timestamp: not an ISO 8601 string": record(7, timestamp="yesterday"),
        "timestamp: no UTC offset": record(8, timestamp=f"{DAY}T10:00:00"),
        "timestamp: not on the partition's UTC date": record(9, timestamp=f"{DAY}T23:30:00-02:00"),
        "route: not a known route": record(10, route="weather_agent"),
        "label: not a known label": record(11, label="astrology"),
        "confidence: not a number in [0, 1]": record(12, confidence=1.5),
        "fallback: not a boolean": record(13, fallback="no"),
        "fallback: disagrees with route": record(14, fallback=True),
        "latency_ms: not a non-negative number": record(15, latency_ms=-1),
        "reviewed_label: not a known label": record(16, reviewed_label="astrology"),
        "duplicate request_id": record(17, request_id="req-0001"),
    }
    good = [record(1), record(2, route="travel", agent="travel", label="book_flight", reviewed_label="book_flight")]
    lines = good + list(bad.values()) + [""]  # a blank line is not a row
    write(landing / f"{DAY}-a.jsonl", lines)
    write(landing / f"{DAY}-b.jsonl", [record(18, confidence="high"), record(19)])

    result = run(landing, tmp_path)
    expected = {reason: 1 for reason in bad} | {"confidence: not a number in [0, 1]": 2}
    assert result.reasons == expected
    assert (result.n_rows, result.n_valid, result.n_quarantined) == (len(good) + len(bad) + 2, 3, len(bad) + 1)
    assert result.n_valid + result.n_quarantined == result.n_rows
    assert sorted(load_log(tmp_path / "log", DAY)["request_id"]) == ["req-0001", "req-0002", "req-0019"]

    quarantined = [json.loads(x) for x in Path(result.quarantine_path).read_text(encoding="utf-8").splitlines()]
    assert len(quarantined) == result.n_quarantined
    a_lines = (landing / f"{DAY}-a.jsonl").read_text(encoding="utf-8").splitlines()
    for q in quarantined:
        assert set(q) == {"file", "line", "reason", "raw"}
        assert q["raw"] == Path(q["file"]).read_text(encoding="utf-8").splitlines()[q["line"] - 1]
    first = quarantined[0]
    assert (Path(first["file"]).name, first["line"], first["reason"], first["raw"]) == (
        f"{DAY}-a.jsonl",
        3,
        "invalid JSON",
        a_lines[2],
    )
    assert quarantined[-1]["file"].endswith(f"{DAY}-b.jsonl") and quarantined[-1]["line"] == 1


def test_reingest_is_idempotent_and_clears_a_fixed_quarantine(tmp_path):
    landing = tmp_path / "landing"
    path = write(landing / f"{DAY}-x.jsonl", [record(1), record(2), record(3, route="nowhere")])
    first = run(landing, tmp_path)
    before = Path(first.log_path).read_bytes()
    again = run(landing, tmp_path)
    assert again == first and Path(again.log_path).read_bytes() == before
    assert again.n_quarantined == 1 and Path(again.quarantine_path).is_file()

    write(path, [record(1), record(2), record(3)])
    fixed = run(landing, tmp_path)
    assert (fixed.n_valid, fixed.n_quarantined, fixed.quarantine_path) == (3, 0, None)
    assert not (tmp_path / "quarantine" / f"{DAY}.jsonl").exists()


def test_garbage_files_are_quarantined_whole_and_the_other_files_ingested(tmp_path):
    landing = tmp_path / "landing"
    write(landing / f"{DAY}-a.jsonl", [record(1)])
    csv = write(landing / f"{DAY}-b.jsonl", ["", "id,text,label", "1,hello jo@x.io,greeting"])
    result = run(landing, tmp_path)
    assert (result.n_valid, result.n_quarantined) == (1, 1)
    assert result.rejected_files == {str(csv): "cannot be parsed: line 2: Expecting value"}
    quarantined = [json.loads(x) for x in Path(result.quarantine_path).read_text().splitlines()]
    assert quarantined == [
        {"file": str(csv), "line": None, "reason": "cannot be parsed: line 2: Expecting value", "raw": None}
    ]
    copy = tmp_path / "quarantine" / DAY / csv.name
    assert copy.read_text() == "\nid,text,label\n1,hello [EMAIL],greeting\n"  # redacted copy for the producer

    csv.unlink()
    binary = landing / f"{DAY}-c.jsonl"
    binary.write_bytes(json.dumps(record(2)).encode() + b"\n" + b'{"text": "caf\xe9"}\n')
    result = run(landing, tmp_path)  # a line that is not UTF-8 is one bad row, not a bad file
    assert (result.n_valid, result.n_quarantined, result.rejected_files) == (2, 1, {})
    assert result.reasons == {"not UTF-8": 1}
    assert not copy.exists()  # the copy of the fixed day's reject is gone

    garbage = landing / f"{DAY}-d.jsonl"
    garbage.write_bytes(b"\x00\xff\xfe binary \x89PNG\r\n")
    result = run(landing, tmp_path)
    assert result.rejected_files == {str(garbage): "cannot be parsed: line 1: not UTF-8 (invalid start byte)"}
    assert result.n_valid == 2


def test_quiet_day_and_bad_partition_name(tmp_path):
    landing = tmp_path / "landing"
    write(landing / "2026-03-01-stable-s1.jsonl", [record(1, timestamp="2026-03-01T00:00:00+00:00")])
    with pytest.raises(FileNotFoundError, match=f"no inference log for {DAY}"):
        load_log(tmp_path / "log", DAY)
    quiet = run(landing, tmp_path)  # no file for DAY: an empty day, not an error
    assert (quiet.n_rows, quiet.n_valid, quiet.files) == (0, 0, [])
    assert load_log(tmp_path / "log", DAY).empty
    with pytest.raises(IngestError, match="partition 'march' is not a YYYY-MM-DD date"):
        run(landing, tmp_path, partition="march")
    assert [p.name for p in landing_files(landing, "2026-03-01")] == ["2026-03-01-stable-s1.jsonl"]


def test_feedback_reads_reviewed_rows_from_the_log(tmp_path):
    rows = [record(i, reviewed_label="balance" if i % 2 else None) for i in range(1, 7)]
    rows.append(record(7, text="what is my balance number 1", reviewed_label="transfer"))  # a later review wins
    write(tmp_path / "landing" / f"{DAY}-s.jsonl", rows)
    result = ingest_partition(
        tmp_path / "landing",
        DAY,
        known_labels=AGENTS.known_labels,
        known_routes=set(AGENTS.routes),
        out_dir=settings.inference_log_dir(tmp_path),
        quarantine_dir=tmp_path / "quarantine",
    )
    assert result.n_reviewed == 4
    examples = feedback.reviewed_examples(tmp_path, AGENTS)
    assert dict(zip(examples["text"], examples["label"])) == {
        "what is my balance number 1": "transfer",
        "what is my balance number 3": "balance",
        "what is my balance number 5": "balance",
    }
    assert set(examples["expected_route"]) == {"banking"}


def test_unicode_line_breaks_inside_strings_and_a_bom_lose_nothing(tmp_path):
    landing = tmp_path / "landing"
    texts = ["para one\u2028para two", "next\u0085line", "tab\tinside and \u2029 too", "crlf file"]
    rows = [json.dumps(record(i, text=t), ensure_ascii=False) for i, t in enumerate(texts)]
    path = landing / f"{DAY}-u.jsonl"
    landing.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode("utf-8") + b"\r\n")
    bom_only = landing / f"{DAY}-v.jsonl"
    bom_only.write_bytes(b"\xef\xbb\xbf" + json.dumps(record(9)).encode())  # one line, BOM, no newline
    result = run(landing, tmp_path)
    assert (result.n_rows, result.n_valid, result.n_quarantined) == (5, 5, 0)
    log = load_log(tmp_path / "log", DAY)
    assert set(log["text"]) == set(texts) | {record(9)["text"]}


def test_symlinks_and_outside_files_are_refused_unopened(tmp_path):
    landing = tmp_path / "landing"
    write(landing / f"{DAY}-a.jsonl", [record(1)])
    secret = write(tmp_path / "outside" / "secret.jsonl", ['{"secret": "do not read me"}'])
    (landing / f"{DAY}-link.jsonl").symlink_to(secret)
    (landing / f"{DAY}-passwd.jsonl").symlink_to("/etc/passwd")
    (landing / f"{DAY}-dangling.jsonl").symlink_to(tmp_path / "nowhere")
    (landing / f"{DAY}-dir.jsonl").mkdir()
    result = run(landing, tmp_path)
    assert result.n_valid == 1 and result.files == [str(landing / f"{DAY}-a.jsonl")]
    assert sorted(Path(p).name for p in result.rejected_files) == [
        f"{DAY}-dangling.jsonl",
        f"{DAY}-dir.jsonl",
        f"{DAY}-link.jsonl",
        f"{DAY}-passwd.jsonl",
    ]
    assert result.rejected_files[str(landing / f"{DAY}-link.jsonl")].startswith("refused: a symlink")
    stored = Path(result.quarantine_path).read_text()
    assert "do not read me" not in stored and "root:" not in stored
    assert result.n_quarantined == 4 and result.reasons["refused: not a regular file"] == 1


def test_misnamed_files_are_reported(tmp_path):
    landing = tmp_path / "landing"
    write(landing / f"{DAY}-a.jsonl", [record(1)])
    write(landing / "traffic.jsonl", [record(2)])
    write(landing / "2026-3-2.jsonl", [record(3)])
    write(landing / f"{DAY}.json", [record(4)])
    write(landing / f".{DAY}-tmp.jsonl.tmp", [record(5)])  # a writer's temporary file: not reported
    result = run(landing, tmp_path)
    assert result.n_valid == 1
    assert result.unmatched_files == sorted(["2026-3-2.jsonl", f"{DAY}.json", "traffic.jsonl"])
    assert result.to_metadata()["n_unmatched_files"] == 3


def test_size_limits_quarantine_long_texts_and_rows_past_the_file_limit(tmp_path):
    from agent_pipeline.lib.monitoring.ingest import RAW_KEEP_CHARS, IngestLimits

    landing = tmp_path / "landing"
    rows = [record(1), record(2, text="x" * 101), record(3), record(4), record(5)]
    path = write(landing / f"{DAY}-a.jsonl", rows)
    line_len = len(json.dumps(record(1))) + 1
    limits = IngestLimits(max_text_chars=100, max_file_bytes=3 * line_len + 120)  # rows 1-3 fit (row 2 is longer)
    result = ingest_partition(
        landing,
        DAY,
        known_labels=AGENTS.known_labels,
        known_routes=set(AGENTS.routes),
        out_dir=tmp_path / "log",
        quarantine_dir=tmp_path / "quarantine",
        limits=limits,
    )
    assert result.n_valid == 2 and result.n_rows == 5
    assert result.reasons == {
        "text: longer than 100 characters": 1,
        f"file larger than {limits.max_file_bytes} bytes": 2,
    }
    # one endless line: quarantined with its head only, memory bounded
    huge = landing / f"{DAY}-b.jsonl"
    huge.write_bytes(b'{"text": "' + b"y" * (3 << 20) + b'"}\n' + json.dumps(record(6)).encode() + b"\n")
    result = ingest_partition(
        landing,
        DAY,
        known_labels=AGENTS.known_labels,
        known_routes=set(AGENTS.routes),
        out_dir=tmp_path / "log",
        quarantine_dir=tmp_path / "quarantine",
        limits=IngestLimits(max_text_chars=100, max_file_bytes=1 << 20),
    )
    q = [json.loads(x) for x in Path(result.quarantine_path).read_text().splitlines()]
    endless = [r for r in q if r["file"] == str(huge)]
    assert [(r["line"], r["reason"]) for r in endless] == [(1, f"file larger than {1 << 20} bytes")] * 1 + [
        (2, f"file larger than {1 << 20} bytes")
    ]  # the line after the endless one ends past the limit too
    assert len(endless[0]["raw"]) == RAW_KEEP_CHARS
    assert result.n_valid == 4  # the first file's rows 1, 3, 4, 5 (row 2's text is too long)
    with pytest.raises(IngestError, match="max_text_chars must be a positive integer"):
        IngestLimits(max_text_chars=0)
    assert path.is_file()


def test_texts_are_redacted_before_the_log_and_quarantine(tmp_path):
    landing = tmp_path / "landing"
    write(
        landing / f"{DAY}-a.jsonl",
        [
            record(1, text="my card 4111 1111 1111 1111 was declined, mail jo@x.io"),
            record(2, text="where is order 4155552671"),
            record(3, text="call me at +1 415-555-2671", route="nowhere"),
        ],
    )
    result = run(landing, tmp_path)
    log = load_log(tmp_path / "log", DAY)
    assert list(log["text"]) == ["my card [CARD] was declined, mail [EMAIL]", "where is order 4155552671"]
    assert result.redacted == {"card": 1, "email": 1}
    stored = Path(result.quarantine_path).read_text()
    assert "[PHONE]" in stored and "555-2671" not in stored
