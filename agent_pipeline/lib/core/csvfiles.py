"""The one CSV writer of the project: cells that a spreadsheet would run as a formula are neutralised.

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP's CSV
injection list) is written with a leading apostrophe, so ``=cmd|' /C calc'!A0`` opens as text,
not as a formula. A cell that already starts with an apostrophe gets one more, so
``read_csv`` restores every cell exactly (``unescape``). Numeric columns are written as
numbers (``-0.5`` stays a number); every text cell is quoted (a carriage return inside a
text would otherwise split its row). Files are written atomically.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

from agent_pipeline.lib.core.files import atomic_path

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"


def neutralise(value: Any) -> Any:
    """One cell as written: text starting with a formula character (or an apostrophe) gets a leading ``'``."""
    if isinstance(value, str) and value.startswith((*FORMULA_START, _ESCAPE)):
        return _ESCAPE + value
    return value


def unescape(value: Any) -> Any:
    """The inverse of ``neutralise`` for a cell read back as text."""
    if isinstance(value, str) and value.startswith(_ESCAPE):
        return value[1:]
    return value


def write_csv(df: pd.DataFrame, path: Path | str, **kwargs) -> Path:
    """``df.to_csv(path, index=False)`` with text cells neutralised, written to a temp name and renamed."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise)
    out.columns = [neutralise(str(c)) for c in out.columns]
    # Every text cell quoted: pandas leaves a lone CR unquoted, which splits the row on reading.
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, **{"quoting": csv.QUOTE_NONNUMERIC, **kwargs})
    return Path(path)


def read_csv(path: Path | str) -> pd.DataFrame:
    """A CSV written by ``write_csv``, every cell as text, exactly as it was before neutralising."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    df.columns = [unescape(c) for c in df.columns]
    for col in df.columns:
        df[col] = df[col].map(unescape)
    return df
