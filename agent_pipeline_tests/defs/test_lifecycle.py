"""The promotion lifecycle, end to end, on one Dagster instance and one state folder.

Training costs seconds, so the story is played once per module (the ``story`` fixture) and
each test reads one chapter of it:

A. ``train_and_promote_job`` from scratch: v1 trained, every gate passes, v1 becomes champion,
   the audit log, the baseline and the drift reference are written.
B. A worse candidate (v2, trained on a label-shuffled copy of the training file):
   ``no_regression_vs_baseline`` fails and names the cases, ``champion_model`` does not run,
   v1 stays champion.
C. A good candidate (v3) under a latency SLO nobody can meet: only ``latency_within_slo``
   fails, and promotion is blocked the same way.
D. ``champion_model`` alone, in a later run, on C's evaluation: it reads the gate results from
   the registry and refuses (a failed gate; then a gate whose result is missing).
E. C's candidate re-evaluated under the normal gates is promoted (v3), then
   ``promotion.rollback()`` restores v1 and appends an audit record.

Between chapters the fixture snapshots what an operator would look at (aliases, the audit log,
run results), so a test of an early chapter is not fooled by a later one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from agent_pipeline.definitions import defs
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.monitoring import records as monitoring
from agent_pipeline.lib.registry import promotion
from agent_pipeline.lib.registry.models import CHAMPION, PREVIOUS_CHAMPION, ModelRegistry, read_audit
from agent_pipeline.lib.serving import bundle as serving

GATES = {
    "no_regression_vs_baseline",
    "critical_cases_pass",
    "routing_is_stable",
    "latency_within_slo",
    "safety_probes_pass",
    "survives_agent_faults",
    "human_approval",
    "generalizes_to_holdout",
    "agrees_with_champion_on_traffic",
}
DATASET_ASSETS = ("training_examples", "validation_examples", "golden_eval_set", "synthetic_eval_set", "safety_probes")


@dataclass
class Chapter:
    """One run of the story and what the registry looked like right after it."""

    result: dg.ExecuteInProcessResult
    champion: str | None
    previous_champion: str | None
    served: str | None  # the version in the serving bundle, what ``agent-pipeline route`` answers with
    audit: list[dict]
    materialized: set[str] = field(init=False)
    checks: dict[tuple[str, str], dg.AssetCheckEvaluation] = field(init=False)

    def __post_init__(self) -> None:
        self.materialized = {e.asset_key.to_user_string() for e in self.result.get_asset_materialization_events()}
        self.checks = {
            (e.asset_key.to_user_string(), e.check_name): e for e in self.result.get_asset_check_evaluations()
        }

    def gate(self, name: str) -> dg.AssetCheckEvaluation:
        return self.checks[("candidate_evaluation", name)]

    def failed_gates(self) -> set[str]:
        return {name for (asset, name), e in self.checks.items() if asset == "candidate_evaluation" and not e.passed}

    def failure_description(self) -> str:
        (event,) = self.result.get_step_failure_events()
        return event.step_failure_data.user_failure_data.description


@dataclass
class Story:
    home: Path
    instance: dg.DagsterInstance
    store: ModelRegistry
    chapters: dict[str, Chapter]
    rollback: dict
    after_rollback: Chapter


def run(instance: dg.DagsterInstance, *assets: str) -> dg.ExecuteInProcessResult:
    """``train_and_promote_job`` built from the current environment (optionally a subset of it)."""
    job = defs().resolve_job_def("train_and_promote_job")
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    return job.execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)


def chapter(result: dg.ExecuteInProcessResult, store: ModelRegistry) -> Chapter:
    bundle = serving.bundle_path(store.home)
    return Chapter(
        result,
        store.alias_version(CHAMPION),
        store.alias_version(PREVIOUS_CHAMPION),
        serving.load(bundle).version if bundle.is_file() else None,
        read_audit(store.home),
    )


@pytest.fixture(scope="module")
def story(small_inputs, tmp_path_factory) -> Story:
    root = tmp_path_factory.mktemp("lifecycle")
    home = root / "home"
    shuffled = root / "train_shuffled.csv"
    # 20 rows per label (the training check's minimum) keep the fit short; shuffling keeps the counts.
    train = pd.read_csv(small_inputs.train, dtype=str, keep_default_na=False).groupby("label").head(20)
    train.assign(label=np.random.default_rng(7).permutation(train["label"].to_numpy())).to_csv(shuffled, index=False)
    tiny_slo = root / "policy_tiny_slo.yaml"
    policy = yaml.safe_load(small_inputs.policy_config.read_text())
    policy["gates"]["latency_within_slo"]["slo_ms"] = {"p50": 0.0001, "p99": 0.0001}
    tiny_slo.write_text(yaml.safe_dump(policy))

    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for key, value in small_inputs.env(home).items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        store = ModelRegistry(home=home)
        chapters = {"A": chapter(run(instance), store)}

        mp.setenv("AGENT_PIPELINE_TRAIN_DATA", str(shuffled))
        chapters["B"] = chapter(run(instance), store)

        mp.setenv("AGENT_PIPELINE_TRAIN_DATA", str(small_inputs.train))
        mp.setenv("AGENT_PIPELINE_POLICY_CONFIG", str(tiny_slo))
        chapters["C"] = chapter(run(instance), store)

        mp.setenv("AGENT_PIPELINE_POLICY_CONFIG", str(small_inputs.policy_config))
        chapters["D_failed_gate"] = chapter(run(instance, "champion_model"), store)
        store.client.delete_model_version_tag(store.model_name, "3", "gate.latency_within_slo")
        chapters["D_missing_gate"] = chapter(run(instance, "champion_model"), store)

        chapters["E"] = chapter(run(instance, "candidate_evaluation", "champion_model"), store)
        record = promotion.rollback(store, home, reason="lifecycle test: back to v1")
        after = chapter(chapters["E"].result, store)
        yield Story(home, instance, store, chapters, record, after)


# -- A: from scratch ---------------------------------------------------------------------------
def test_first_run_promotes_v1_after_every_check_passed(story):
    a = story.chapters["A"]
    assert a.result.success
    assert a.materialized == {*DATASET_ASSETS, "router_candidate", "candidate_evaluation", "champion_model"}
    assert {name for asset, name in a.checks if asset == "candidate_evaluation"} == GATES
    assert [k for k, e in a.checks.items() if not e.passed] == []
    assert len(a.checks) == 8 + len(GATES)  # dataset checks + gates
    assert (a.champion, a.previous_champion, a.served) == ("1", None, "1")


def test_first_promotion_is_audited_with_its_gates(story):
    (record,) = story.chapters["A"].audit
    assert record["action"] == "promote"
    assert record["version"] == "1"
    assert record["previous_champion"] is None
    assert record["gates"] == dict.fromkeys(GATES, "passed")
    assert record["baseline"] is None  # there was none to compare with
    assert record["dagster_run_id"] == story.chapters["A"].result.run_id


def test_first_promotion_bootstraps_baseline_and_drift_reference(story, small_inputs):
    baseline = evaluation.load_baseline(story.home)
    assert baseline is not None
    _, info = baseline
    assert info["version"] == "1"
    assert info["blessed_by"] == "bootstrap (first promotion)"
    assert info["evaluation_id"] == story.chapters["A"].audit[0]["evaluation_id"]
    reference = pd.read_parquet(monitoring.reference_path(story.home).with_name("reference-v1.parquet"))
    assert set(reference["model_version"]) == {"1"}
    assert len(reference) == len(pd.read_csv(small_inputs.validation, dtype=str))  # the validation texts


def test_champion_model_metadata_names_the_champion(story):
    event = story.instance.get_latest_materialization_event(dg.AssetKey("champion_model"))
    md = event.asset_materialization.metadata
    assert event.run_id == story.chapters["E"].result.run_id  # the latest promotion, v3
    records = story.instance.fetch_materializations(dg.AssetKey("champion_model"), limit=10, ascending=True).records
    first = records[0].asset_materialization.metadata
    assert first["champion_version"].value == "1"
    assert first["previous_champion"].value == "None"
    assert first["gates"].value == dict.fromkeys(GATES, "passed")
    assert first["baseline_bootstrapped"].value is True
    assert md["champion_version"].value == "3"
    assert md["previous_champion"].value == "1"
    assert md["baseline_bootstrapped"].value is False


# -- B: a worse candidate ----------------------------------------------------------------------
def test_worse_candidate_fails_regression_gate_naming_newly_failing_cases(story):
    b = story.chapters["B"]
    assert not b.result.success
    gate = b.gate("no_regression_vs_baseline")
    assert not gate.passed
    assert gate.metadata["model_version"].value == "2"
    assert gate.metadata["baseline_version"].value == "1"
    n_new = gate.metadata["n_newly_failing"].value
    assert n_new > 25  # more than the policy's max_new_failures
    assert f"{n_new} cases newly fail: " in gate.description
    named = gate.description.split("newly fail: ", 1)[1].split(", ")[0]
    assert named in gate.metadata["comparison"].value  # the same case, listed in the table
    tag = story.store.version_info("2")["tags"]["gate.no_regression_vs_baseline"]
    assert tag.startswith("failed@")


def test_worse_candidate_is_not_promoted_and_history_is_intact(story):
    a, b = story.chapters["A"], story.chapters["B"]
    assert "router_candidate" in b.materialized and "candidate_evaluation" in b.materialized
    assert "champion_model" not in b.materialized
    assert (b.champion, b.previous_champion, b.served) == ("1", None, "1")
    assert b.audit == a.audit
    v1 = story.store.load(version="1")
    assert v1.route_one("Generate contract summary")["route"] == "contracts"


# -- C: latency SLO breach ---------------------------------------------------------------------
def test_latency_breach_alone_blocks_promotion(story):
    a, c = story.chapters["A"], story.chapters["C"]
    assert not c.result.success
    assert c.failed_gates() == {"latency_within_slo"}
    # The champion (v1), measured in the same rounds, cannot meet a 100 ns SLO either: undecided, not passed.
    assert c.gate("latency_within_slo").description.startswith(("too slow (", "UNDECIDED (")), c.gate(
        "latency_within_slo"
    ).description
    assert c.gate("latency_within_slo").metadata["p50_ms_limit"].value == 0.0001
    assert c.gate("latency_within_slo").metadata["model_version"].value == "3"
    assert "champion_model" not in c.materialized
    assert (c.champion, c.served) == ("1", "1")
    assert c.audit == a.audit


# -- D: champion_model on its own re-reads the gates -------------------------------------------
def test_champion_model_alone_refuses_a_candidate_with_a_failed_gate(story):
    d = story.chapters["D_failed_gate"]
    assert not d.result.success
    assert d.materialized == set()
    assert d.checks == {}  # no gate ran in this run: the verdict comes from the registry
    message = d.failure_description()
    assert message.startswith("version 3 not promoted: gates failed ['latency_within_slo']")
    assert "the champion is unchanged" in message
    assert (d.champion, d.served) == ("1", "1")
    assert d.audit == story.chapters["A"].audit


def test_champion_model_alone_refuses_a_candidate_with_a_missing_gate(story):
    d = story.chapters["D_missing_gate"]
    assert not d.result.success
    assert "not run ['latency_within_slo']" in d.failure_description()
    assert (d.champion, d.served) == ("1", "1")
    assert d.audit == story.chapters["A"].audit


# -- E: second promotion, then rollback --------------------------------------------------------
def test_reevaluated_candidate_is_promoted_with_previous_champion_kept(story):
    e = story.chapters["E"]
    assert e.result.success, [x.description for x in e.checks.values() if not x.passed]
    assert e.materialized == {"candidate_evaluation", "champion_model"}
    assert {name for _, name in e.checks} == GATES  # the gates ran again on the new evaluation
    assert (e.champion, e.previous_champion, e.served) == ("3", "1", "3")
    promotion = e.audit[-1]
    assert (promotion["action"], promotion["version"], promotion["previous_champion"]) == ("promote", "3", "1")
    assert promotion["baseline"]["version"] == "1"
    assert promotion["evaluation_id"] != story.chapters["C"].gate("latency_within_slo").metadata["evaluation_id"].value


def test_rollback_restores_previous_champion_and_is_audited(story):
    after, e = story.after_rollback, story.chapters["E"]
    assert (after.champion, after.previous_champion, after.served) == ("1", "3", "1")
    assert after.audit[:-1] == e.audit  # appended, nothing rewritten
    record = after.audit[-1]
    assert record == story.rollback
    assert (record["action"], record["version"], record["previous_champion"]) == ("rollback", "1", "3")
    assert record["reason"] == "lifecycle test: back to v1"
    assert story.store.load(alias=CHAMPION).version == "1"


def test_rollback_restores_the_drift_reference_of_the_restored_champion(story):
    reference = pd.read_parquet(monitoring.reference_path(story.home))
    assert set(reference["model_version"]) == {story.after_rollback.champion}
