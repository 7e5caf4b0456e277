"""The sealed holdout: scored only inside the promotion gate ``generalizes_to_holdout``.

``data/clinc150/holdout.csv`` (775 rows: 5 texts of each trained intent and 50 out-of-scope
texts) was carved once, seeded, from CLINC150's validation split by ``scripts/prepare_data.py``
(provenance in ``data/README.md``). Nothing else reads it: not training, threshold tuning,
synthetic generation nor any guard rule. Its path comes from ``RouterFiles.holdout_path``
(``AGENT_PIPELINE_HOLDOUT_DATA`` overrides it); this module is the one place that reads it, and a
test greps the code base for other readers. Every read is appended to ``$AGENT_PIPELINE_HOME/holdout/access.jsonl``: who, when,
for what (purpose, model version, evaluation, Dagster run), and the file's sha256.

The gate (``judge``): the candidate routes the holdout; its metrics must hold the policy's floors,
and the gap between the evaluation sets (golden + synthetic) and the holdout must stay within the
policy's tolerance per metric: a candidate that learned its evaluation sets scores them far
better than text it never saw, and fails. Holdout rows whose text the candidate was trained on
(reviewed feedback can repeat a holdout text) are left out of the score and counted; if more
than ``max_leaked_share`` of the holdout is in training, the holdout no longer judges the
candidate and the gate fails.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

GAP_METRICS = ("in_scope_accuracy", "route_accuracy", "label_accuracy", "fallback_recall")


def access_log_path(home: Path) -> Path:
    return Path(home) / "holdout" / "access.jsonl"


def normalized(texts: Iterable[str]) -> set[str]:
    """Texts as the no-leakage checks compare them: lowercased, trimmed, whitespace collapsed."""
    return {" ".join(str(t).lower().split()) for t in texts}


def read_sealed(path: Path, home: Path, registry, *, purpose: str, reader: Mapping[str, Any]) -> pd.DataFrame:
    """Load the holdout at ``path`` (dataset schema) and append who read it, when and why to the access log."""
    from agent_pipeline.lib.data.datasets import load_dataset
    from agent_pipeline.lib.registry.models import current_user, utc_now
    from agent_pipeline.lib.router.decision import OOS_LABEL

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the sealed holdout is missing; restore data/clinc150/holdout.csv from git "
            "(or set AGENT_PIPELINE_HOLDOUT_DATA to a holdout in the dataset schema)"
        )
    raw = path.read_bytes()
    df = load_dataset(path, registry, id_prefix="holdout")
    known = set(registry.known_labels) | {OOS_LABEL}
    unknown = sorted(set(df["label"].astype(str)) - known)
    if unknown:
        raise ValueError(
            f"{path}: {int((~df['label'].astype(str).isin(known)).sum())} of {len(df)} holdout rows have labels the "
            f"agent map does not know ({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}): this holdout "
            "belongs to another dataset; carve one from your own data and set AGENT_PIPELINE_HOLDOUT_DATA "
            "(docs/onboarding.md, 'Bring your own dataset')"
        )
    entry = {
        "time": utc_now(),
        "user": current_user(),
        "purpose": purpose,
        "path": str(path),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "rows": len(df),
        **{k: str(v) for k, v in reader.items()},
    }
    log = access_log_path(home)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:  # one line per read, appended (O_APPEND)
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return df


def read_access_log(home: Path) -> list[dict]:
    path = access_log_path(home)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class HoldoutJudgement:
    passed: bool
    description: str
    metrics: dict[str, float]
    eval_metrics: dict[str, float]
    gaps: dict[str, float]
    n_rows: int
    n_scored: int
    n_in_training: int
    n_in_eval_sets: int
    failures: list[str] = field(default_factory=list)
    items: pd.DataFrame | None = None

    def table(self) -> str:
        from agent_pipeline.lib.core import markdown

        nan = float("nan")
        gap = {m: format(v, "+.3f") for m, v in self.gaps.items() if v == v}  # signed: + = eval sets better
        rows = [(m, self.eval_metrics.get(m, nan), self.metrics.get(m, nan), gap.get(m, "")) for m in GAP_METRICS]
        return markdown.table(("metric", "eval sets", "holdout", "gap (eval - holdout)"), rows, floatfmt=".3f")


def judge(
    model,
    holdout: pd.DataFrame,
    *,
    eval_metrics: Mapping[str, float],
    training_texts: Iterable[str],
    eval_texts: Iterable[str] = (),
    floors: Mapping[str, float],
    max_gap: Mapping[str, float],
    max_leaked_share: float,
) -> HoldoutJudgement:
    """Route the holdout with ``model``; compare with the floors and with the evaluation sets."""
    from agent_pipeline.lib.evaluation import metrics as m
    from agent_pipeline.lib.evaluation.runs import route_items

    trained = normalized(training_texts)
    in_eval = normalized(eval_texts)
    keys = holdout["text"].astype(str).map(lambda t: " ".join(t.lower().split()))
    leaked = keys.isin(trained).to_numpy()
    n_eval = int(keys.isin(in_eval).sum())
    scored = holdout[~leaked]
    items = route_items(model, {"holdout": scored}) if len(scored) else None
    metrics = m.finite_metrics(m.compute_metrics(items)) if items is not None else {}
    failures: list[str] = []
    share = float(leaked.mean()) if len(holdout) else float("nan")
    if not len(holdout):
        failures.append("the holdout has no rows: nothing to judge the candidate on")
    elif share > max_leaked_share:
        failures.append(
            f"{int(leaked.sum())} of {len(holdout)} holdout texts ({share:.1%}) are in the training data "
            f"(> {max_leaked_share:.1%}): the holdout cannot judge this candidate"
        )
    for name, floor in sorted(floors.items()):
        value = metrics.get(name)
        if value is None or not value >= float(floor):
            failures.append(f"holdout {name} {value if value is None else round(value, 4)} < floor {float(floor)}")
    gaps = {}
    for name in GAP_METRICS:
        ev, ho = eval_metrics.get(name), metrics.get(name)
        if ev is None or ho is None or ev != ev or ho != ho:
            continue
        gaps[name] = float(ev) - float(ho)
    for name, tol in sorted(max_gap.items()):
        if name in gaps and gaps[name] > float(tol) + 1e-9:
            failures.append(
                f"{name} on the eval sets {eval_metrics[name]:.3f} vs holdout {metrics[name]:.3f}: "
                f"gap {gaps[name]:+.3f} > {float(tol)} (learned its evaluation sets?)"
            )
    passed = not failures
    if passed:
        description = (
            f"holdout ({len(scored)} of {len(holdout)} texts never trained on): "
            + ", ".join(f"{k} {metrics[k]:.3f}" for k in ("in_scope_accuracy", "fallback_recall", "route_accuracy"))
            + "; gaps to the eval sets within tolerance ("
            + ", ".join(f"{k} {v:+.3f}" for k, v in gaps.items() if k in max_gap)
            + ")"
        )
    else:
        description = "; ".join(failures)
    return HoldoutJudgement(
        passed,
        description,
        {k: float(v) for k, v in metrics.items()},
        {k: float(v) for k, v in eval_metrics.items() if isinstance(v, (int, float))},
        gaps,
        len(holdout),
        len(scored),
        int(leaked.sum()),
        n_eval,
        failures,
        items,
    )
