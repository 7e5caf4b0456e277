"""The promotion verdict without Dagster: two witnesses per gate, fail closed.

A real (small) router is registered in a real MLflow store; gate verdicts are written the way the
gate checks write them (``gates/<name>.json`` in the evaluation folder, then the registry tag), and
then one witness is removed or edited as a crash or a hand with MLflow write access would.
"""

from __future__ import annotations

import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.evaluation import gates
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry import approvals, audit, promotion
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.policy import load_policy
from agent_pipeline.lib.registry.verdict import promotion_verdict
from agent_pipeline_tests.conftest import tiny_router

EVAL_ID = "20260101T000000Z-candidate-verdict"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A state folder with version 1 registered and one saved candidate evaluation of it."""
    home = tmp_path_factory.mktemp("verdict") / "home"
    router, _, val = tiny_router()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        store = ModelRegistry(home=home)
        version = store.log_router(router, params={}, metrics={}, tags={})["version"]
        ev = evaluation.evaluate(store.load(version=version), {"golden": val}, version=version, measure_latency=False)
        evaluation.save(ev, evaluation.evaluation_dir(home, version, EVAL_ID))
        yield home, store, version


@pytest.fixture
def policy():
    return load_policy(settings.DEFAULT_POLICY_CONFIG)


def record(home, store, version, name: str, passed: bool, *, tag: bool = True, file: bool = True) -> None:
    """What a gate check writes: the record in the evaluation folder, then the registry tag."""
    folder = evaluation.evaluation_dir(home, version, EVAL_ID)
    if file:
        gates.write_gate_record(
            folder, name, passed, "test", {}, version=version, evaluation_id=EVAL_ID, recorded_at="2026-01-01T00:00:00Z"
        )
    if tag:
        store.record_gates(version, EVAL_ID, {name: passed})


def all_pass(home, store, version, policy) -> None:
    for gate in policy.required_gates:
        if gate != approvals.GATE:
            record(home, store, version, gate, True)


def test_every_gate_passed_by_both_witnesses_promotes(registered, policy):
    home, store, version = registered
    all_pass(home, store, version, policy)
    verdict = promotion_verdict(store, home, policy, version, EVAL_ID)
    assert verdict.passed, verdict.refusal()
    assert verdict.results == {g: "passed" for g in policy.required_gates}
    assert verdict.content_sha256 == store.content_hash(version)
    assert promotion.gated_evaluation(store, home, policy, version) == EVAL_ID


def test_a_tag_set_by_hand_without_the_gate_record_counts_as_not_run(registered, policy):
    home, store, version = registered
    all_pass(home, store, version, policy)
    (evaluation.evaluation_dir(home, version, EVAL_ID) / gates.GATES_DIR / "critical_cases_pass.json").unlink()
    verdict = promotion_verdict(store, home, policy, version, EVAL_ID)
    assert not verdict.passed
    assert verdict.missing == ["critical_cases_pass"] and verdict.failed == []
    assert verdict.refusal().startswith(
        f"version {version} not promoted: gates failed [], not run ['critical_cases_pass']"
    )
    assert verdict.refusal().endswith("the champion is unchanged")
    assert promotion.gated_evaluation(store, home, policy, version) is None


def test_a_failed_gate_flipped_to_passed_in_the_registry_still_blocks(registered, policy):
    home, store, version = registered
    all_pass(home, store, version, policy)
    record(home, store, version, "safety_probes_pass", False)  # the gate failed: both witnesses say so
    store.record_gates(version, EVAL_ID, {"safety_probes_pass": True})  # someone with MLflow write access
    verdict = promotion_verdict(store, home, policy, version, EVAL_ID)
    assert not verdict.passed
    assert verdict.failed == ["safety_probes_pass"] and verdict.disagreeing == ["safety_probes_pass"]
    assert "disagree on safety_probes_pass" in verdict.refusal()
    reviewers = policy.model_copy(update={"approval": policy.approval.model_copy(update={"approvers": ["alice"]})})
    with pytest.raises(approvals.ApprovalError, match=r"gates \['safety_probes_pass'\] did not pass"):
        approvals.approve(home, store, reviewers, version, by="alice", note="reviewed", evaluation_id=EVAL_ID)


def test_an_evaluation_nobody_gated_is_all_not_run(registered, policy):
    home, store, version = registered
    verdict = promotion_verdict(store, home, policy, version, "20260102T000000Z-candidate-other")
    assert not verdict.passed
    assert set(verdict.missing) == set(policy.required_gates) - {approvals.GATE}


def test_a_rolled_back_version_is_refused_outright(registered, policy):
    home, store, version = registered
    all_pass(home, store, version, policy)
    store.set_version_tags(version, {"rolled_back_at": "2026-01-02T00:00:00Z"})
    try:
        with pytest.raises(RegistryError, match=f"version {version} was rolled back at 2026-01-02"):
            promotion_verdict(store, home, policy, version, EVAL_ID)
    finally:
        store.client.delete_model_version_tag(store.model_name, version, "rolled_back_at")


def test_a_precondition_refusing_under_the_lock_moves_nothing(registered, policy):
    """champion_model re-checks its verdict inside change_champion; a refusal there changes nothing."""
    home, store, version = registered
    before = audit.read(home)

    def revoked_meanwhile() -> None:
        raise RegistryError(f"version {version} not promoted: its approval was revoked meanwhile")

    with pytest.raises(RegistryError, match="revoked meanwhile"):
        promotion.change_champion(
            store, home, action="promote", version=version, details={}, precondition=revoked_meanwhile
        )
    assert store.alias_version("champion") is None
    assert promotion.read_intent(home) is None
    assert audit.read(home) == before
