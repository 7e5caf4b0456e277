"""The evidence bundle of a candidate: a model card (markdown) a risk officer can sign off.

Written to ``$AGENT_PIPELINE_HOME/evidence/v<N>/<evaluation id>/model_card.md``, logged to the
version's MLflow run (``evidence/model_card.md``), linked from ``champion_model``'s metadata and
printed by ``agent-pipeline evidence VERSION``. It holds the intended use, the training and
evaluation data versions, metrics per dataset and per route, every gate with the numbers its
check recorded (``gates/<name>.json``: a new gate appears here without changes to this file),
the approvals and revocations, the baseline compared against and the known limitations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_pipeline.lib.core import markdown
from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.evaluation import gates as gate_records
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry import audit
from agent_pipeline.lib.registry.policy import Policy

HEADLINE = (
    "n",
    "route_accuracy",
    "in_scope_accuracy",
    "label_accuracy",
    "macro_f1",
    "fallback_recall",
    "fallback_precision",
)

KNOWN_LIMITATIONS = [
    "Trained on CLINC150 intents mapped to a handful of agents: requests outside these domains go to the "
    "general agent (fallback); a new domain needs new labels, not a threshold change.",
    "English only; the synthetic evaluation set is generated from the golden set and shares its blind spots.",
    "The fallback threshold is chosen on data the model was fitted without (cross-validation folds, or the "
    "validation split when the router config says so) and judged on a sealed holdout; production drift is "
    "watched (drift_report), not prevented.",
    "Latency numbers come from the evaluation machine; a loaded machine measures slower.",
    "The router decides where a request goes; it does not check what the agent then does.",
]


def card_dir(home: Path, version: str, evaluation_id: str) -> Path:
    return Path(home) / "evidence" / f"v{version}" / evaluation_id


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if v == v else "n/a"
    return str(v)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "none"
    return markdown.table(cols, ([r.get(c, "") for c in cols] for r in rows), floatfmt=".4f", undefined="n/a")


def build_card(
    home: Path, store, policy: Policy, version: str, evaluation_id: str, promotion: dict[str, Any] | None = None
) -> str:
    ev = evaluation.load(evaluation.evaluation_dir(home, version, evaluation_id))
    info = store.version_info(version)
    tags = info["tags"]
    records = audit.read(home)
    sign_offs = [
        r for r in records if r.get("action") in ("approve", "revoke") and str(r.get("version")) == str(version)
    ]
    gate_docs = gate_records.read_gate_records(ev.path)
    verdicts, _ = gate_records.gate_standing(store, home, version, evaluation_id)  # what the promotion counts
    found = evaluation.load_baseline(home)
    baseline = (promotion or {}).get("baseline") or (
        {"version": found[1]["version"], "evaluation_id": found[1]["evaluation_id"]} if found else None
    )
    out = [f"# Model card: {store.model_name} v{version}", ""]
    if promotion:
        out.append(
            f"Promoted to champion at {promotion['time']} by {promotion['user']} (previous champion: "
            f"v{promotion['previous_champion']}); audit record #{promotion['seq']} `{promotion['hash'][:16]}`."
        )
    else:
        out.append("Not promoted (candidate evidence).")
    out += [
        f"Evaluation `{evaluation_id}`; model registered {info['created']}, MLflow run `{info['run_id']}`, "
        f"git commit `{tags.get('git_commit', 'unknown')}`.",
        "",
        "## Intended use",
        "",
        "Routes one customer request to the domain agent that serves its intent, or to the general agent "
        "(fallback) when the request is out of scope or the classifier is not confident. Privileged agents "
        f"(never to be reached by an out-of-domain or attack request): {', '.join(policy.privileged_agents) or 'none'}.",
        "Not intended for: deciding what an agent does, moderating content, or any language but English.",
        "",
        "## Data",
        "",
        f"- training examples: `{tags.get('training_examples_version', 'unknown')}`",
        f"- validation examples: `{tags.get('validation_examples_version', 'unknown')}`",
    ]
    out += [f"- evaluation set {k}: `{v}`" for k, v in sorted(ev.dataset_versions.items())]
    out += ["", "## Metrics", "", "Overall and per dataset:", ""]
    rows = [{"dataset": "all", **ev.metrics}] + [{"dataset": d, **m} for d, m in sorted(ev.by_dataset.items())]
    out.append(_table(rows, ["dataset", *HEADLINE]))
    out += ["", "Per route:", ""]
    per_route = ev.per_route.to_dict(orient="records") if len(ev.per_route) else []
    out.append(_table(per_route, list(ev.per_route.columns)) if per_route else "none")
    out += ["", "## Gates", "", f"Required by the policy: {', '.join(policy.required_gates)}.", ""]
    names = list(dict.fromkeys([*policy.required_gates, *gate_docs]))
    out.append(
        _table(
            [
                {
                    "gate": g,
                    "required": "yes" if g in policy.required_gates else "no",
                    "verdict": verdicts.get(g, "not run"),
                    "description": str(gate_docs.get(g, {}).get("description", ""))[:300],
                }
                for g in names
            ],
            ["gate", "required", "verdict", "description"],
        )
    )
    for g in names:
        doc = gate_docs.get(g)
        if not doc:
            continue
        out += ["", f"### {g}: {'passed' if doc['passed'] else 'FAILED'}", ""]
        scalars = {k: v for k, v in doc["numbers"].items() if not (isinstance(v, str) and "\n" in v)}
        tables = {k: v for k, v in doc["numbers"].items() if isinstance(v, str) and "\n" in v}
        out += [f"- {k}: {_fmt(v)}" for k, v in sorted(scalars.items())]
        for k, v in tables.items():
            out += ["", f"{k}:", "", v]
    out += ["", "## Approvals", ""]
    out += [
        f"- {r['time']} {r['action']} by {r['user']}: "
        + (
            f"content `{r['content_sha256'][:16]}`, evaluation `{r['evaluation_id']}`; {r.get('note', '')}"
            if r["action"] == "approve"
            else r.get("reason", "")
        )
        for r in sign_offs
    ] or [f"- none ({'required' if policy.approval.required else 'not required'} by the policy)"]
    out += ["", "## Baseline compared against", ""]
    out.append(
        f"v{baseline['version']}, evaluation `{baseline['evaluation_id']}`"
        if baseline
        else "none (the first promotion bootstraps the baseline)"
    )
    out += ["", "## Known limitations", ""] + [f"- {x}" for x in KNOWN_LIMITATIONS]
    return "\n".join(out) + "\n"


def write_and_log(
    store, home: Path, policy: Policy, version: str, evaluation_id: str, promotion: dict[str, Any] | None = None
) -> Path:
    """Write the card under the state folder and log it to the version's MLflow run; returns its path."""
    path = card_dir(home, version, evaluation_id) / "model_card.md"
    atomic_write(path, build_card(home, store, policy, version, evaluation_id, promotion))
    run_id = store.version_info(version)["run_id"]
    store.client.log_artifact(run_id, str(path), artifact_path=f"evidence/{evaluation_id}")
    store.set_version_tags(version, {"model_card": str(path)})
    return path


def latest_card(home: Path, version: str) -> Path | None:
    root = Path(home) / "evidence" / f"v{version}"
    cards = sorted(root.glob("*/model_card.md")) if root.is_dir() else []
    return cards[-1] if cards else None
