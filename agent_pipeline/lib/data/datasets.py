"""Dataset files in the project's schema: loading, normalising, fingerprinting.

Schema (every dataset: training, validation, golden, synthetic, a team's own files):

=================  ========  ==============================================================
column             required  meaning
=================  ========  ==============================================================
``text``           yes       the user request
``label``          yes       a fine-grained label (a CLINC150 intent or a rule label);
                             ``oos`` = out of scope, so the fallback is expected
``expected_route`` no        the route the request must take; derived from ``label`` through
                             the agent registry when absent or empty
``id``             no        unique case id; derived from a hash of text and label if absent
``tags``           no        ``;``-separated tags, e.g. ``critical;rule``
=================  ========  ==============================================================

Other columns are kept as they are. Loading never silently drops or repairs rows: the
Great Expectations suite (``lib/data/expectations.py``) judges them, and a bad file fails its check.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from agent_pipeline.lib.core.errors import DatasetError
from agent_pipeline.lib.router.agents import AgentRegistry

REQUIRED_COLUMNS = ("text", "label")
OPTIONAL_COLUMNS = ("expected_route", "id", "tags")
SCHEMA_COLUMNS = ("id", "text", "label", "expected_route", "tags")


def case_id(text: str, label: str, prefix: str = "case") -> str:
    return f"{prefix}-" + hashlib.sha1(f"{label}\t{text}".encode()).hexdigest()[:12]


# C0 control characters and DEL, except tab, newline and carriage return (CSV and JSON
# carry those legitimately). pandas' C parser would cut a text at a NUL without a word.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _control_error(path: Path, where: str, ch: str) -> DatasetError:
    return DatasetError(
        f"{path}: {where}: contains the control character U+{ord(ch):04X}; remove it (texts are never cut silently)"
    )


def read_dataset(path: Path | str) -> pd.DataFrame:
    """Read a CSV or JSON Lines dataset as strings, exactly as stored (no repair).

    A NUL or other control character (U+0000-U+001F except tab, newline, CR; U+007F) anywhere
    in the file is a ``DatasetError`` naming the line (raw bytes) or the row and column (JSON
    escapes such as ``\\u0000``): nothing is cut or dropped silently.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file not found")
    raw = path.read_bytes()
    m = _CONTROL.search(raw.decode("latin-1"))
    if m is not None:
        line = raw[: m.start()].count(b"\n") + 1
        raise _control_error(path, f"line {line}", m.group(0))
    try:
        if path.suffix in {".jsonl", ".json"}:
            df = pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot parse dataset: {exc}") from exc
    for col in SCHEMA_COLUMNS:  # JSON numbers or booleans in a text column are judged as text
        if col in df.columns:
            df[col] = df[col].map(lambda v: v if v is None or isinstance(v, str) or v != v else str(v))
            for row, value in enumerate(df[col]):  # JSON escapes (\u0000) decode to control characters
                if isinstance(value, str) and (m := _CONTROL.search(value)):
                    raise _control_error(path, f"row {row} (0-based), column {col!r}", m.group(0))
    return df


def normalize(df: pd.DataFrame, registry: AgentRegistry | None = None, id_prefix: str = "case") -> pd.DataFrame:
    """Add the optional schema columns (``id``, ``expected_route``, ``tags``) where absent.

    Existing values are kept. Missing ``expected_route`` values are derived from ``label``
    through ``registry`` (when given). Required columns are not invented: a file without
    ``text`` or ``label`` keeps lacking them, and its schema check fails with that message.
    """
    out = df.copy()
    if "id" not in out.columns and {"text", "label"} <= set(out.columns):
        out.insert(0, "id", [case_id(str(t), str(lab), id_prefix) for t, lab in zip(out["text"], out["label"])])
    if "tags" not in out.columns:
        out["tags"] = ""
    out["tags"] = out["tags"].fillna("").astype(str)
    if "expected_route" not in out.columns:
        out["expected_route"] = ""
    out["expected_route"] = out["expected_route"].fillna("").astype(str)
    if registry is not None and "label" in out.columns:
        missing = out["expected_route"].str.strip() == ""
        out.loc[missing, "expected_route"] = [registry.route_for_label(str(x)) for x in out.loc[missing, "label"]]
    return out


def load_dataset(path: Path | str, registry: AgentRegistry | None = None, id_prefix: str = "case") -> pd.DataFrame:
    return normalize(read_dataset(path), registry, id_prefix)


def has_tag(tags: pd.Series, tag: str) -> pd.Series:
    """Boolean mask of rows whose ``;``-separated ``tags`` include ``tag``."""
    return tags.fillna("").astype(str).map(lambda s: tag in {t.strip() for t in s.split(";")})


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of a dataset (order-sensitive), used as its Dagster data version."""
    cols = [c for c in SCHEMA_COLUMNS if c in df.columns]
    h = hashlib.sha256()
    h.update(",".join(cols).encode())
    for row in df[cols].astype(str).itertuples(index=False, name=None):
        h.update("\x1f".join(row).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def file_fingerprint(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
