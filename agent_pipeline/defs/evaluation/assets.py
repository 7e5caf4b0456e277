"""Evaluation assets: the candidate's evaluation (gated), the champion's (nightly), the baseline."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, StateFolder
from agent_pipeline.defs.retries import TRANSIENT_RETRY
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core import markdown
from agent_pipeline.lib.data import datasets
from agent_pipeline.lib.evaluation import metrics
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry import promotion
from agent_pipeline.lib.registry.models import CHAMPION, ModelRegistry, RegistryError

OWNERS = ["team:ml-platform"]
EVAL_SETS = ("golden_eval_set", "synthetic_eval_set")


def evaluation_id(context: dg.AssetExecutionContext, kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{kind}-{context.run.run_id[:8]}"


def run_evaluation(
    context: dg.AssetExecutionContext,
    store: ModelRegistry,
    version: str,
    eval_sets: dict[str, pd.DataFrame],
    kind: str,
    probes: pd.DataFrame | None = None,
) -> tuple[evaluation.Evaluation, str]:
    """Evaluate a registered version on the eval sets (and the safety probes, kept apart), save
    the folder, log an MLflow run."""
    model = store.load(version=version)
    versions = {name: datasets.fingerprint(df) for name, df in eval_sets.items()}
    if probes is not None:
        versions["safety_probes"] = datasets.fingerprint(probes)
    ev = evaluation.evaluate(
        model,
        {name.removesuffix("_eval_set"): df for name, df in eval_sets.items()},
        version=version,
        dataset_versions=versions,
        probes=probes,
    )
    folder = evaluation.save(ev, evaluation.evaluation_dir(store.home, version, evaluation_id(context, kind)))
    run_id = store.log_evaluation(
        version,
        metrics={
            **ev.metrics,
            **ev.latency,
            **{f"{d}.{k}": v for d, ms in ev.by_dataset.items() for k, v in ms.items()},
        },
        params={
            "kind": kind,
            "evaluation_id": ev.evaluation_id,
            **{f"data_version.{k}": v for k, v in ev.dataset_versions.items()},
        },
        tags={"kind": kind, "dagster_run_id": context.run.run_id, "fingerprint": ev.fingerprint},
        files={
            "evaluation": folder / "items.csv",
            "": folder / "metrics.json",
            **({"evaluation/safety": folder / "safety_items.csv"} if ev.safety_items is not None else {}),
        },
    )
    context.log.info("evaluated v%s on %d cases: %s", version, len(ev.items), folder)
    return ev, run_id


def evaluation_metadata(ev: evaluation.Evaluation, store: ModelRegistry, run_id: str) -> dict:
    """Floats for every metric (plotted across runs), tables as markdown, files as paths."""
    md = {f"{k}": float(v) for k, v in ev.metrics.items() if v == v}
    md.update({k: float(v) for k, v in ev.latency.items()})
    for name, ms in ev.by_dataset.items():
        md.update({f"{name}.{k}": float(v) for k, v in ms.items() if k in metrics.HEADLINE and v == v})
    failing = metrics.failing_cases(ev.items)
    md.update(
        {
            "model_version": ev.version,
            "evaluation_id": ev.evaluation_id,
            "fingerprint": ev.fingerprint,
            "items_path": dg.MetadataValue.path(str(ev.path / "items.csv")),
            "mlflow_run": dg.MetadataValue.url(store.run_url(run_id)),
            "per_route": dg.MetadataValue.md(markdown.frame_table(ev.per_route, floatfmt=".3f")),
            "confusion_matrix": dg.MetadataValue.md(ev.confusion_markdown()),
            "failing_cases": dg.MetadataValue.md(markdown.frame_table(failing, floatfmt=".3f", empty="none")),
        }
    )
    return md


def summary_value(ev: evaluation.Evaluation, run_id: str) -> dict:
    return {
        "version": ev.version,
        "evaluation_id": ev.evaluation_id,
        "evaluation_path": str(ev.path),
        "fingerprint": ev.fingerprint,
        "metrics": ev.metrics,
        "latency": ev.latency,
        "dataset_versions": ev.dataset_versions,
        "mlflow_run_id": run_id,
    }


@dg.asset(group_name="evaluation", kinds={"mlflow", "pandas"}, owners=OWNERS, retry_policy=TRANSIENT_RETRY)
@traced
def candidate_evaluation(
    context: dg.AssetExecutionContext,
    mlflow: MlflowRegistry,
    state: StateFolder,
    router_candidate: dict,
    golden_eval_set: pd.DataFrame,
    synthetic_eval_set: pd.DataFrame,
    safety_probes: pd.DataFrame,
) -> dg.Output[dict]:
    """The candidate routed over the golden and synthetic sets, with item-level results.

    Label accuracy, in-scope accuracy, fallback recall/precision, route accuracy, macro-F1,
    per-route precision/recall/F1, the confusion matrix, single-request latency and batch
    throughput. The safety probes are routed too, kept apart (``safety_items.csv``) for the
    ``safety_probes_pass`` gate. Its blocking checks are the promotion gates.
    """
    store = mlflow.open(state.path)
    ev, run_id = run_evaluation(
        context,
        store,
        router_candidate["version"],
        {"golden_eval_set": golden_eval_set, "synthetic_eval_set": synthetic_eval_set},
        "candidate",
        probes=safety_probes,
    )
    value = {**summary_value(ev, run_id), "tier": router_candidate.get("tier", "fast")}
    return dg.Output(value, metadata=evaluation_metadata(ev, store, run_id))


@dg.asset(
    group_name="evaluation",
    kinds={"mlflow", "pandas"},
    owners=OWNERS,
    deps=["champion_model"],
    retry_policy=TRANSIENT_RETRY,
)
@traced
def champion_evaluation(
    context: dg.AssetExecutionContext,
    mlflow: MlflowRegistry,
    state: StateFolder,
    golden_eval_set: pd.DataFrame,
    synthetic_eval_set: pd.DataFrame,
    safety_probes: pd.DataFrame,
) -> dg.Output[dict]:
    """The serving champion re-evaluated on the current eval sets (nightly, and when they change).

    Downstream of ``champion_model`` so that a full materialization evaluates the champion it
    just promoted; on its own (nightly, eval-set change) it evaluates whatever serves now.
    """
    store = mlflow.open(state.path)
    try:
        version = store.resolve(alias=CHAMPION)
    except RegistryError as exc:
        raise dg.Failure(
            description=f"{exc}. Promote a candidate first (materialize champion_model).",
            allow_retries=False,
        ) from exc
    ev, run_id = run_evaluation(
        context,
        store,
        version,
        {"golden_eval_set": golden_eval_set, "synthetic_eval_set": synthetic_eval_set},
        "champion",
        probes=safety_probes,
    )
    return dg.Output(summary_value(ev, run_id), metadata=evaluation_metadata(ev, store, run_id))


class BlessConfig(dg.Config):
    """Which evaluation becomes the baseline, and who says so.

    ``version``: ``champion`` or a version number blesses that version's newest evaluation;
    empty (the default, e.g. in a "materialize all") changes nothing and describes the current
    baseline, so the baseline moves only when someone asks for it.
    """

    version: str = ""
    blessed_by: str = ""
    reason: str = ""


@dg.asset(
    group_name="evaluation",
    kinds={"json"},
    owners=OWNERS,
    deps=["champion_model"],
    retry_policy=TRANSIENT_RETRY,
)
@traced
def benchmark_baseline(
    config: BlessConfig, mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings
) -> dg.MaterializeResult:
    """The blessed metrics and item-level results every candidate is compared with.

    Changes only by an explicit bless (``bless_baseline_job``, this asset with config
    ``version: champion`` or a number, or ``agent-pipeline bless``), recorded with who and
    when; the first promotion bootstraps it. Without a version it only reports the current
    baseline. Every previous baseline stays under ``baseline/history/``.
    """
    store = mlflow.open(state.path)
    if config.version:
        version = store.resolve(alias=CHAMPION) if config.version == CHAMPION else store.resolve(version=config.version)
        try:
            info = promotion.bless_version(store, state.path, policy.load(), version, config.blessed_by, config.reason)
        except RegistryError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
    else:
        found = evaluation.load_baseline(state.path)
        if found is None:
            raise dg.Failure(
                description="no baseline yet and no version to bless: set config version to 'champion' or a number",
                allow_retries=False,
            )
        info = found[1]
    return dg.MaterializeResult(
        metadata={
            "model_version": info["version"],
            "evaluation_id": info["evaluation_id"],
            "blessed_by": info["blessed_by"],
            "blessed_at": info["blessed_at"],
            "blessed_now": bool(config.version),
            "evaluation_path": dg.MetadataValue.path(info["evaluation_path"]),
            **{k: float(v) for k, v in info["metrics"].items() if v == v},
        },
        data_version=dg.DataVersion(f"v{info['version']}-{info['fingerprint'][:8]}"),
    )
