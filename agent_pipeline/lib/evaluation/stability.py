"""Is routing stable? Each evaluation case routed ``repeats`` more times (the gate ``routing_is_stable``).

Our routers (rules + a linear model, ``LoadedModel.router`` set) are deterministic by
construction, so for them stability means exactly that: every repeat, with the model freshly
loaded from the registry, gives the evaluation's decision fingerprint, and the single-request
path agrees with the batch path case by case (routes, labels and rules exactly, confidence to
``confidence_tolerance``).

A router that is not ours (a team's MLflow pyfunc, say one that asks an LLM) may answer the
same text differently on different calls. For it, each case's **agreement** is the share of
its ``repeats + 1`` routes (the evaluation's and the repeats') equal to its most common route; a
case is **flaky** when that share is below 1; the gate holds while the share of flaky cases
stays within the policy's ``flakiness_budget``. The flaky cases are reported with their routes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class StabilityJudgement:
    passed: bool
    exact: bool  # judged exactly (our router) or within the flakiness budget (not ours)
    description: str
    repeats: int
    n_cases: int
    n_flaky: int
    flaky_rate: float
    mean_agreement: float
    min_agreement: float
    fingerprints: list[str]
    n_single_path_mismatches: int
    flaky_cases: pd.DataFrame

    def metadata(self) -> dict:
        return {
            "judged": "exact (our router)" if self.exact else "within the flakiness budget (a router not ours)",
            "repeats": self.repeats,
            "n_cases": self.n_cases,
            "n_flaky": self.n_flaky,
            "flaky_rate": self.flaky_rate,
            "mean_agreement": self.mean_agreement,
            "min_agreement": self.min_agreement,
            "n_single_path_mismatches": self.n_single_path_mismatches,
        }


def per_case_agreement(routes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``routes``: cases x runs. Per case: the share of runs equal to its most common route, and that route."""
    agreement = np.empty(routes.shape[0])
    modal = []
    for i, row in enumerate(routes):
        route, count = Counter(row.tolist()).most_common(1)[0]
        agreement[i] = count / len(row)
        modal.append(route)
    return agreement, modal


def judge(
    model,
    items: pd.DataFrame,
    fingerprint: str,
    *,
    repeats: int,
    flakiness_budget: float,
    confidence_tolerance: float = 1e-5,
    single_path_sample: int = 300,
    max_cases: int = 30,
) -> StabilityJudgement:
    """Route ``items`` (an evaluation's item frame) ``repeats`` more times and judge the spread."""
    from agent_pipeline.lib.evaluation import metrics
    from agent_pipeline.lib.evaluation.runs import route_items

    repeats = max(1, int(repeats))
    ours = getattr(model, "router", None) is not None
    cases = {name: g for name, g in items.groupby("dataset", sort=False)}
    runs = [items]
    fps = []
    for _ in range(repeats):
        again = route_items(model, cases)
        fps.append(metrics.decisions_fingerprint(again))
        runs.append(again)
    routes = np.stack([r["route"].astype(str).to_numpy() for r in runs], axis=1)
    agreement, modal = per_case_agreement(routes)
    flaky = agreement < 1.0
    n_mismatch = 0
    if ours:
        sample = items.iloc[:: max(1, len(items) // single_path_sample)]
        singles = pd.DataFrame([model.route_one(t) for t in sample["text"]], index=sample.index)
        cols = ["route", "decided_label", "rule"]
        mismatch = (singles[cols].astype(str) != sample[cols].astype(str)).any(axis=1) | (
            (singles["confidence"].astype(float) - sample["confidence"].astype(float)).abs() > confidence_tolerance
        )
        n_mismatch = int(mismatch.sum())
    flaky_cases = (
        pd.DataFrame(
            {
                "id": items["id"].astype(str),
                "text": items["text"].astype(str),
                "expected_route": items["expected_route"].astype(str),
                "agreement": agreement.round(3),
                "modal_route": modal,
                "routes": ["|".join(r) for r in routes],
            }
        )[flaky]
        .sort_values(["agreement", "id"])
        .head(max_cases)
    )
    n, n_flaky = len(items), int(flaky.sum())
    rate = n_flaky / n if n else float("nan")  # undefined without cases, not 0
    if not n:
        passed, description = False, "no evaluation cases to route: stability cannot be judged (fail closed)"
    elif ours:
        passed = all(fp == fingerprint for fp in fps) and n_flaky == 0 and n_mismatch == 0
        description = (
            f"exact: {repeats} repeat(s) of {n} cases give the evaluation's decisions; the single-request path "
            f"agrees on {len(sample)} sampled cases"
            if passed
            else f"our router must be deterministic: fingerprint {fingerprint} vs repeats {fps}; {n_flaky} flaky "
            f"cases; {n_mismatch} of {len(sample)} single-request decisions differ from the batch path"
        )
    else:
        passed = rate <= flakiness_budget + 1e-12
        description = (
            f"a router not ours: {n_flaky} of {n} cases ({rate:.1%}) changed route across {repeats + 1} runs, "
            f"{'within' if passed else 'over'} the flakiness budget {flakiness_budget:.1%}; mean agreement "
            f"{float(agreement.mean()):.3f}"
        )
    return StabilityJudgement(
        passed, ours, description, repeats, n, n_flaky, rate, float(agreement.mean()) if n else float("nan"),
        float(agreement.min()) if n else float("nan"), fps, n_mismatch, flaky_cases,
    )  # fmt: skip
