"""``router_candidate``: fit the router, log it to MLflow, register it as the new candidate."""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, RouterFiles, StateFolder
from agent_pipeline.defs.retries import TRANSIENT_RETRY
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.core.provenance import git_commit
from agent_pipeline.lib.data import datasets
from agent_pipeline.lib.registry.policy import display_path
from agent_pipeline.lib.router.calibration import curve_markdown
from agent_pipeline.lib.router.model import train_router


class CandidateConfig(dg.Config):
    """``registered_version``: adopt a version already registered under the model name (a team's
    own pyfunc router honouring the decision contract, ``docs/custom_router.md``) as the
    candidate instead of training one; empty (the default) trains."""

    registered_version: str = ""


def adopted_candidate(config: CandidateConfig, files: RouterFiles, mlflow: MlflowRegistry, state: StateFolder):
    from agent_pipeline.lib.router.external import adopt

    store = mlflow.open(state.path)
    model = adopt(store, config.registered_version, frozenset(files.registry().routes))
    info = store.version_info(model.version)
    value = {
        "version": model.version,
        "run_id": info["run_id"],
        "model_uri": f"models:/{store.model_name}/{model.version}",
        "model_name": store.model_name,
        "tier": "ours" if model.router is not None else "external",
        "threshold": float(model.router.threshold) if model.router is not None else float("nan"),
        "data_versions": {},
    }
    return dg.Output(
        value,
        metadata={
            "model_version": model.version,
            "adopted": True,
            "tier": value["tier"],
            "mlflow_model_version": dg.MetadataValue.url(store.version_url(model.version)),
        },
        data_version=dg.DataVersion(f"v{model.version}"),
    )


@dg.asset(
    group_name="training",
    kinds={"scikitlearn", "mlflow"},
    owners=["team:ml-platform"],
    code_version="router-tiers-2-cv-threshold",
    retry_policy=TRANSIENT_RETRY,
)
@traced
def router_candidate(
    context: dg.AssetExecutionContext,
    config: CandidateConfig,
    files: RouterFiles,
    mlflow: MlflowRegistry,
    state: StateFolder,
    policy: PolicySettings,
    training_examples: pd.DataFrame,
    validation_examples: pd.DataFrame,
) -> dg.Output[dict]:
    """A freshly trained router, registered in MLflow with the ``candidate`` alias.

    Rules and the agent map come from the config files; the classifier is fitted on
    ``training_examples``; its confidence threshold (and the cascade's hand-off threshold) is chosen
    by cross-validation over ``training_examples`` + ``validation_examples``
    (``lib/router/calibration.py``, objective in ``config/router.yaml``). The MLflow run records
    params, validation and cross-validated metrics, the threshold curves (``threshold_curve_cv.csv``
    is the one the choice was read from), the data versions of
    both datasets, the git commit and the Dagster run id. With ``registered_version`` set it
    trains nothing: it adopts that registered version (a team's own router) after checking the
    decision contract (``lib/router/external.py``).
    """
    if config.registered_version:
        return adopted_candidate(config, files, mlflow, state)
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
    cv_curve = report.pop("cv_curve", None)  # lib/router/calibration.py: the curve the threshold was chosen on
    cascade_curve = report.pop("cascade_curve", None)
    curves = {"threshold_curve.csv": curve}
    if cv_curve is not None:
        curves["threshold_curve_cv.csv"] = cv_curve
    if cascade_curve is not None:
        curves["cascade_curve_cv.csv"] = cascade_curve
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
            **curves,
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
            "threshold_curve": dg.MetadataValue.md(curve_markdown(curve)),
            "threshold_method": report["threshold_method"],
            **{k: float(v) for k, v in report.items() if k.startswith("cv_") or k == "cascade_threshold"},
            **({"threshold_curve_cv": dg.MetadataValue.md(curve_markdown(cv_curve))} if cv_curve is not None else {}),
            **(
                {"cascade_curve_cv": dg.MetadataValue.md(curve_markdown(cascade_curve))}
                if cascade_curve is not None
                else {}
            ),
        },
        data_version=dg.DataVersion(f"v{logged['version']}"),
    )
