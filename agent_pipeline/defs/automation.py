"""When things run: jobs, the nightly schedule and the sensors, in one place.

Default statuses are stated in code: the nightly schedule and the sensors start RUNNING, so a
``make run`` (UI + daemon) operates the pipeline without clicks.
"""

from datetime import timedelta

import dagster as dg

LIFECYCLE = dg.AssetSelection.groups("datasets", "training", "registry") | dg.AssetSelection.assets(
    "candidate_evaluation"
)

train_and_promote_job = dg.define_asset_job(
    "train_and_promote_job",
    selection=LIFECYCLE,
    description="Datasets -> router_candidate -> candidate_evaluation -> gates -> champion_model.",
)

champion_eval_job = dg.define_asset_job(
    "champion_eval_job",
    selection=dg.AssetSelection.assets("golden_eval_set", "synthetic_eval_set", "safety_probes", "champion_evaluation")
    | dg.AssetSelection.assets("synthetic_eval_set").upstream(),
    description="Re-evaluate the serving champion on the current eval sets, without retraining.",
)

bless_baseline_job = dg.define_asset_job(
    "bless_baseline_job",
    selection=dg.AssetSelection.assets("benchmark_baseline"),
    description="Bless an evaluated version (the champion by default) as the benchmark baseline.",
    config={"ops": {"benchmark_baseline": {"config": {"version": "champion", "blessed_by": "", "reason": ""}}}},
)

latency_recheck_job = dg.define_asset_job(
    "latency_recheck_job",
    selection=dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("candidate_evaluation"), "latency_within_slo")),
    description="Re-run latency_within_slo alone on the latest candidate_evaluation (when it was undecided on a "
    "busy machine); then materialize champion_model to promote.",
)

traffic_monitoring_job = dg.define_asset_job(
    "traffic_monitoring_job",
    selection=dg.AssetSelection.assets("inference_log", "drift_report"),
    description="Validate a day's landing files into inference_log, then its Evidently drift_report.",
)

nightly_eval_job = dg.define_asset_job(
    "nightly_eval_job",
    selection=dg.AssetSelection.assets("champion_evaluation", "inference_log", "drift_report"),
    description="Nightly: re-evaluate the champion against the eval sets and the baseline; yesterday's "
    "inference log (catching late files; a quiet day is valid) and drift report.",
)


@dg.schedule(
    job=nightly_eval_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_eval_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """02:00 UTC: champion evaluation (a regression is a failed check) + yesterday's drift report."""
    yesterday = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(
        run_key=f"nightly:{yesterday}",
        partition_key=yesterday,
        tags={"agent_pipeline/trigger": "nightly"},
    )
