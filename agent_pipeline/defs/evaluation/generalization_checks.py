"""Promotion gates that judge the candidate on what it has not seen, and on how stable it is.

* ``generalizes_to_holdout``: the sealed holdout (``lib/evaluation/holdout.py``), read here and
  nowhere else, every read logged.
* ``agrees_with_champion_on_traffic``: candidate and champion replay recent production records
  (``lib/evaluation/replay.py``).
* ``routing_is_stable``: each evaluation case routed again ``repeats`` times; exact for our
  routers, within the flakiness budget for a router that is not ours (``lib/evaluation/stability.py``).

Their tolerances come from the policy (``config/policy.yaml``, ``gates.<name>``). Like every gate
they run fail-closed through ``run_gate``: an error is recorded as a failed verdict.
"""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.evaluation.checks import run_gate
from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, RouterFiles, StateFolder
from agent_pipeline.lib.core import markdown
from agent_pipeline.lib.evaluation import holdout, replay, stability
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.evaluation.gates import GateVerdict
from agent_pipeline.lib.registry.models import CHAMPION

TRAINING = {"training_examples": dg.AssetIn("training_examples")}


def _table(df: pd.DataFrame) -> str:
    return markdown.frame_table(df, floatfmt=".3f", empty="none")


@dg.asset_check(asset="candidate_evaluation", blocking=True, additional_ins=TRAINING)
def generalizes_to_holdout(
    context: dg.AssetCheckExecutionContext,
    mlflow: MlflowRegistry,
    state: StateFolder,
    policy: PolicySettings,
    files: RouterFiles,
    candidate_evaluation: dict,
    training_examples: pd.DataFrame,
) -> dg.AssetCheckResult:
    """On the sealed holdout (never trained, tuned or generated from), the candidate holds the
    policy's floors, and its evaluation-set metrics exceed its holdout metrics by no more than the
    tolerated gap: a candidate that learned its evaluation sets fails. Holdout texts found in the
    training data are left out and counted; too many of them fail the gate. Every read of the
    holdout is appended to ``$AGENT_PIPELINE_HOME/holdout/access.jsonl``."""

    def verdict() -> GateVerdict:
        cfg = policy.load().gates.generalizes_to_holdout
        store = mlflow.open(state.path)
        version = candidate_evaluation["version"]
        sealed = holdout.read_sealed(
            files.holdout_path,
            state.path,
            files.registry(),
            purpose="gate generalizes_to_holdout",
            reader={
                "model_version": version,
                "evaluation_id": candidate_evaluation["evaluation_id"],
                "dagster_run_id": context.run.run_id,
            },
        )
        ev = evaluation.load(candidate_evaluation["evaluation_path"])
        result = holdout.judge(
            store.load(version=version),
            sealed,
            eval_metrics=ev.metrics,
            training_texts=training_examples["text"].astype(str),
            eval_texts=ev.items["text"],
            floors=cfg.floors.values(),
            max_gap=cfg.max_gap.values(),
            max_leaked_share=cfg.max_leaked_share,
        )
        numbers = {
            **{f"holdout.{k}": v for k, v in result.metrics.items() if v == v},
            **{f"gap.{k}": v for k, v in result.gaps.items() if v == v},
            "n_holdout": result.n_rows,
            "n_scored": result.n_scored,
            "n_in_training_excluded": result.n_in_training,
            "n_in_eval_sets": result.n_in_eval_sets,
            "access_log": str(holdout.access_log_path(state.path)),
        }
        return GateVerdict(result.passed, result.description, numbers, {"comparison": result.table()})

    return run_gate(mlflow, state, candidate_evaluation, "generalizes_to_holdout", verdict)


@dg.asset_check(asset="candidate_evaluation", blocking=True, additional_ins=TRAINING)
def agrees_with_champion_on_traffic(
    mlflow: MlflowRegistry,
    state: StateFolder,
    policy: PolicySettings,
    files: RouterFiles,
    candidate_evaluation: dict,
    training_examples: pd.DataFrame,
) -> dg.AssetCheckResult:
    """Candidate and champion route the inference log's last N days: the disagreement rate stays
    within budget and, on enough human-reviewed rows, the candidate routes at least about as well as
    the champion. Rows the candidate was trained on are excluded and counted. No champion passes
    as "nothing to compare" (the first promotion); a champion with no traffic in the window passes
    the same way unless the policy sets ``require_traffic`` (production does): this gate is
    relative, the absolute gates (holdout, baseline, critical cases) still judge the candidate."""

    def verdict() -> GateVerdict:
        cfg = policy.load().gates.agrees_with_champion_on_traffic
        store = mlflow.open(state.path)
        version = candidate_evaluation["version"]
        champion_version = store.alias_version(CHAMPION)
        records, days = replay.recent_records(state.path, cfg.days)
        champion = None
        reason = "no champion yet (the first promotion)"
        if champion_version == str(version):
            reason = f"the candidate v{version} is already the champion"
        elif champion_version is not None:
            champion = store.load(version=champion_version)
        result = replay.judge(
            store.load(version=version) if champion is not None and len(records) else None,
            champion,
            records,
            days=days,
            training_texts=training_examples["text"].astype(str),
            registry=files.registry(),
            max_disagreement_rate=cfg.max_disagreement_rate,
            max_accuracy_drop=cfg.max_accuracy_drop,
            min_reviewed_rows=cfg.min_reviewed_rows,
            require_traffic=cfg.require_traffic,
            no_champion_reason=reason,
        )
        numbers = {"champion_version": str(champion_version), **{k: v for k, v in result.metadata().items() if v == v}}
        return GateVerdict(result.passed, result.description, numbers, {"disagreeing_cases": _table(result.cases)})

    return run_gate(mlflow, state, candidate_evaluation, "agrees_with_champion_on_traffic", verdict)


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def routing_is_stable(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """Each evaluation case routed ``repeats`` more times, the model freshly loaded from the
    registry: our routers must give identical decisions (and the single-request path must agree
    with the batch path); a router that is not ours may change at most ``flakiness_budget`` of
    the cases' routes. Per-case agreement and the flaky cases are reported."""

    def verdict() -> GateVerdict:
        cfg = policy.load().gates.routing_is_stable
        store = mlflow.open(state.path)
        ev = evaluation.load(candidate_evaluation["evaluation_path"])
        result = stability.judge(
            store.load(version=candidate_evaluation["version"]),
            ev.items,
            ev.fingerprint,
            repeats=cfg.repeats,
            flakiness_budget=cfg.flakiness_budget,
        )
        numbers = {
            "fingerprint": ev.fingerprint,
            "repeat_fingerprints": ",".join(result.fingerprints),
            **result.metadata(),
        }
        return GateVerdict(result.passed, result.description, numbers, {"flaky_cases": _table(result.flaky_cases)})

    return run_gate(mlflow, state, candidate_evaluation, "routing_is_stable", verdict)
