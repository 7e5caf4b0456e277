"""``champion_model``: move the ``champion`` alias to a candidate whose every gate passed."""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, StateFolder
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.monitoring import records as monitoring
from agent_pipeline.lib.registry import audit, evidence, promotion
from agent_pipeline.lib.registry.models import CHAMPION
from agent_pipeline.lib.registry.ordering import ALLOW_OLDER_TAG, refuse_older_candidate
from agent_pipeline.lib.registry.policy import display_path
from agent_pipeline.lib.registry.verdict import promotion_verdict as verdict_of


class PromotionConfig(dg.Config):
    """Empty (the default): promote the candidate evaluated upstream in this run.

    ``version`` + ``evaluation_id``: promote that evaluated candidate instead (what
    ``approval_sensor`` asks for once a person approved it); every gate is re-checked the same way.
    """

    version: str = ""
    evaluation_id: str = ""


# Promotions are serialized across runs by the "promotion" pool (limit 1: dagster.yaml,
# `concurrency: pools: default_limit`), so the champion read below is the one being replaced.
@dg.asset(group_name="registry", kinds={"mlflow"}, owners=["team:ml-platform"], pool="promotion")
@traced
def champion_model(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    mlflow: MlflowRegistry,
    state: StateFolder,
    policy: PolicySettings,
    candidate_evaluation: dict,
    validation_examples: pd.DataFrame,
) -> dg.MaterializeResult:
    """The serving router: the MLflow alias ``champion``, moved only after every gate passed.

    It runs downstream of ``candidate_evaluation``, so a failing blocking gate stops it in the
    same run. It then re-checks every gate the policy requires from the verdicts recorded in the
    registry for this very evaluation (``human_approval`` live: a valid, non-revoked approval of
    this content and evaluation), so a later run cannot promote an unchecked candidate. The
    change is one transaction (alias, serving bundle, drift reference, baseline bootstrap, audit
    record; ``lib/registry/promotion.py``); the model card is written, logged and linked.
    """
    store = mlflow.open(state.path)
    pol = policy.load()
    if config.version or config.evaluation_id:
        if not (config.version and config.evaluation_id):
            raise dg.Failure(description="config needs both version and evaluation_id (or neither)")
        folder = evaluation.evaluation_dir(state.path, config.version, config.evaluation_id)
        try:
            ev = evaluation.load(folder)
        except FileNotFoundError as exc:
            raise dg.Failure(description=f"{exc}; nothing promoted") from None
        summary = {
            "version": str(config.version),
            "evaluation_id": config.evaluation_id,
            "metrics": ev.metrics,
            "dataset_versions": ev.dataset_versions,
        }
    else:
        summary = candidate_evaluation
    version, eval_id = str(summary["version"]), summary["evaluation_id"]
    allow_older = context.run.tags.get(ALLOW_OLDER_TAG) == "true"

    def allowed() -> None:
        """The verdict and the ordering rule; raises RegistryError with the refusal."""
        verdict = verdict_of(store, state.path, pol, version, eval_id)
        if not verdict.passed:
            raise RegistryError(verdict.refusal())
        refuse_older_candidate(version, store.alias_version(CHAMPION), allow_older=allow_older)

    def not_promoted(exc: RegistryError) -> dg.Failure:
        message = str(exc)
        if not message.startswith(f"version {version}"):
            message = f"version {version} not promoted: {message}"
        return dg.Failure(description=message)

    try:
        verdict = verdict_of(store, state.path, pol, version, eval_id)
    except RegistryError as exc:
        raise not_promoted(exc) from None
    if not verdict.passed:
        raise dg.Failure(
            description=verdict.refusal(),
            metadata={"gate_results": dg.MetadataValue.json(verdict.results), "required_gates": verdict.required},
        )
    required, results, content = verdict.required, verdict.results, verdict.content_sha256
    try:
        refuse_older_candidate(version, store.alias_version(CHAMPION), allow_older=allow_older)
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    baseline = evaluation.load_baseline(state.path)
    # Prepared outside the transaction: written as reference-v<N>.parquet, made current by it.
    reference = monitoring.capture_reference(
        store.home, store.load(version=version), validation_examples["text"], make_current=False
    )
    try:
        record, _ = promotion.change_champion(
            store,
            state.path,
            action="promote",
            version=version,
            details={
                "evaluation_id": eval_id,
                "content_sha256": content,
                "gates": {g: results[g] for g in required},
                "metrics": summary["metrics"],
                "dataset_versions": summary["dataset_versions"],
                "baseline": None
                if baseline is None
                else {"version": baseline[1]["version"], "evaluation_id": baseline[1]["evaluation_id"]},
                "dagster_run_id": context.run.run_id,
                "policy": {"path": display_path(policy.config_path), "sha256": policy.sha256()},
            },
            bootstrap_evaluation=eval_id,
            precondition=allowed,  # re-checked under the champion lock: a revocation since is not missed
        )
    except RegistryError as exc:
        raise not_promoted(exc) from None
    card = evidence.write_and_log(store, state.path, pol, version, eval_id, promotion=record)
    context.log.info("version %s is the champion (previous: %s)", version, record["previous_champion"])
    return dg.MaterializeResult(
        metadata={
            "champion_version": version,
            "previous_champion": str(record["previous_champion"]),
            "evaluation_id": eval_id,
            "content_sha256": content,
            "promoted_at": record["time"],
            "promoted_by": record["user"],
            "gates": dg.MetadataValue.json(record["gates"]),
            "baseline_bootstrapped": bool(record.get("baseline_bootstrapped")),
            "drift_reference_rows": int(reference["rows"]),
            "drift_reference_path": dg.MetadataValue.path(reference["path"]),
            "mlflow_model_version": dg.MetadataValue.url(store.version_url(version)),
            "model_card": dg.MetadataValue.path(str(card)),
            "audit_log": dg.MetadataValue.path(str(audit.log_path(store.home))),
            "audit_record": f"{record['seq']}:{record['hash'][:16]}",
        },
        data_version=dg.DataVersion(f"v{version}"),
    )
