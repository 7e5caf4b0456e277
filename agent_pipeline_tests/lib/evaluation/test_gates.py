"""Two gates' logic without Dagster, on a real evaluation of a real (small) router.

``critical_cases_pass`` and ``no_regression_vs_baseline`` (``lib/evaluation/gates.py``): what
passes, what fails and what a lost baseline does, with the lines an operator reads.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import has_tag, load_dataset
from agent_pipeline.lib.evaluation import gates
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry.models import LoadedModel
from agent_pipeline.lib.registry.policy import RegressionGate
from agent_pipeline.lib.router.agents import load_agent_registry
from agent_pipeline_tests.conftest import tiny_router

STRICT = RegressionGate(tolerances={"route_accuracy": 0.0, "in_scope_accuracy": 0.0}, max_new_failures=0)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(home, saved evaluation of the golden set by a 20-per-label router)."""
    home = tmp_path_factory.mktemp("gates")
    router, _, _ = tiny_router()
    golden = load_dataset(settings.DEFAULT_GOLDEN_DATA, load_agent_registry(settings.DEFAULT_AGENTS_CONFIG))
    ev = evaluation.evaluate(
        LoadedModel("m", "1", None, router), {"golden": golden}, version="1", measure_latency=False
    )
    evaluation.save(ev, evaluation.evaluation_dir(home, "1", "20260101T000000Z-candidate-gates"))
    return home, evaluation.load(evaluation.evaluation_dir(home, "1", "20260101T000000Z-candidate-gates"))


def with_failed_critical(ev: evaluation.Evaluation, n: int) -> evaluation.Evaluation:
    """The same evaluation with ``n`` critical cases routed to ``fallback`` instead."""
    items = ev.items.copy()
    idx = items.index[has_tag(items["tags"], "critical") & (items["expected_route"] != "fallback")][:n]
    items.loc[idx, ["route", "passed"]] = ["fallback", False]
    return replace(ev, items=items)


def test_critical_cases_pass_only_when_every_critical_case_does(evaluated):
    _, ev = evaluated
    n_critical = int(has_tag(ev.items["tags"], "critical").sum())
    assert n_critical > 0
    clean = ev.items.copy()
    clean.loc[has_tag(clean["tags"], "critical"), "passed"] = True
    ok = gates.critical_cases(replace(ev, items=clean))
    assert ok.passed and ok.description == f"all {n_critical} critical cases take their expected route"
    bad = gates.critical_cases(with_failed_critical(replace(ev, items=clean), 2))
    assert not bad.passed and bad.numbers["n_failed"] == 2
    assert bad.description.startswith(f"2 of {n_critical} critical cases fail: ")
    assert "got fallback" in bad.description and "| route |" not in bad.description
    none = gates.critical_cases(replace(ev, items=clean[~has_tag(clean["tags"], "critical")]))
    assert not none.passed and "cannot gate" in none.description


def test_regression_without_a_baseline_passes_only_before_the_first_champion(evaluated):
    home, ev = evaluated
    first = gates.regression(ev, home, STRICT, champion=None)
    assert first.passed and "bootstraps the baseline" in first.description
    lost = gates.regression(ev, home, STRICT, champion="1")
    assert not lost.passed
    assert lost.description.startswith(f"no baseline at {settings.baseline_dir(home) / 'current.json'} while v1")
    assert "agent-pipeline bless --version 1" in lost.description


def test_regression_against_a_blessed_baseline(evaluated):
    home, ev = evaluated
    evaluation.bless(home, ev, blessed_by="test", blessed_at="2026-01-01T00:00:00Z")
    same = gates.regression(ev, home, STRICT, champion="1")
    assert same.passed, same.description
    assert same.numbers["baseline_version"] == "1" and same.numbers["n_newly_failing"] == 0
    worse = gates.regression(with_failed_critical(ev, 3), home, STRICT, champion="1")
    assert not worse.passed
    assert worse.numbers["n_newly_failing"] >= 1
    assert "comparison" in worse.tables
