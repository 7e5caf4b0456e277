"""``champion_model``: move the ``champion`` alias to a candidate whose every gate passed."""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import GateSettings, MlflowRegistry, StateFolder
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.monitoring import records as monitoring
from agent_pipeline.lib.registry.models import CHAMPION
from agent_pipeline.lib.registry.ordering import ALLOW_OLDER_TAG, refuse_older_candidate


# Promotions are serialized across runs by the "promotion" pool (limit 1: deploy/dagster.local.yaml,
# `concurrency: pools: default_limit`), so the champion read below is the one being replaced.
@dg.asset(group_name="registry", kinds={"mlflow"}, owners=["team:ml-platform"], pool="promotion")
@traced
def champion_model(
    context: dg.AssetExecutionContext,
    mlflow: MlflowRegistry,
    state: StateFolder,
    gates: GateSettings,
    candidate_evaluation: dict,
    validation_examples: pd.DataFrame,
) -> dg.MaterializeResult:
    """The serving router: the MLflow alias ``champion``, moved only after every gate passed.

    It runs downstream of ``candidate_evaluation``, so a failing blocking gate stops it in the
    same run. It also re-reads the gate results the checks wrote to the registry for this very
    evaluation and refuses if any required gate is missing or failed (a later run cannot
    promote an unchecked candidate). The previous champion keeps the ``previous-champion``
    alias; a promotion record is appended to the audit log; the first promotion bootstraps the
    benchmark baseline; the drift reference is captured from the new champion.
    """
    store = mlflow.open(state.path)
    version, eval_id = candidate_evaluation["version"], candidate_evaluation["evaluation_id"]
    required = list(gates.load()["required"])
    rolled_back = store.version_info(version)["tags"].get("rolled_back_at")
    if rolled_back:
        raise dg.Failure(
            description=f"version {version} was rolled back at {rolled_back}; train a new candidate (or promote it "
            "explicitly after review) instead of re-promoting it from an old evaluation; the champion is unchanged"
        )
    results = store.gate_results(version, eval_id)
    missing = [g for g in required if g not in results]
    failed = [g for g in required if results.get(g) == "failed"]
    if missing or failed:
        raise dg.Failure(
            description=f"version {version} not promoted: gates failed {failed or '[]'}, not run {missing or '[]'} "
            f"for evaluation {eval_id}; the champion is unchanged",
            metadata={"gate_results": dg.MetadataValue.json(results)},
        )
    try:
        refuse_older_candidate(
            version, store.alias_version(CHAMPION), allow_older=context.run.tags.get(ALLOW_OLDER_TAG) == "true"
        )
    except RegistryError as exc:
        raise dg.Failure(description=str(exc)) from exc
    baseline = evaluation.load_baseline(state.path)
    record = store.promote(
        version,
        {
            "evaluation_id": eval_id,
            "gates": results,
            "metrics": candidate_evaluation["metrics"],
            "dataset_versions": candidate_evaluation["dataset_versions"],
            "baseline": None
            if baseline is None
            else {"version": baseline[1]["version"], "evaluation_id": baseline[1]["evaluation_id"]},
            "dagster_run_id": context.run.run_id,
        },
    )
    bootstrapped = False
    if baseline is None:
        evaluation.bless_latest(
            state.path, version, "bootstrap (first promotion)", "first promotion bootstraps the baseline"
        )
        bootstrapped = True
    reference = monitoring.capture_reference(store.home, store.load(version=version), validation_examples["text"])
    context.log.info("version %s is the champion (previous: %s)", version, record["previous_champion"])
    return dg.MaterializeResult(
        metadata={
            "champion_version": version,
            "previous_champion": str(record["previous_champion"]),
            "evaluation_id": eval_id,
            "promoted_at": record["time"],
            "promoted_by": record["user"],
            "gates": dg.MetadataValue.json(results),
            "baseline_bootstrapped": bootstrapped,
            "drift_reference_rows": int(reference["rows"]),
            "drift_reference_path": dg.MetadataValue.path(reference["path"]),
            "mlflow_model_version": dg.MetadataValue.url(store.version_url(version)),
            "audit_log": dg.MetadataValue.path(str(store.home / "registry" / "promotions.jsonl")),
        },
        data_version=dg.DataVersion(f"v{version}"),
    )
