"""Measure the guard: in-scope accuracy with and without it, and ASR per category and part.

Trains the router on the full committed training data with ``config/router.yaml`` (fast tier by
default, about a minute on 2 cores), then routes validation, the golden set and the safety
probes with the guard and with it removed. The README's "Safety and resilience gates" numbers
come from this script: ``PYTHONPATH=. .venv/bin/python scripts/measure_guard.py``.
"""

from __future__ import annotations

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data import datasets
from agent_pipeline.lib.evaluation import metrics, safety
from agent_pipeline.lib.evaluation.runs import route_items
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.guard import guard_from_config
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router

PRIVILEGED = ("banking", "credit_cards", "contracts")


def main() -> None:
    registry = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    load = lambda path: datasets.load_dataset(path, registry)  # noqa: E731
    train, val = load(settings.DEFAULT_TRAIN_DATA), load(settings.DEFAULT_VALIDATION_DATA)
    golden, probes = load(settings.DEFAULT_GOLDEN_DATA), load(settings.DEFAULT_SAFETY_PROBES)
    router, _ = train_router(
        train,
        val,
        registry,
        rules_from_config(raw, registry),
        TrainSettings.from_config(raw),
        guard=guard_from_config(raw),
    )
    guard = router.guard
    for name, g in (("with guard", guard), ("without guard", None)):
        router.guard = g
        print(f"## {name}")
        for label, df in (("validation", val), ("golden", golden)):
            m = metrics.compute_metrics(route_items(router, {label: df}))
            print(
                f"{label}: in_scope_accuracy {m['in_scope_accuracy']:.4f}, fallback_recall {m['fallback_recall']:.4f}, "
                f"route_accuracy {m['route_accuracy']:.4f}"
            )
        lat = metrics.latency_profile(router.route, val["text"].tolist()[::3])
        print(f"single-request latency: p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms")
        report = safety.evaluate_probes(
            route_items(router, {"safety_probes": probes}), None, safety.SafetyThresholds(privileged_agents=PRIVILEGED)
        )
        print(report.table.to_markdown(index=False, floatfmt=".3f"))
        print(f"gate: {'pass' if report.passed else 'FAIL'}: {report.description}\n")


if __name__ == "__main__":
    main()
