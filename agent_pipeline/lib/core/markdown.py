"""The one markdown-table renderer (asset metadata, evaluation reports, confusion tables).

Cells are escaped (``|`` and newlines in user text would otherwise break the table), floats
formatted once, NaN shown empty (undefined, not 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def cell(value: object, floatfmt: str = ".4g", undefined: str = "") -> str:
    """One cell: floats formatted with ``floatfmt``, NaN as ``undefined``, ``|`` and newlines escaped."""
    if isinstance(value, float):
        return undefined if math.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(
    header: Sequence[object], rows: Iterable[Sequence[object]], floatfmt: str = ".4g", undefined: str = ""
) -> str:
    """A markdown table of ``rows`` under ``header`` (NaN cells read ``undefined``)."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v, floatfmt, undefined) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame, floatfmt: str = ".4g", empty: str = "(empty)") -> str:
    """A pandas DataFrame as a markdown table (no index); ``empty`` when it has no rows."""
    if len(frame) == 0:
        return empty
    return table([str(c) for c in frame.columns], frame.itertuples(index=False, name=None), floatfmt)
