"""The sealed holdout: disjoint from every other dataset, read only by its gate, every read logged,
and a candidate that learned its evaluation sets fails it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.data.synthetic import generate_variants
from agent_pipeline.lib.evaluation import holdout
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry.models import LoadedModel
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.calibration import CalibrationSettings
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router
from agent_pipeline_tests.conftest import small_policy_config

ROOT = settings.PROJECT_ROOT
SHARED = ROOT.parent / "shared" / "datasets" / "clinc150"
# Anything that could open the holdout: its file name, its environment variable, the module's readers.
READERS = re.compile(r"holdout\.csv|AGENT_PIPELINE_HOLDOUT_DATA|HOLDOUT_DATA|holdout_path|read_sealed")
ALLOWED = {
    "agent_pipeline/lib/core/settings.py",  # its default path (DEFAULT_HOLDOUT_DATA)
    "agent_pipeline/defs/resources.py",  # RouterFiles.holdout_path (AGENT_PIPELINE_HOLDOUT_DATA)
    "agent_pipeline/lib/evaluation/holdout.py",  # the one module that reads it
    "agent_pipeline/defs/evaluation/generalization_checks.py",  # the gate: read_sealed
    "scripts/prepare_data.py",  # writes it, once
}
HOLDOUT = settings.DEFAULT_HOLDOUT_DATA


def _norm(texts) -> set[str]:
    return {" ".join(str(t).lower().split()) for t in texts}


def test_only_the_gate_reads_the_holdout():
    found = set()
    for folder in ("agent_pipeline", "bench", "scripts", "deploy"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".yaml", ".yml", ".sh", ".toml", ".cfg", ".json"} and path.is_file():
                if READERS.search(path.read_text(encoding="utf-8", errors="replace")):
                    found.add(str(path.relative_to(ROOT)))
    assert found == ALLOWED, f"unexpected readers of the sealed holdout: {sorted(found - ALLOWED)}"
    importers = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "agent_pipeline").rglob("*.py")
        if re.search(r"evaluation import .*\bholdout\b|evaluation\.holdout", p.read_text(encoding="utf-8"))
    }
    assert importers == {"agent_pipeline/defs/evaluation/generalization_checks.py"}


def test_holdout_is_disjoint_from_every_other_dataset():
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    sealed = load_dataset(HOLDOUT, agents)
    counts = sealed["label"].value_counts()
    assert len(sealed) == 775 and counts["oos"] == 50 and (counts.drop("oos") == 5).all() and len(counts) == 146
    keys = _norm(sealed["text"])
    for path in (settings.DEFAULT_TRAIN_DATA, settings.DEFAULT_VALIDATION_DATA, settings.DEFAULT_TRAFFIC_POOL,
                 settings.DEFAULT_GOLDEN_DATA):  # fmt: skip
        other = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert not keys & _norm(other["text"]), f"{path.name} shares texts with the sealed holdout"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the CLINC150 source copy {SHARED} is not on this machine")
def test_prepare_data_reproduces_the_committed_files(tmp_path):
    script = tmp_path / "scripts" / "prepare_data.py"
    script.parent.mkdir()
    shutil.copy(ROOT / "scripts" / "prepare_data.py", script)
    subprocess.run([sys.executable, str(script), str(SHARED)], check=True, capture_output=True)
    for name in ("train.csv", "val.csv", "holdout.csv", "traffic_pool.csv"):
        assert (tmp_path / "data" / "clinc150" / name).read_bytes() == (ROOT / "data" / "clinc150" / name).read_bytes()


def test_every_read_is_logged(tmp_path):
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    assert holdout.read_access_log(tmp_path) == []
    holdout.read_sealed(HOLDOUT, tmp_path, agents, purpose="gate generalizes_to_holdout", reader={"model_version": "3"})
    holdout.read_sealed(HOLDOUT, tmp_path, agents, purpose="gate generalizes_to_holdout", reader={"model_version": "4"})
    log = holdout.read_access_log(tmp_path)
    assert [e["model_version"] for e in log] == ["3", "4"]
    assert {e["rows"] for e in log} == {775} and all(e["time"] and e["user"] and len(e["sha256"]) == 64 for e in log)


def test_a_missing_holdout_fails_closed(tmp_path):
    registry = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    with pytest.raises(FileNotFoundError, match="sealed holdout is missing"):
        holdout.read_sealed(tmp_path / "nope.csv", tmp_path, registry, purpose="t", reader={})
    assert holdout.read_access_log(tmp_path) == []


@pytest.fixture(scope="module")
def eval_sets():
    """The pipeline's eval sets as its assets build them (golden + seeded variants), on a slice."""
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    rules = rules_from_config(raw, agents)
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents).groupby("label", group_keys=False).head(40)
    val = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents).groupby("label", group_keys=False).head(6)
    golden = load_dataset(settings.DEFAULT_GOLDEN_DATA, agents, id_prefix="golden")
    cases = pd.concat([golden, val.groupby("label", group_keys=False).head(4)], ignore_index=True)
    synthetic = generate_variants(
        cases, seed=20261125, protected_patterns=[p for r in rules for p in r.patterns], exclude_texts=train["text"]
    )
    st = replace(
        TrainSettings.from_config(raw), tier="fast", max_iter=100, calibration=CalibrationSettings(method="validation")
    )
    return agents, rules, train, val, {"golden": golden, "synthetic": synthetic}, st


