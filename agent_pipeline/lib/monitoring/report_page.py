"""A drift report a person can read on its own: what day, against which reference, which model.

Evidently's HTML says which columns drifted but not which day of traffic it looked at, which
reference it compared with, or which model version served that traffic. ``annotate`` puts that
in the page's title and in a banner at the top of the body (plain HTML, escaped), written
atomically, so the file is self-describing wherever it is opened (MLflow's artifact viewer, a
browser, an e-mail attachment).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from agent_pipeline.lib.core.files import atomic_write

BANNER_ID = "agent-pipeline-drift-context"


def describe(
    *,
    day: str,
    reference_version: str,
    reference_rows: int,
    served_versions: list[str],
    n_records: int,
    drift_detected: bool,
    reasons: list[str],
) -> dict[str, str]:
    """Title and the lines of the banner."""
    served = ", ".join(f"v{v}" for v in served_versions) or "unknown"
    verdict = "DRIFT: " + "; ".join(reasons) if drift_detected else "no drift detected"
    return {
        "title": f"Drift report {day}: traffic vs reference of model v{reference_version}",
        "day": f"Day: {day} ({n_records} production records, served by model version {served})",
        "reference": (
            f"Reference: {reference_rows} decisions of model version {reference_version}, "
            "captured when it was promoted to champion"
        ),
        "verdict": f"Verdict: {verdict}",
    }


def annotate(path: Path | str, context: dict[str, str]) -> Path:
    """Set the page title and insert the context banner after ``<body>`` (replacing an earlier one)."""
    path = Path(path)
    page = path.read_text(encoding="utf-8")
    page = re.sub(rf'<div id="{BANNER_ID}".*?</div>\n?', "", page, flags=re.S)
    lines = "".join(f'<p style="margin:2px 0">{html.escape(context[k])}</p>' for k in ("day", "reference", "verdict"))
    banner = (
        f'<div id="{BANNER_ID}" style="font-family:sans-serif;padding:12px 16px;border-bottom:1px solid #ccc;'
        f'background:#f6f8fa"><h2 style="margin:0 0 6px 0">{html.escape(context["title"])}</h2>{lines}</div>\n'
    )
    title = f"<title>{html.escape(context['title'])}</title>"
    page, n = re.subn(r"<title>.*?</title>", title, page, count=1, flags=re.S)
    if not n:
        page = re.sub(r"<head[^>]*>", lambda m: m.group(0) + title, page, count=1) if "<head" in page else title + page
    page, n = re.subn(r"<body[^>]*>", lambda m: m.group(0) + "\n" + banner, page, count=1)
    if not n:
        page = banner + page
    return atomic_write(path, page)
