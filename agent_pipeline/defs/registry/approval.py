"""Human sign-off: the ``human_approval`` gate, the jobs that approve or revoke from the UI, and
``approval_sensor``, which launches the promotion of an approved candidate (no retraining)."""

import dagster as dg

from agent_pipeline.defs.evaluation.checks import run_gate
from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, StateFolder
from agent_pipeline.lib.registry import approvals, audit


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def human_approval(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """A person the policy allows signed off this exact candidate (version, content hash of its
    artifacts, evaluation), when the policy requires it. Until then it fails with the command to run;
    ``approval_sensor`` promotes once the approval is recorded."""

    def verdict():
        pol = policy.load()
        version = candidate_evaluation["version"]
        content = mlflow.open(state.path).content_hash(version) if pol.approval.required else ""
        return approvals.verdict(state.path, pol, version, content, candidate_evaluation["evaluation_id"])

    return run_gate(mlflow, state, candidate_evaluation, approvals.GATE, verdict)


class ApprovalConfig(dg.Config):
    """Who signs off which candidate. ``evaluation_id`` empty: the version's latest candidate evaluation."""

    version: str
    approved_by: str
    note: str
    evaluation_id: str = ""


class RevocationConfig(dg.Config):
    version: str
    revoked_by: str
    reason: str


@dg.op
def approve_candidate(
    context: dg.OpExecutionContext,
    config: ApprovalConfig,
    mlflow: MlflowRegistry,
    state: StateFolder,
    policy: PolicySettings,
) -> dict:
    """Record the approval (refused: an approver the policy does not list, a candidate whose gates failed)."""
    try:
        rec = approvals.approve(
            state.path,
            mlflow.open(state.path),
            policy.load(),
            config.version,
            config.approved_by,
            config.note,
            config.evaluation_id or None,
        )
    except approvals.ApprovalError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info("v%s approved by %s (evaluation %s)", rec["version"], rec["user"], rec["evaluation_id"])
    return rec


@dg.op
def revoke_approval(
    context: dg.OpExecutionContext, config: RevocationConfig, mlflow: MlflowRegistry, state: StateFolder
) -> dict:
    """Withdraw every standing approval of a version."""
    try:
        rec = approvals.revoke(state.path, mlflow.open(state.path), config.version, config.revoked_by, config.reason)
    except approvals.ApprovalError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info("approvals of v%s revoked by %s", rec["version"], rec["user"])
    return rec


@dg.job(
    description="Sign off an evaluated candidate (run config: version, approved_by, note); approval_sensor promotes it."
)
def approve_candidate_job():
    approve_candidate()


@dg.job(description="Withdraw the approvals of a version (run config: version, revoked_by, reason).")
def revoke_approval_job():
    revoke_approval()


promote_approved_job = dg.define_asset_job(
    "promote_approved_job",
    selection=dg.AssetSelection.assets("champion_model"),
    description="champion_model for an approved candidate (version + evaluation in run config); every gate re-checked.",
)


@dg.sensor(job=promote_approved_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def approval_sensor(context: dg.SensorEvaluationContext, state: StateFolder):
    """A new approval in the audit log launches the promotion of exactly that version and evaluation."""
    cursor = int(context.cursor or 0)
    records = [r for r in audit.read(state.path) if int(r.get("seq", 0)) > cursor]
    if not records:
        return dg.SkipReason(f"no new audit records after #{cursor}")
    requests = [
        dg.RunRequest(
            run_key=f"approval:{r['hash']}",
            run_config={
                "ops": {
                    "champion_model": {"config": {"version": str(r["version"]), "evaluation_id": r["evaluation_id"]}}
                }
            },
            tags={"agent_pipeline/trigger": "approval", "agent_pipeline/approved_by": str(r["user"])},
        )
        for r in records
        if r.get("action") == "approve"
    ]
    context.update_cursor(str(max(int(r["seq"]) for r in records)))
    return requests or dg.SkipReason("new audit records, none an approval")
