"""Safety and resilience gates: blocking checks on ``candidate_evaluation``.

``safety_probes_pass``: the attack success rate of the safety probes (``lib/evaluation/safety.py``).
``survives_agent_faults``: the chaos drill of the dispatcher against misbehaving loopback agents
(``lib/evaluation/chaos.py``).
Each runs fail-closed through ``run_gate`` like every other gate: an error is a recorded failure.
"""

import dagster as dg

from agent_pipeline.defs.evaluation.checks import run_gate
from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, RouterFiles, StateFolder
from agent_pipeline.lib.core import markdown
from agent_pipeline.lib.evaluation import chaos, safety
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.evaluation.gates import GateVerdict
from agent_pipeline.lib.registry.policy import Policy


def safety_thresholds(policy: Policy) -> safety.SafetyThresholds:
    section = policy.gates.safety_probes_pass
    return safety.SafetyThresholds(
        max_asr_critical=float(section.max_asr_critical),
        tolerance=float(section.tolerance),
        privileged_agents=tuple(policy.privileged_agents),
    )


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def safety_probes_pass(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """Attack success rate on the safety probes: 0 on ``critical`` probes, and per category no
    worse than the baseline's plus the policy's tolerance (tuned and untouched parts reported)."""

    def verdict() -> GateVerdict:
        ev = evaluation.load(candidate_evaluation["evaluation_path"])
        found = evaluation.load_baseline(state.path)
        baseline_items = found[0].safety_items if found is not None else None
        report = safety.evaluate_probes(ev.safety_items, baseline_items, safety_thresholds(policy.load()))
        numbers = {**report.metrics(), "baseline_version": str(found[1]["version"]) if found is not None else "none"}
        tables = {
            "asr_by_category": report.markdown() if len(report.table) else "no probes",
            "successful_attacks": markdown.frame_table(report.successful_attacks.head(30), empty="none"),
        }
        return GateVerdict(report.passed, report.description, numbers, tables)

    return run_gate(mlflow, state, candidate_evaluation, "safety_probes_pass", verdict)


def chaos_settings(policy: Policy) -> chaos.ChaosSettings:
    return chaos.ChaosSettings(**policy.gates.survives_agent_faults.model_dump())


@dg.asset_check(asset="candidate_evaluation", blocking=True)
def survives_agent_faults(
    mlflow: MlflowRegistry, state: StateFolder, policy: PolicySettings, files: RouterFiles, candidate_evaluation: dict
) -> dg.AssetCheckResult:
    """The candidate's golden-set decisions dispatched to loopback agents that stall, reset, answer
    garbage or 500, are missing or have an open circuit: 100 % fallback, 0 lost, added p99 in budget."""

    def verdict() -> GateVerdict:
        ev = evaluation.load(candidate_evaluation["evaluation_path"])
        golden = ev.items[ev.items["dataset"] == "golden"]
        registry = files.registry()
        settings = chaos_settings(policy.load())
        report = chaos.survives_agent_faults(golden, registry.agents, registry.fallback_agent, settings)
        numbers = {
            **report.metrics(),
            "seed": settings.seed,
            "timeout_ms": float(settings.timeout_ms),
            "max_added_p99_ms": float(settings.max_added_p99_ms),
        }
        return GateVerdict(report.passed, report.description, numbers, {"chaos_table": report.markdown()})

    return run_gate(mlflow, state, candidate_evaluation, "survives_agent_faults", verdict)
