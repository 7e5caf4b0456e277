"""Routers that are not ours: a team's MLflow pyfunc registered under the model name.

The decision contract (``lib/router/pyfunc.py``): ``predict(DataFrame[text])`` returns one row
per request with ``route, agent, pred_label, decided_label, confidence, fallback,
fallback_reason, rule``. ``adopt`` checks that a registered version honours it on a few probe
texts and makes it the candidate, so the unchanged pipeline (``candidate_evaluation``, every
gate, ``champion_model``) evaluates, gates and promotes it like a router it trained itself.
How to register one: ``docs/custom_router.md``.
"""

from __future__ import annotations

import pandas as pd

from agent_pipeline.lib.router.decision import DECISION_COLUMNS

PROBES = ("What is the weather today?", "Generate contract summary", "transfer $50 to my savings account", "")


class ContractError(ValueError):
    """A registered model does not honour the decision contract; the message says what is wrong."""


def check_contract(model, routes: set[str] | frozenset[str]) -> None:
    """Route the probe texts and check the columns, the row count and the routes (known ones only)."""
    out = model.route_batch(list(PROBES))
    where = f"model {model.name} version {model.version}"
    if not isinstance(out, pd.DataFrame):
        raise ContractError(f"{where}: predict must return a DataFrame, got {type(out).__name__}")
    missing = [c for c in DECISION_COLUMNS if c not in out.columns]
    if missing:
        raise ContractError(
            f"{where}: predict's output lacks column(s) {', '.join(missing)} (the decision contract is "
            f"{', '.join(DECISION_COLUMNS)}; docs/custom_router.md)"
        )
    if len(out) != len(PROBES):
        raise ContractError(f"{where}: predict returned {len(out)} rows for {len(PROBES)} texts (one row per text)")
    unknown = sorted(set(out["route"].astype(str)) - set(routes))
    if unknown:
        raise ContractError(
            f"{where}: predict returned route(s) {unknown} unknown to the agent registry (config/agents.yaml)"
        )


def adopt(store, version: str, routes: set[str] | frozenset[str]):
    """Check ``version`` against the contract and move the ``candidate`` alias to it; returns the loaded model."""
    from agent_pipeline.lib.registry.models import CANDIDATE

    model = store.load(version=version)
    check_contract(model, routes)
    store.client.set_registered_model_alias(store.model_name, CANDIDATE, model.version)
    return model
