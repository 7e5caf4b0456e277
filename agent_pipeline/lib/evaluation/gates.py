"""Promotion gates as plain functions, and the per-gate record every gate leaves next to its verdict.

Each gate returns a ``GateVerdict``: passed, a one-line description, ``numbers`` (scalars the UI
plots and the model card lists) and ``tables`` (markdown). ``defs/evaluation/checks.py`` turns a
verdict into a blocking asset check, writes the verdict to the registry (``gate.<name>`` tags,
what promotion trusts) and writes ``<evaluation folder>/gates/<name>.json`` (what the evidence
bundle shows), so a new gate's numbers appear in the model card without touching the card.

Fail closed: a gate whose inputs are missing fails and says how to fix it; a gate that raises is
recorded as failed (with the error) before the error propagates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_pipeline.lib.core import markdown, settings
from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.data import datasets
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry.policy import RegressionGate

GATES_DIR = "gates"


@dataclass
class GateVerdict:
    passed: bool
    description: str
    numbers: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)


# -- the record next to each verdict ---------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        return value.item()  # numpy scalars
    except AttributeError:
        return str(value)


def write_gate_record(
    evaluation_path: Path | str,
    name: str,
    passed: bool,
    description: str,
    numbers: dict[str, Any],
    *,
    version: str,
    evaluation_id: str,
    recorded_at: str,
    error: str = "",
) -> Path:
    """Write ``gates/<name>.json`` in the evaluation folder (atomically); returns its path."""
    folder = Path(evaluation_path) / GATES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "gate": name,
        "passed": bool(passed),
        "description": description,
        "numbers": _plain(numbers),
        "version": str(version),
        "evaluation_id": evaluation_id,
        "recorded_at": recorded_at,
        **({"error": error} if error else {}),
    }
    path = folder / f"{name}.json"
    return atomic_write(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_gate_records(evaluation_path: Path | str) -> dict[str, dict[str, Any]]:
    """Gate name -> its record, for every gate that ran on this evaluation."""
    folder = Path(evaluation_path) / GATES_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def gate_standing(store, home: Path, version: str, evaluation_id: str) -> tuple[dict[str, str], list[str]]:
    """Gate -> ``"passed"``/``"failed"`` for one evaluation of ``version``, from two witnesses.

    Every gate leaves its verdict twice: the ``gate.<name>`` tag on the registry version and
    ``gates/<name>.json`` in the evaluation folder of the state folder (``lib/evaluation/gates.py``).
    A gate counts only where both exist and agree: one witness alone (a crash between the two
    writes, a tag set by hand) leaves the gate out, i.e. not run; two that disagree make it
    ``"failed"``, and its name is returned in the second value (someone edited one of them).
    """
    registry = store.gate_results(version, evaluation_id)
    docs = read_gate_records(evaluation.evaluation_dir(home, version, evaluation_id))
    recorded = {
        g: "passed" if d.get("passed") is True else "failed"
        for g, d in docs.items()
        if str(d.get("version")) == str(version) and d.get("evaluation_id") == evaluation_id
    }
    standing, disagreeing = {}, []
    for gate in sorted(registry.keys() & recorded.keys()):
        if registry[gate] == recorded[gate]:
            standing[gate] = registry[gate]
        else:
            standing[gate] = "failed"
            disagreeing.append(gate)
    return standing, disagreeing


# -- the gates ---------------------------------------------------------------------------------
def regression(ev: evaluation.Evaluation, home: Path, cfg: RegressionGate, champion: str | None) -> GateVerdict:
    """``no_regression_vs_baseline``; without a baseline it passes only while nothing is champion."""
    pointer = settings.baseline_dir(home) / "current.json"
    found = evaluation.compare_with_baseline(ev, home, cfg.tolerances, cfg.max_new_failures)
    if found is None:
        if champion is None:
            return GateVerdict(
                True,
                "no baseline and no champion yet: the first promotion bootstraps the baseline",
                {"baseline": "none"},
            )
        return GateVerdict(
            False,
            f"no baseline at {pointer} while v{champion} is the champion: a lost baseline must not let any "
            f"candidate through. Restore baseline/current.json from {settings.baseline_dir(home) / 'history'} "
            f"or re-bless the champion: agent-pipeline bless --version {champion} --by NAME --reason TEXT",
            {"baseline": "missing", "champion_version": str(champion)},
        )
    report, info = found
    return GateVerdict(
        report.passed,
        report.summary(),
        {
            "baseline_version": str(info["version"]),
            "baseline_evaluation_id": str(info["evaluation_id"]),
            "n_newly_failing": len(report.newly_failing),
            "n_newly_passing": int(report.newly_passing),
        },
        {"comparison": report.markdown()},
    )


def critical_cases(ev: evaluation.Evaluation) -> GateVerdict:
    """``critical_cases_pass``: every golden case tagged ``critical`` takes its expected route."""
    items = ev.items
    critical = items[datasets.has_tag(items["tags"], "critical")]
    failed = critical[~critical["passed"]]
    passed = len(critical) > 0 and failed.empty
    if len(critical) == 0:
        description = "no critical cases in the evaluation sets: a golden set without critical cases cannot gate"
    elif failed.empty:
        description = f"all {len(critical)} critical cases take their expected route"
    else:
        description = f"{len(failed)} of {len(critical)} critical cases fail: " + ", ".join(
            f"{r.id} ({r.text!r}: expected {r.expected_route}, got {r.route})" for r in failed.head(5).itertuples()
        )
    table = markdown.frame_table(failed[["id", "text", "expected_route", "route", "confidence"]], empty="none")
    return GateVerdict(
        passed, description, {"n_critical": len(critical), "n_failed": len(failed)}, {"failed_cases": table}
    )
