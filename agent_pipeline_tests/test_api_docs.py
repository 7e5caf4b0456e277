"""docs/api.md is generated from the docstrings and must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_docs.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:] + "\nrun: python scripts/gen_api_docs.py"
    text = (ROOT / "docs" / "api.md").read_text()
    for name in ("agent_pipeline.lib.router.decision", "DecisionPolicy", "agent-pipeline route", "Settings"):
        assert name in text, name
