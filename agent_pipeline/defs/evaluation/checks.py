"""Promotion gates: blocking checks on ``candidate_evaluation``, and the nightly regression check.

Each gate also writes its result to the candidate's MLflow model version as a tag
(``gate.<name>`` = ``passed@<evaluation id>``), so ``champion_model`` can prove, from the
registry itself, that every required gate passed on the evaluation it promotes, and so the
result outlives the Dagster run.
"""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import GateSettings, MlflowRegistry, StateFolder
from agent_pipeline.lib.data import datasets
from agent_pipeline.lib.evaluation import latency, metrics
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry.models import CHAMPION

# The accurate tier's float32 encoder gives single and batch confidences equal to ~1e-7 (the
# GEMMs differ by shape); the decisions themselves must match exactly.
CONFIDENCE_TOLERANCE = 1e-5


def gate_result(
    mlflow: MlflowRegistry, state: StateFolder, summary: dict, name: str, passed: bool, description: str, metadata: dict
) -> dg.AssetCheckResult:
    store = mlflow.open(state.path)
    store.record_gates(summary["version"], summary["evaluation_id"], {name: passed})
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"model_version": summary["version"], "evaluation_id": summary["evaluation_id"], **metadata},
    )


def regression_result(summary: dict, state: StateFolder, gates: GateSettings) -> tuple[bool, str, dict]:
    """Compare a saved evaluation with the baseline: (passed, one-line description, metadata)."""
    cfg = gates.load()
    ev = evaluation.load(summary["evaluation_path"])
    found = evaluation.compare_with_baseline(ev, state.path, cfg["tolerances"], int(cfg["max_new_failures"]))
    if found is None:
        return True, "no baseline yet: the first promotion bootstraps it", {"baseline_version": "none"}
    report, info = found
    newly = report.newly_failing
    return (
        report.passed,
        report.summary(),
        {
            "baseline_version": str(info["version"]),
            "baseline_evaluation_id": str(info["evaluation_id"]),
            "n_newly_failing": len(newly),
            "n_newly_passing": int(report.newly_passing),
            "comparison": dg.MetadataValue.md(report.markdown()),
        },
    )


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def no_regression_vs_baseline(
    mlflow: MlflowRegistry, state: StateFolder, gates: GateSettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """No headline metric falls below the blessed baseline by more than its tolerance, and no more
    than ``max_new_failures`` cases that passed in the baseline now fail (they are listed)."""
    passed, description, md = regression_result(candidate_evaluation, state, gates)
    return gate_result(mlflow, state, candidate_evaluation, "no_regression_vs_baseline", passed, description, md)


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def critical_cases_pass(mlflow: MlflowRegistry, state: StateFolder, candidate_evaluation: dict) -> dg.AssetCheckResult:
    """Every golden case tagged ``critical`` takes its expected route."""
    items = evaluation.load(candidate_evaluation["evaluation_path"]).items
    critical = items[datasets.has_tag(items["tags"], "critical")]
    failed = critical[~critical["passed"]]
    passed = len(critical) > 0 and failed.empty
    if len(critical) == 0:
        description = "no critical cases in the evaluation sets: a golden set without critical cases cannot gate"
    elif failed.empty:
        description = f"all {len(critical)} critical cases take their expected route"
    else:
        description = f"{len(failed)} of {len(critical)} critical cases fail: " + ", ".join(
            f"{r.id} ({r.text!r}: expected {r.expected_route}, got {r.route})" for r in failed.head(5).itertuples()
        )
    return gate_result(
        mlflow,
        state,
        candidate_evaluation,
        "critical_cases_pass",
        passed,
        description,
        {
            "n_critical": len(critical),
            "n_failed": len(failed),
            "failed_cases": dg.MetadataValue.md(
                failed[["id", "text", "expected_route", "route", "confidence"]].to_markdown(index=False)
                if len(failed)
                else "none"
            ),
        },
    )


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def routing_is_deterministic(
    mlflow: MlflowRegistry, state: StateFolder, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """A repeat evaluation, with the model freshly loaded from the registry, gives identical
    decisions; and the single-request fast path agrees with the batch path case by case."""
    store = mlflow.open(state.path)
    ev = evaluation.load(candidate_evaluation["evaluation_path"])
    model = store.load(version=candidate_evaluation["version"])
    cases = {name: g for name, g in ev.items.groupby("dataset", sort=False)}
    repeat = evaluation.route_items(model, cases)
    repeat_fp = metrics.decisions_fingerprint(repeat)
    sample = ev.items.iloc[:: max(1, len(ev.items) // 300)]
    singles = pd.DataFrame([model.route_one(t) for t in sample["text"]], index=sample.index)
    cols = ["route", "decided_label", "rule"]
    mismatch = sample[
        (singles[cols].astype(str) != sample[cols].astype(str)).any(axis=1)
        | ((singles["confidence"].astype(float) - sample["confidence"]).abs() > CONFIDENCE_TOLERANCE)
    ]
    passed = repeat_fp == ev.fingerprint and mismatch.empty
    description = (
        f"identical decisions on a repeat of {len(repeat)} cases; fast path agrees on {len(sample)} sampled cases"
        if passed
        else f"fingerprint {ev.fingerprint} vs repeat {repeat_fp}; {len(mismatch)} of {len(sample)} single-request "
        "decisions differ from the batch path"
    )
    return gate_result(
        mlflow,
        state,
        candidate_evaluation,
        "routing_is_deterministic",
        passed,
        description,
        {"fingerprint": ev.fingerprint, "repeat_fingerprint": repeat_fp, "n_single_path_mismatches": len(mismatch)},
    )


RERUN_LATENCY = (
    "re-run this check alone when the machine is quieter: `dg launch --job latency_recheck_job` (or Jobs -> "
    "latency_recheck_job in the UI), then `dg launch --assets champion_model` to promote if it passes"
)


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def latency_within_slo(
    mlflow: MlflowRegistry, state: StateFolder, gates: GateSettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """Single-request latency, measured fairly: the candidate interleaved with the current champion
    over the same texts (warm-up, rounds), judged as a ratio to the champion and against the
    absolute SLO by medians over rounds (``lib/evaluation/latency.py``). A measurement too noisy to
    judge is "undecided": not passed, and the description says how to re-run the check alone."""
    cfg = gates.load()
    tier = str(candidate_evaluation.get("tier", "fast"))
    slo = {k: float(v) for k, v in (cfg.get("latency_slo_ms_by_tier", {}).get(tier) or cfg["latency_slo_ms"]).items()}
    measure = dict(cfg.get("latency_measurement") or {})
    if "ratio_on" in measure:
        measure["ratio_on"] = tuple(measure["ratio_on"])
    plan = latency.LatencyPlan(slo_ms=slo, max_ratio=float(measure.pop("max_ratio_vs_champion", 1.5)), **measure)
    store = mlflow.open(state.path)
    version = str(candidate_evaluation["version"])
    candidate = store.load(version=version)
    champion_version = store.alias_version(CHAMPION)
    champion = store.load(version=champion_version) if champion_version not in (None, version) else None
    texts = evaluation.load(candidate_evaluation["evaluation_path"]).items["text"].astype(str).tolist()
    result = latency.judge(candidate.route_one, champion.route_one if champion else None, texts, plan)
    description = result.summary()
    if result.verdict == "undecided":
        description += "; " + RERUN_LATENCY
    return gate_result(
        mlflow,
        state,
        candidate_evaluation,
        "latency_within_slo",
        result.passed,
        description,
        {
            "tier": tier,
            "champion_version": str(champion_version) if champion else "none",
            **result.metadata(),
            "rounds": dg.MetadataValue.md(result.rounds_markdown()),
        },
    )


@dg.asset_check(asset="champion_evaluation", blocking=False)
def champion_holds_baseline(state: StateFolder, gates: GateSettings, champion_evaluation: dict) -> dg.AssetCheckResult:
    """The serving champion still meets the blessed baseline on today's eval sets (alerting, not gating)."""
    passed, description, md = regression_result(champion_evaluation, state, gates)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"model_version": champion_evaluation["version"], **md},
    )