def _judge(router, agents, eval_sets, train, policy):
    model = LoadedModel("t", "1", None, router)
    ev = evaluation.evaluate(model, eval_sets, version="1", measure_latency=False)
    sealed = load_dataset(HOLDOUT, agents)
    cfg = policy["gates"]["generalizes_to_holdout"]
    return holdout.judge(
        model, sealed, eval_metrics=ev.metrics, training_texts=train["text"], eval_texts=ev.items["text"],
        floors=cfg["floors"], max_gap=cfg["max_gap"], max_leaked_share=cfg["max_leaked_share"],
    )  # fmt: skip


def test_a_candidate_that_learned_its_eval_sets_fails(eval_sets):
    agents, rules, train, val, sets, st = eval_sets
    policy = small_policy_config()
    honest, _ = train_router(train, val, agents, rules, st)
    ok = _judge(honest, agents, sets, train, policy)
    assert ok.passed, ok.description
    assert ok.n_scored == ok.n_rows == 775 and ok.n_in_training == 0
    # the same recipe with the eval sets folded into training
    cols = ["id", "text", "label", "expected_route", "tags"]
    learned_train = pd.concat([train[cols], sets["golden"][cols], sets["synthetic"][cols]], ignore_index=True)
    learned, _ = train_router(learned_train, val, agents, rules, st)
    bad = _judge(learned, agents, sets, learned_train, policy)
    print("honest", ok.metrics, ok.gaps, "learned", bad.metrics, bad.gaps)
    assert not bad.passed
    assert "learned its evaluation sets" in bad.description, bad.description
    assert (
        bad.gaps["route_accuracy"]
        > policy["gates"]["generalizes_to_holdout"]["max_gap"]["route_accuracy"]
        >= ok.gaps["route_accuracy"]
    )


def test_holdout_texts_in_training_are_excluded_and_counted(eval_sets):
    agents, rules, train, val, sets, st = eval_sets
    policy = small_policy_config()
    sealed = load_dataset(HOLDOUT, agents)
    leak = sealed.iloc[:40]  # e.g. reviewed feedback that repeats holdout texts
    leaked_train = pd.concat([train, leak], ignore_index=True)
    router, _ = train_router(leaked_train, val, agents, rules, st)
    result = _judge(router, agents, sets, leaked_train, policy)
    assert result.n_in_training == 40 and result.n_scored == 735
    assert not result.passed and "cannot judge this candidate" in result.description
    few = _judge(router, agents, sets, pd.concat([train, leak.iloc[:5]]), policy)
    assert few.n_in_training == 5 and "cannot judge" not in few.description


def test_gap_table_names_every_metric(eval_sets):
    result = holdout.HoldoutJudgement(
        True, "", {"route_accuracy": 0.9}, {"route_accuracy": 0.95}, {"route_accuracy": 0.05}, 1, 1, 0, 0
    )
    assert "| route_accuracy | 0.950 | 0.900 | +0.050 |" in result.table()
    assert Path(holdout.access_log_path(Path("/x"))) == Path("/x/holdout/access.jsonl")


def test_an_empty_holdout_fails_closed(eval_sets):
    agents, rules, train, val, sets, st = eval_sets
    result = holdout.judge(
        None, load_dataset(HOLDOUT, agents).iloc[:0], eval_metrics={}, training_texts=train["text"],
        floors={"route_accuracy": 0.5}, max_gap={}, max_leaked_share=0.02,
    )  # fmt: skip
    assert not result.passed and "the holdout has no rows" in result.description
