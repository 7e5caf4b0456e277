"""When things run: jobs, the nightly schedule and the sensors, in one place.

Default statuses are stated in code: the nightly schedule and the sensors start RUNNING, so a
``make run`` (UI + daemon) operates the pipeline without clicks.
"""


import dagster as dg

LIFECYCLE = (
    dg.AssetSelection.groups("datasets", "training", "registry")
    | dg.AssetSelection.assets("candidate_evaluation")
)

train_and_promote_job = dg.define_asset_job(
    "train_and_promote_job",
    selection=LIFECYCLE,
    description="Datasets -> router_candidate -> candidate_evaluation -> gates -> champion_model.",
)

champion_eval_job = dg.define_asset_job(
    "champion_eval_job",
    selection=dg.AssetSelection.assets("golden_eval_set", "synthetic_eval_set", "champion_evaluation")
    | dg.AssetSelection.assets("synthetic_eval_set").upstream(),
    description="Re-evaluate the serving champion on the current eval sets, without retraining.",
)

bless_baseline_job = dg.define_asset_job(
    "bless_baseline_job",
    selection=dg.AssetSelection.assets("benchmark_baseline"),
    description="Bless an evaluated version (the champion by default) as the benchmark baseline.",
)
