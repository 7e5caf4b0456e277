"""Promotion gates: blocking checks on ``candidate_evaluation``, and the nightly regression check.

The gate logic lives in ``lib/evaluation/gates.py``; a check here loads its inputs, calls it and
records the verdict with ``gate_result``/``verdict_result``, which write

* the verdict to the candidate's MLflow model version as a tag (``gate.<name>`` =
  ``passed|failed@<evaluation id>``): ``champion_model`` proves from the registry itself that
  every gate the policy requires passed on the evaluation it promotes;
* ``<evaluation folder>/gates/<name>.json`` with the description and every scalar and table of
  the check's metadata: the evidence bundle (model card) lists each gate's numbers from there.

A gate that raises is recorded as failed (with the error) before the error propagates (fail
closed: a crashed gate never reads as "not run yet" or as passed).

The gates that judge the candidate on what it has not seen and on how stable it is
(``routing_is_stable``, ``generalizes_to_holdout``, ``agrees_with_champion_on_traffic``) live in
``generalization_checks.py``.
"""

from collections.abc import Callable

import dagster as dg

from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, StateFolder
from agent_pipeline.lib.evaluation import gates, latency
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry.models import CHAMPION, utc_now


def _plain_metadata(metadata: dict) -> dict:
    return {k: (v.value if isinstance(v, dg.MetadataValue) else v) for k, v in metadata.items()}


def gate_result(
    mlflow: MlflowRegistry, state: StateFolder, summary: dict, name: str, passed: bool, description: str, metadata: dict
) -> dg.AssetCheckResult:
    """Record one gate's verdict for ``summary``'s version and evaluation, and describe it.

    ``summary`` is the ``candidate_evaluation`` value (``version``, ``evaluation_id``,
    ``evaluation_path``); ``metadata`` is the check's metadata (plain values or
    ``dg.MetadataValue``s): every entry also lands in ``gates/<name>.json`` for the model card.
    """
    store = mlflow.open(state.path)
    gates.write_gate_record(
        summary["evaluation_path"],
        name,
        passed,
        description,
        _plain_metadata(metadata),
        version=summary["version"],
        evaluation_id=summary["evaluation_id"],
        recorded_at=utc_now(),
    )
    store.record_gates(summary["version"], summary["evaluation_id"], {name: passed})
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"model_version": summary["version"], "evaluation_id": summary["evaluation_id"], **metadata},
    )


def verdict_result(
    mlflow: MlflowRegistry, state: StateFolder, summary: dict, name: str, verdict: gates.GateVerdict
) -> dg.AssetCheckResult:
    """``gate_result`` for a ``GateVerdict`` (numbers as metadata values, tables as markdown)."""
    metadata = {**verdict.numbers, **{k: dg.MetadataValue.md(v) for k, v in verdict.tables.items()}}
    return gate_result(mlflow, state, summary, name, verdict.passed, verdict.description, metadata)


def run_gate(
    mlflow: MlflowRegistry,
    state: StateFolder,
    summary: dict,
    name: str,
    evaluate: Callable[[], gates.GateVerdict],
) -> dg.AssetCheckResult:
    """Evaluate a gate fail-closed: an exception is recorded as a failed verdict, then re-raised."""
    try:
        verdict = evaluate()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        gates.write_gate_record(
            summary["evaluation_path"],
            name,
            False,
            f"the gate errored and counts as failed: {error}",
            {},
            version=summary["version"],
            evaluation_id=summary["evaluation_id"],
            recorded_at=utc_now(),
            error=error,
        )
        mlflow.open(state.path).record_gates(summary["version"], summary["evaluation_id"], {name: False})
        raise
    return verdict_result(mlflow, state, summary, name, verdict)


def regression_verdict(summary: dict, mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings):
    cfg = policy.load().gates.no_regression_vs_baseline
    champion = mlflow.open(state.path).alias_version(CHAMPION)
    return gates.regression(evaluation.load(summary["evaluation_path"]), state.path, cfg, champion)


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def no_regression_vs_baseline(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """No headline metric falls below the blessed baseline by more than its tolerance, and no more
    than ``max_new_failures`` cases that passed in the baseline now fail (they are listed). No
    baseline while a champion exists fails (restore or re-bless it)."""
    return run_gate(
        mlflow,
        state,
        candidate_evaluation,
        "no_regression_vs_baseline",
        lambda: regression_verdict(candidate_evaluation, mlflow, state, policy),
    )


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def critical_cases_pass(mlflow: MlflowRegistry, state: StateFolder, candidate_evaluation: dict) -> dg.AssetCheckResult:
    """Every golden case tagged ``critical`` takes its expected route."""
    return run_gate(
        mlflow,
        state,
        candidate_evaluation,
        "critical_cases_pass",
        lambda: gates.critical_cases(evaluation.load(candidate_evaluation["evaluation_path"])),
    )


RERUN_LATENCY = (
    "re-run this check alone when the machine is quieter: `dg launch --job latency_recheck_job` (or Jobs -> "
    "latency_recheck_job in the UI), then `dg launch --assets champion_model` to promote if it passes"
)


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def latency_within_slo(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """Single-request latency, measured fairly: the candidate interleaved with the current champion
    over the same texts (warm-up, rounds), judged as a ratio to the champion and against the
    absolute SLO by medians over rounds (``lib/evaluation/latency.py``). A measurement too noisy to
    judge is "undecided": not passed, and the description says how to re-run the check alone."""

    def verdict() -> gates.GateVerdict:
        cfg = policy.load().gates.latency_within_slo
        tier = str(candidate_evaluation.get("tier", "fast"))
        measure = cfg.measurement.model_dump()
        measure["ratio_on"] = tuple(measure["ratio_on"])
        plan = latency.LatencyPlan(
            slo_ms=cfg.slo_for(tier), max_ratio=float(measure.pop("max_ratio_vs_champion")), **measure
        )
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
        return gates.GateVerdict(
            result.passed,
            description,
            {"tier": tier, "champion_version": str(champion_version) if champion else "none", **result.metadata()},
            {"rounds": result.rounds_markdown()},
        )

    return run_gate(mlflow, state, candidate_evaluation, "latency_within_slo", verdict)


@dg.asset_check(asset="champion_evaluation", blocking=False)
def champion_holds_baseline(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, champion_evaluation: dict
) -> dg.AssetCheckResult:
    """The serving champion still meets the blessed baseline on today's eval sets (alerting, not gating)."""
    v = regression_verdict(champion_evaluation, mlflow, state, policy)
    return dg.AssetCheckResult(
        passed=v.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=v.description,
        metadata={
            "model_version": champion_evaluation["version"],
            **v.numbers,
            **{k: dg.MetadataValue.md(t) for k, t in v.tables.items()},
        },
    )
