"""Monitoring assets: the daily inference log and the daily drift report."""

import json

import dagster as dg

from agent_pipeline.defs.resources import IngestSettings, MlflowRegistry, RouterFiles, StateFolder
from agent_pipeline.defs.retries import TRANSIENT_RETRY
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.monitoring import drift, ingest, report_page
from agent_pipeline.lib.monitoring import records as monitoring

OWNERS = ["team:ml-platform"]
DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC", end_offset=1)


@dg.asset(
    group_name="monitoring",
    partitions_def=DAILY,
    kinds={"parquet"},
    owners=OWNERS,
    check_specs=[
        dg.AssetCheckSpec(
            "traffic_received",
            asset="inference_log",
            blocking=False,
            description="The day has at least one valid record (a warning: a silent producer looks like a quiet day).",
        ),
        dg.AssetCheckSpec(
            "landing_files_parsed",
            asset="inference_log",
            blocking=False,
            description="Every landing file of the day was read (none unparseable as a whole, no symlink refused).",
        ),
        dg.AssetCheckSpec(
            "landing_files_named",
            asset="inference_log",
            blocking=False,
            description="Every file in the landing folder is named YYYY-MM-DD*.jsonl (a warning: others are never read).",
        ),
    ],
)
@traced
def inference_log(
    context: dg.AssetExecutionContext, files: RouterFiles, state: StateFolder, ingest_settings: IngestSettings
):
    """Production routing records for one day, validated from the landing folder.

    Reads every ``<date>*.jsonl`` file in ``$AGENT_PIPELINE_HOME/traffic/landing/`` (one JSON
    object per line, fields as in the README). Valid rows go to
    ``traffic/log/<date>.parquet``; bad rows go to ``traffic/quarantine/<date>.jsonl`` with the
    file, line and reason, and are counted here, never dropped silently. A file that cannot be
    parsed at all, a symlink or a non-regular entry is quarantined whole (never opened) while
    the day's other files are ingested; the ``landing_files_parsed`` check fails and names it.
    Texts are redacted (``lib/data/redaction.py``) before the log is written. A day without
    files is materialized empty, with a warning check.
    """
    partition = context.partition_key
    registry = files.registry()
    try:
        result = ingest.ingest_partition(
            settings.landing_dir(state.path),
            partition,
            known_labels=set(registry.known_labels),
            known_routes=set(registry.routes),
            out_dir=settings.inference_log_dir(state.path),
            quarantine_dir=settings.traffic_dir(state.path) / "quarantine",
            limits=ingest_settings.limits(),
        )
    except ingest.IngestError as exc:
        raise dg.Failure(description=str(exc)) from exc
    if result.n_quarantined:
        context.log.warning("%s: %d rows quarantined: %s", partition, result.n_quarantined, result.reasons)
    yield dg.MaterializeResult(metadata={"dagster/row_count": result.n_valid, **result.to_metadata()})
    yield dg.AssetCheckResult(
        check_name="traffic_received",
        passed=result.n_valid > 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{result.n_valid} valid records from {len(result.files)} files, {result.n_quarantined} quarantined",
    )
    rejected = result.rejected_files
    yield dg.AssetCheckResult(
        check_name="landing_files_parsed",
        passed=not rejected,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "; ".join(f"{path}: {reason}" for path, reason in sorted(rejected.items()))
            if rejected
            else f"all {len(result.files)} landing files read"
        ),
        metadata={"rejected_files": dg.MetadataValue.json(dict(sorted(rejected.items())))},
    )
    unmatched = result.unmatched_files
    yield dg.AssetCheckResult(
        check_name="landing_files_named",
        passed=not unmatched,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(unmatched)} files in the landing folder are not named YYYY-MM-DD*.jsonl and are never read: "
            + ", ".join(unmatched[:10])
            if unmatched
            else "every landing file is named YYYY-MM-DD*.jsonl"
        ),
        metadata={"unmatched_files": dg.MetadataValue.json(unmatched)},
    )


