"""``router_candidate``: fit the router, log it to MLflow, register it as the new candidate."""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, RouterFiles, StateFolder
from agent_pipeline.defs.retries import TRANSIENT_RETRY
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core import markdown, settings
from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.core.provenance import git_commit
from agent_pipeline.lib.data import datasets
from agent_pipeline.lib.registry.policy import display_path
from agent_pipeline.lib.router.model import train_router


@dg.asset(
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:ml-platform"],
    code_version="router-tiers-1",
    retry_policy=TRANSIENT_RETRY,
)
@traced
def router_candidate(
    context: dg.AssetExecutionContext,
    files: RouterFiles,
    mlflow: MlflowRegistry,
    state: StateFolder,
    policy: PolicySettings,
    training_examples: pd.DataFrame,
    validation_examples: pd.DataFrame,
) -> dg.Output[dict]:
    """A freshly trained router, registered in MLflow with the ``candidate`` alias.

    Rules and the agent map come from the config files; the classifier is fitted on
    ``training_examples`` and its confidence threshold tuned on ``validation_examples``. The
    MLflow run records params, validation metrics, the threshold curve, the data versions of
    both datasets, the git commit and the Dagster run id.
    """
    rules, train_settings = files.router_settings()
    registry_cfg = files.registry()
    # The promotion policy is checked before the fit: a bad policy would only surface after training.
    try:
        policy.load().check_agents(registry_cfg.agents, files.agents_config)
    except ConfigError as exc:
        raise dg.Failure(description=f"{display_path(policy.config_path)}: {exc}", allow_retries=False) from None
    router, report = train_router(
        training_examples,
        validation_examples,
        registry_cfg,
        rules,
        train_settings,
        cache_dir=state.path / "cache" / "embeddings",  # accurate/cascade: unchanged texts are not re-embedded
        guard=files.router_guard(),
    )
    curve = report.pop("threshold_curve")
    notes = report.pop("warnings")
    for note in notes:
        context.log.warning(note)
    data_versions = {
        "training_examples": datasets.fingerprint(training_examples),
        "validation_examples": datasets.fingerprint(validation_examples),
    }
    store = mlflow.open(state.path)
    logged = store.log_router(
        router,
        params={
            **train_settings.mlflow_params(),
            "rules": ",".join(r.name for r in rules),
            "guard": ",".join(sorted(router.guard.patterns)) if router.guard is not None else "off",
            **{f"data_version.{k}": v for k, v in data_versions.items()},
        },
        metrics={k: v for k, v in report.items() if isinstance(v, (int, float))},
        tags={
            "git_commit": git_commit(settings.PROJECT_ROOT),
            "dagster_run_id": context.run.run_id,
            "training_examples_version": data_versions["training_examples"],
            "validation_examples_version": data_versions["validation_examples"],
        },
        artifacts={
            "threshold_curve.csv": curve,
            "agents.json": registry_cfg.to_dict(),
            "router.json": router.describe(),
        },
    )
    context.log.info(
        "registered %s version %s (threshold %.2f, val in-scope %.3f, fallback recall %.3f)",
        store.model_name,
        logged["version"],
        report["threshold"],
        report["val_in_scope_accuracy"],
        report["val_fallback_recall"],
    )
    value = {
        **logged,
        "model_name": store.model_name,
        "tier": train_settings.tier,
        "threshold": report["threshold"],
        "data_versions": data_versions,
    }
    return dg.Output(
        value,
        metadata={
            "model_version": logged["version"],
            "mlflow_run": dg.MetadataValue.url(store.run_url(logged["run_id"])),
            "mlflow_model_version": dg.MetadataValue.url(store.version_url(logged["version"])),
            "model_uri": logged["model_uri"],
            "threshold": float(report["threshold"]),
            "val_in_scope_accuracy": float(report["val_in_scope_accuracy"]),
            "val_fallback_recall": float(report["val_fallback_recall"]),
            "val_fallback_precision": float(report["val_fallback_precision"]),
            "val_label_accuracy": float(report["val_label_accuracy"]),
            "fit_seconds": float(report["fit_seconds"]),
            "n_train": int(report["n_train"]),
            "n_labels": int(report["n_labels"]),
            "training_notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "(none)"),
            "threshold_curve": dg.MetadataValue.md(
                markdown.frame_table(curve.iloc[:: max(1, len(curve) // 15)], floatfmt=".3f")
            ),
        },
        data_version=dg.DataVersion(f"v{logged['version']}"),
    )
