"""Governed promotion, end to end on one Dagster instance: approval, the sensor, rollback, bless,
a lost baseline, the evidence bundle and the audit chain.

The story (played once per module, each test reads one chapter):

A. default policy (no approval needed): v1 trained, gated and promoted.
B. production-like policy (approval required, approver ``risk-officer``): v2 trained; every gate
   passes but ``human_approval``, which says how to approve; v1 stays champion.
C. ``mallory`` (not an approver) is refused. ``risk-officer`` approves v2's evaluation E2.
D. v2 re-evaluated (E2'): the approval of E2 is stale for E2'; ``approval_sensor`` launches the
   promotion the approval asked for (E2), which is refused (E2's verdicts were superseded).
E. approval of E2', then revoked: the sensor's promotion run is refused (revoked).
F. approved again: the sensor's run promotes v2 (no retraining), model card written and linked.
G. rollback to a never-champion version is refused; rollback to v1 works; bless of an unevaluated
   version is refused, of v1 accepted; deleting the baseline blocks the next evaluation's gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from agent_pipeline.definitions import defs
from agent_pipeline.defs.registry.approval import approval_sensor
from agent_pipeline.defs.resources import StateFolder
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.registry import approvals, audit, evidence, promotion
from agent_pipeline.lib.registry.models import CHAMPION, ModelRegistry
from agent_pipeline.lib.registry.policy import load_policy
from agent_pipeline_tests.conftest import SMALL_SLICE_HOLDOUT_FLOORS


def run(instance, *assets: str, job: str = "train_and_promote_job", run_config=None) -> dg.ExecuteInProcessResult:
    job_def = defs().resolve_job_def(job)
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    return job_def.execute_in_process(
        instance=instance, asset_selection=selection, raise_on_error=False, run_config=run_config
    )


def gates_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "candidate_evaluation"
    }


def failure(result) -> str:
    (event,) = result.get_step_failure_events()
    return event.step_failure_data.user_failure_data.description


def tick(instance, home: Path, cursor: str | None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"state": StateFolder(home=str(home))})
    out = approval_sensor(ctx)
    requests = out if isinstance(out, list) else []
    return requests, ctx.cursor


@dataclass
class Story:
    home: Path
    store: ModelRegistry
    runs: dict
    notes: dict


@pytest.fixture(scope="module")
def story(small_inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("governance")
    home = root / "home"
    # Latency is not what this story is about (a loaded test machine measures anything): wide SLOs.
    relaxed = {"slo_ms": {"p50": 1000.0, "p99": 10000.0}, "slo_ms_by_tier": {}}
    default = yaml.safe_load(settings.DEFAULT_POLICY_CONFIG.read_text())
    default["gates"]["latency_within_slo"] = relaxed
    default["gates"]["survives_agent_faults"]["max_added_p99_ms"] = 1500
    default["gates"]["generalizes_to_holdout"]["floors"] = dict(SMALL_SLICE_HOLDOUT_FLOORS)
    default_path = root / "policy.yaml"
    default_path.write_text(yaml.safe_dump(default))
    prod = yaml.safe_load((settings.PROJECT_ROOT / "deploy" / "policy.prod.yaml").read_text())
    prod["approval"]["approvers"] = ["risk-officer"]
    prod["gates"]["latency_within_slo"] = relaxed
    prod["gates"]["survives_agent_faults"]["max_added_p99_ms"] = 1500
    # The small slice's holdout floors (conftest), and no served traffic in this story to replay.
    prod["gates"]["generalizes_to_holdout"]["floors"] = dict(SMALL_SLICE_HOLDOUT_FLOORS)
    prod["gates"]["agrees_with_champion_on_traffic"]["require_traffic"] = False
    prod_path = root / "policy.prod.yaml"
    prod_path.write_text(yaml.safe_dump(prod))
    runs, notes = {}, {}
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for key, value in small_inputs.env(home).items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("AGENT_PIPELINE_POLICY_CONFIG", str(default_path))
        store = ModelRegistry(home=home)
        runs["A"] = run(instance)
        mp.setenv("AGENT_PIPELINE_POLICY_CONFIG", str(prod_path))
        policy = load_policy(prod_path)
        runs["B"] = run(instance)
        e2 = gates_of(runs["B"])["human_approval"].metadata["evaluation_id"].value
        notes["champion_after_B"] = store.alias_version(CHAMPION)

        with pytest.raises(RegistryError) as refused:
            approvals.approve(home, store, policy, "2", "mallory", "looks fine")
        notes["mallory"] = str(refused.value)
        notes["approval_E2"] = approvals.approve(home, store, policy, "2", "risk-officer", "reviewed E2")

        runs["D_reeval"] = run(instance, "candidate_evaluation")
        e2b = gates_of(runs["D_reeval"])["human_approval"].metadata["evaluation_id"].value
        requests, cursor = tick(instance, home, None)
        notes["D_requests"] = requests
        runs["D_sensor"] = run(instance, job="promote_approved_job", run_config=requests[0].run_config)

        approvals.approve(home, store, policy, "2", "risk-officer", "reviewed E2'")
        notes["revoke"] = approvals.revoke(home, store, "2", "risk-officer", "found an issue")
        requests, cursor = tick(instance, home, cursor)
        notes["E_requests"] = requests
        runs["E_sensor"] = run(instance, job="promote_approved_job", run_config=requests[0].run_config)
        notes["champion_after_E"] = store.alias_version(CHAMPION)

        notes["approval_final"] = approvals.approve(home, store, policy, "2", "risk-officer", "issue fixed upstream")
        requests, cursor = tick(instance, home, cursor)
        notes["F_requests"] = requests
        notes["F_quiet"] = tick(instance, home, cursor)[0]
        runs["F_sensor"] = run(instance, job="promote_approved_job", run_config=requests[0].run_config)
        notes["champion_after_F"] = store.alias_version(CHAMPION)
        notes["e2"], notes["e2b"] = e2, e2b

        # G: a registered version that never went through the gates (v3, same router as v1).
        v3 = store.log_router(store.load(version="1").router, params={}, metrics={}, tags={})["version"]
        for name, call in {
            "rollback_never": lambda: promotion.rollback(store, home, to_version=v3, reason="try"),
            "bless_unevaluated": lambda: promotion.bless_version(store, home, policy, v3, "ops", "try"),
        }.items():
            with pytest.raises(RegistryError) as info:
                call()
            notes[name] = str(info.value)
        notes["rollback"] = promotion.rollback(store, home, reason="back to v1 for the test")
        notes["doctor_after_rollback"] = promotion.doctor(store, home)
        notes["bless"] = promotion.bless_version(store, home, policy, "1", "ops", "re-bless v1")
        (settings.baseline_dir(home) / "current.json").unlink()
        runs["G_no_baseline"] = run(instance, "candidate_evaluation")
        yield Story(home, store, runs, notes)


def test_default_policy_promotes_without_approval(story):
    a = story.runs["A"]
    assert a.success
    assert gates_of(a)["human_approval"].description == "approval not required by the policy"


def test_promotion_waits_for_approval_saying_how_to_give_it(story):
    b = story.runs["B"]
    assert not b.success
    assert {n for n, e in gates_of(b).items() if not e.passed} == {"human_approval"}
    description = gates_of(b)["human_approval"].description
    assert description.startswith("awaiting approval: run agent-pipeline approve 2 --by NAME --note TEXT")
    assert "risk-officer" in description
    assert "champion_model" not in {e.asset_key.to_user_string() for e in b.get_asset_materialization_events()}
    assert story.notes["champion_after_B"] == "1"


def test_wrong_approver_is_refused(story):
    assert "'mallory' may not approve" in story.notes["mallory"]
    assert not any(r.get("user") == "mallory" for r in audit.read(story.home))


def test_approval_binds_version_content_and_evaluation(story):
    rec = story.notes["approval_E2"]
    assert (rec["version"], rec["evaluation_id"], rec["user"]) == ("2", story.notes["e2"], "risk-officer")
    assert rec["content_sha256"] == story.store.content_hash("2")
    assert rec["content_sha256"] != story.store.content_hash("1")


def test_stale_approval_does_not_count(story):
    gate = gates_of(story.runs["D_reeval"])["human_approval"]
    assert not gate.passed
    assert "1 for other content or another evaluation" in gate.description
    (request,) = story.notes["D_requests"]
    assert request.run_config["ops"]["champion_model"]["config"] == {"version": "2", "evaluation_id": story.notes["e2"]}
    d = story.runs["D_sensor"]
    assert not d.success
    assert failure(d).startswith("version 2 not promoted:")


def test_revoked_approval_does_not_count(story):
    e = story.runs["E_sensor"]
    assert not e.success
    message = failure(e)
    # the revocation withdrew both standing approvals of v2 (of E2 and of E2')
    assert "gates failed ['human_approval']" in message and "2 revoked" in message
    assert story.notes["champion_after_E"] == "1"


def test_sensor_promotes_after_approval_rechecking_every_gate(story):
    (request,) = story.notes["F_requests"]
    assert request.run_config["ops"]["champion_model"]["config"] == {
        "version": "2",
        "evaluation_id": story.notes["e2b"],
    }
    assert story.notes["F_quiet"] == []  # the cursor moved: no second run for the same approval
    f = story.runs["F_sensor"]
    assert f.success
    assert story.notes["champion_after_F"] == "2"
    (mat,) = f.get_asset_materialization_events()
    md = mat.materialization.metadata
    assert md["gates"].value == dict.fromkeys(
        load_policy(settings.PROJECT_ROOT / "deploy" / "policy.prod.yaml").required_gates, "passed"
    )
    card = Path(md["model_card"].value).read_text()
    assert card.startswith("# Model card: agent-router v2")
    for needle in (
        "## Intended use",
        "## Gates",
        "### latency_within_slo: passed",
        "p99_ms",
        "approve by risk-officer",
        "revoke by risk-officer",
        "## Baseline compared against",
        "v1, evaluation",
        "## Known limitations",
    ):
        assert needle in card, needle
    promote = [r for r in audit.read(story.home) if r["action"] == "promote"][-1]
    assert promote["gates"]["human_approval"] == "passed"
    assert promote["content_sha256"] == story.notes["approval_final"]["content_sha256"]
    logged = story.store.client.list_artifacts(
        story.store.version_info("2")["run_id"], f"evidence/{story.notes['e2b']}"
    )
    assert [a.path.rsplit("/", 1)[-1] for a in logged] == ["model_card.md"]
    assert evidence.latest_card(story.home, "2") == Path(md["model_card"].value)


def test_rollback_only_to_a_former_champion(story):
    assert "was never the champion" in story.notes["rollback_never"]
    rec = story.notes["rollback"]
    assert (rec["action"], rec["version"], rec["previous_champion"]) == ("rollback", "1", "2")
    assert [s for s, _ in story.notes["doctor_after_rollback"] if s != "ok"] == []


def test_bless_only_a_version_whose_gates_passed(story):
    assert "no candidate evaluation on which the required gates" in story.notes["bless_unevaluated"]
    blessed = [r for r in audit.read(story.home) if r["action"] == "bless"]
    assert [(r["version"], r["user"], r["reason"]) for r in blessed] == [("1", "ops", "re-bless v1")]


def test_deleted_baseline_blocks_with_how_to_restore(story):
    gate = gates_of(story.runs["G_no_baseline"])["no_regression_vs_baseline"]
    assert not gate.passed
    assert "no baseline at" in gate.description and "while v1 is the champion" in gate.description
    assert "agent-pipeline bless --version 1" in gate.description


def test_every_decision_is_in_a_verified_chain(story):
    assert audit.verify(story.home).ok
    actions = [r["action"] for r in audit.read(story.home)]
    assert actions == ["promote", "approve", "approve", "revoke", "approve", "promote", "rollback", "bless"]