@dg.asset(
    group_name="monitoring",
    partitions_def=DAILY,
    deps=[inference_log, "champion_model"],
    kinds={"evidently", "html"},
    owners=OWNERS,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[
        dg.AssetCheckSpec(
            "no_drift_detected",
            asset="drift_report",
            blocking=False,
            description="The day's traffic matches the champion's reference (a warning when it does not).",
        )
    ],
)
@traced
def drift_report(context: dg.AssetExecutionContext, mlflow: MlflowRegistry, state: StateFolder):
    """Evidently drift of one day's traffic against the reference captured at promotion.

    Route mix, fallback rate, confidence, text length and word count, out-of-vocabulary rate
    against the router's vocabulary, and an 8-dimensional projection of the router's TF-IDF
    features (a new topic shows there even when the route mix does not move). The HTML report
    (headed by its day, the reference's model version and the versions that served the day) is
    written to ``reports/drift/<date>.html`` and logged to MLflow as run ``drift-<date>``; the
    ``report`` link opens it in the MLflow UI. The verdict and every per-feature
    score are metadata. The ``drift_retrain_sensor`` reacts to ``drift_detected``. It depends on
    ``champion_model`` because the reference is captured there. A day with less traffic than
    the report needs is reported as insufficient (no verdict), not as drift.
    """
    import pandas as pd

    partition = context.partition_key
    ref_path = monitoring.reference_path(state.path)
    if not ref_path.is_file():
        raise dg.Failure(
            description=f"{ref_path}: no drift reference; it is captured when a champion is promoted",
            allow_retries=False,
        )
    reference = pd.read_parquet(ref_path)
    reference_version = str(reference["model_version"].iloc[0])
    try:
        log = ingest.load_log(settings.inference_log_dir(state.path), partition)
    except FileNotFoundError as exc:
        raise dg.Failure(
            description=f"{exc}; materialize inference_log for {partition} first", allow_retries=False
        ) from exc
    out_dir = settings.reports_dir(state.path) / "drift"
    if len(log) < drift.DEFAULT_MIN_ROWS:
        message = (
            f"{partition}: {len(log)} valid records, fewer than the {drift.DEFAULT_MIN_ROWS} a drift verdict needs"
        )
        context.log.warning(message)
        yield dg.MaterializeResult(
            metadata={
                "drift_detected": False,
                "insufficient_data": True,
                "n_records": len(log),
                "reference_model_version": reference_version,
            }
        )
        yield dg.AssetCheckResult(
            check_name="no_drift_detected", passed=True, severity=dg.AssetCheckSeverity.WARN, description=message
        )
        return
    # Today's texts are featurized by the same router version that produced the reference.
    router = mlflow.open(state.path).load(version=reference_version).router
    result = monitoring.day_drift(log, reference, router, html_path=out_dir / f"{partition}.html", seed=20261125)
    atomic_write(out_dir / f"{partition}.json", json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    served = sorted({str(v) for v in log["model_version"].dropna()}) if "model_version" in log else []
    report_page.annotate(
        out_dir / f"{partition}.html",
        report_page.describe(
            day=partition,
            reference_version=reference_version,
            reference_rows=len(reference),
            served_versions=served,
            n_records=len(log),
            drift_detected=result.drift_detected,
            reasons=result.reasons,
        ),
    )
    # The report opens from the UI: logged to MLflow and linked to its artifact viewer.
    store = mlflow.open(state.path)
    run_id = store.log_drift_report(
        partition,
        reference_version,
        metrics={"drift_share": result.drift_share, "drift_detected": float(result.drift_detected)},
        tags={"dagster_run_id": context.run.run_id, "served_model_versions": ",".join(served)},
        files=[out_dir / f"{partition}.html", out_dir / f"{partition}.json"],
    )
    # The links first: the UI lists metadata in this order, above some thirty per-feature scores.
    metadata = {
        "report": dg.MetadataValue.url(store.artifact_url(run_id, f"drift/{partition}.html")),
        "mlflow_run": dg.MetadataValue.url(store.run_url(run_id)),
        **result.to_metadata(),
        "reference_model_version": reference_version,
        "served_model_versions": ", ".join(served) or "unknown",
        "n_records": len(log),
        "report_html": dg.MetadataValue.path(str(out_dir / f"{partition}.html")),
        "report_json": dg.MetadataValue.path(str(out_dir / f"{partition}.json")),
    }
    yield dg.MaterializeResult(metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="no_drift_detected",
        passed=not result.drift_detected,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"drift on {', '.join(result.drifted_features)}" if result.drift_detected else "no drift detected"
        ),
        metadata={
            "drift_share": float(result.drift_share),
            "drifted_features": ", ".join(result.drifted_features) or "none",
        },
    )
