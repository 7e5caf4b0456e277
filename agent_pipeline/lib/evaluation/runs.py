"""Evaluation runs: route every case of some datasets, keep item-level results, compute metrics.

An evaluation is stored as a folder (``$AGENT_PIPELINE_HOME/evaluations/v<version>/<id>/``):

* ``items.csv``   - one row per case: the case, the decision, ``passed`` (route correct);
* ``metrics.json`` - overall metrics, per-dataset metrics, per-route metrics, the decision
  fingerprint; deterministic for the same model and data;
* ``latency.json`` - single-request latency and batch throughput (machine-dependent, kept apart
  so the other files stay byte-identical across repeats);
* ``confusion.md`` - the route confusion matrix;
* ``safety_items.csv`` - the safety probes routed (same columns as ``items.csv``; kept apart so
  the headline metrics, the critical cases and the regression comparison stay about the eval
  sets; the ``safety_probes_pass`` gate reads it, ``lib/evaluation/safety.py``).

The benchmark baseline is an evaluation folder copied to ``$AGENT_PIPELINE_HOME/baseline/``
with who blessed it and when; every blessing is kept under ``baseline/history/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.csvfiles import read_csv, write_csv
from agent_pipeline.lib.core.errors import StateError
from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.evaluation import metrics as m

ITEM_COLUMNS = (
    "dataset",
    "id",
    "text",
    "label",
    "expected_route",
    "tags",
    "pred_label",
    "decided_label",
    "route",
    "agent",
    "confidence",
    "fallback",
    "fallback_reason",
    "rule",
)


@dataclass
class Evaluation:
    """The result of evaluating one model version on one or more datasets."""

    version: str
    items: pd.DataFrame
    metrics: dict[str, float]
    by_dataset: dict[str, dict[str, float]]
    per_route: pd.DataFrame
    fingerprint: str
    latency: dict[str, float] = field(default_factory=dict)
    dataset_versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    safety_items: pd.DataFrame | None = None  # the safety probes routed, when the evaluation had them

    @property
    def evaluation_id(self) -> str:
        return self.path.name if self.path else ""

    def confusion_markdown(self) -> str:
        return m.confusion_markdown(self.items, by="route")

    def metrics_document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "metrics": self.metrics,
            "by_dataset": self.by_dataset,
            "per_route": self.per_route.to_dict(orient="records"),
            "fingerprint": self.fingerprint,
            "dataset_versions": self.dataset_versions,
        }


def route_items(model, datasets: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Route every case of ``datasets`` (name -> normalized frame) in one batch; item-level frame."""
    frames = []
    for name, df in datasets.items():
        part = df[["id", "text", "label", "expected_route", "tags"]].astype(str).copy()
        part.insert(0, "dataset", name)
        frames.append(part)
    cases = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ITEM_COLUMNS[:6])
    decisions = model.route_batch(cases["text"].tolist()).reset_index(drop=True)
    items = pd.concat([cases, decisions], axis=1)
    items["confidence"] = items["confidence"].astype(float)
    items["fallback"] = items["fallback"].astype(bool)
    for col in ("rule", "fallback_reason"):
        items[col] = items[col].fillna("").astype(str)
    return m.with_outcomes(items[list(ITEM_COLUMNS)])


def evaluate(
    model,
    datasets: Mapping[str, pd.DataFrame],
    *,
    version: str,
    dataset_versions: Mapping[str, str] | None = None,
    measure_latency: bool = True,
    latency_sample: int = 500,
    probes: pd.DataFrame | None = None,
) -> Evaluation:
    """Evaluate ``model`` (anything with ``route_batch``; ``route_one`` for latency) on ``datasets``.

    ``probes`` (the safety probe set) are routed too and kept as ``safety_items``, outside the
    headline metrics.
    """
    items = route_items(model, datasets)
    safety_items = route_items(model, {"safety_probes": probes}) if probes is not None else None
    by_dataset = {name: m.compute_metrics(g) for name, g in items.groupby("dataset", sort=True)}
    latency: dict[str, float] = {}
    if measure_latency and len(items):
        texts = items["text"].tolist()
        sample = texts[:: max(1, len(texts) // latency_sample)][:latency_sample]
        latency.update({f"latency_{k}": v for k, v in m.latency_profile(model.route_one, sample).items()})
        latency.update({f"batch_{k}": v for k, v in m.batch_throughput(model.route_batch, texts).items()})
    return Evaluation(
        version=str(version),
        items=items,
        metrics=m.compute_metrics(items),
        by_dataset=by_dataset,
        per_route=m.per_route_metrics(items),
        fingerprint=m.decisions_fingerprint(items),
        latency=latency,
        dataset_versions=dict(dataset_versions or {}),
        safety_items=safety_items,
    )


def _write_json(path: Path, doc: Any) -> None:
    atomic_write(path, json.dumps(doc, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    try:
        return obj.item()  # numpy scalars
    except AttributeError:
        return str(obj)


def save(evaluation: Evaluation, directory: Path) -> Path:
    """Write the evaluation folder; returns it. Files are written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(evaluation.items, directory / "items.csv")  # formula-looking texts neutralised
    _write_json(directory / "metrics.json", evaluation.metrics_document())
    _write_json(directory / "latency.json", evaluation.latency)
    if evaluation.safety_items is not None:
        write_csv(evaluation.safety_items, directory / "safety_items.csv")
    atomic_write(directory / "confusion.md", evaluation.confusion_markdown() + "\n")
    evaluation.path = directory
    return directory


def _read_items(path: Path) -> pd.DataFrame:
    items = read_csv(path)  # the project's CSV reader: undoes write_csv's formula neutralising
    items["confidence"] = items["confidence"].astype(float)
    for col in ("fallback", "passed", "label_correct"):
        if col in items.columns:
            items[col] = items[col].map({"True": True, "False": False}).astype(bool)
    return items


def load(directory: Path) -> Evaluation:
    """Read an evaluation folder back (what the gates and the baseline compare)."""
    directory = Path(directory)
    if not (directory / "metrics.json").is_file() or not (directory / "items.csv").is_file():
        raise FileNotFoundError(f"{directory}: not an evaluation folder (metrics.json and items.csv expected)")
    doc = json.loads((directory / "metrics.json").read_text())
    items = _read_items(directory / "items.csv")
    latency = json.loads((directory / "latency.json").read_text()) if (directory / "latency.json").is_file() else {}
    safety = directory / "safety_items.csv"
    safety_items = _read_items(safety) if safety.is_file() else None
    return Evaluation(
        version=str(doc["version"]),
        items=items,
        metrics=doc["metrics"],
        by_dataset=doc.get("by_dataset", {}),
        per_route=pd.DataFrame(doc.get("per_route", [])),
        fingerprint=doc["fingerprint"],
        latency=latency,
        dataset_versions=doc.get("dataset_versions", {}),
        path=directory,
        safety_items=safety_items,
    )


def evaluation_dir(home: Path, version: str, evaluation_id: str) -> Path:
    return settings.evaluations_dir(home) / f"v{version}" / evaluation_id


def latest_evaluation(home: Path, version: str, kind: str | None = None) -> Evaluation | None:
    """The newest saved evaluation of ``version``, optionally of one kind (``candidate``, ``champion``).

    Folder names are ``<UTC timestamp>-<kind>-<run id>``, so name order is time order.
    """
    root = settings.evaluations_dir(home) / f"v{version}"
    pattern = f"*-{kind}-*" if kind else "*"
    folders = sorted(p for p in root.glob(pattern) if (p / "metrics.json").is_file()) if root.is_dir() else []
    return load(folders[-1]) if folders else None


def compare_with_baseline(
    evaluation: Evaluation, home: Path, tolerances: Mapping[str, float], max_new_failures: int
) -> tuple[m.RegressionReport, dict[str, Any]] | None:
    """Compare an evaluation with the blessed baseline; None before the first blessing."""
    found = load_baseline(home)
    if found is None:
        return None
    baseline, info = found
    report = m.compare_to_baseline(
        evaluation.metrics, baseline.metrics, evaluation.items, baseline.items, tolerances, max_new_failures
    )
    return report, info


# -- benchmark baseline ------------------------------------------------------------------------
def bless(home: Path, evaluation: Evaluation, *, blessed_by: str, blessed_at: str, reason: str = "") -> dict[str, Any]:
    """Make ``evaluation`` the benchmark baseline; the previous one stays in ``history/``."""
    if evaluation.path is None:
        raise ValueError("only a saved evaluation can be blessed")
    root = settings.baseline_dir(home)
    info = {
        "version": evaluation.version,
        "evaluation_id": evaluation.evaluation_id,
        "evaluation_path": str(evaluation.path),
        "blessed_by": blessed_by,
        "blessed_at": blessed_at,
        "reason": reason,
        "fingerprint": evaluation.fingerprint,
        "dataset_versions": evaluation.dataset_versions,
        "metrics": evaluation.metrics,
    }
    stamp = blessed_at.replace(":", "").replace("-", "")
    target = root / "history" / f"{stamp}-v{evaluation.version}-{evaluation.evaluation_id}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(evaluation.path, target)
    _write_json(target / "blessing.json", info)
    atomic_write(
        root / "current.json", json.dumps({"path": str(target), **info}, indent=2, sort_keys=True, default=str)
    )
    return info


def bless_latest(home: Path, version: str, blessed_by: str, reason: str = "") -> dict[str, Any]:
    """Bless the newest saved evaluation of ``version`` (the bless job, the CLI and the bootstrap)."""
    from agent_pipeline.lib.core.errors import RegistryError
    from agent_pipeline.lib.registry.models import current_user, utc_now

    ev = latest_evaluation(home, version)
    if ev is None:
        raise RegistryError(
            f"version {version} has no saved evaluation under {settings.evaluations_dir(home)}; evaluate it first"
        )
    return bless(home, ev, blessed_by=blessed_by or current_user(), blessed_at=utc_now(), reason=reason)


def load_baseline(home: Path) -> tuple[Evaluation, dict[str, Any]] | None:
    """The blessed baseline evaluation and its blessing record, or None before the first one."""
    pointer = settings.baseline_dir(home) / "current.json"
    if not pointer.is_file():
        return None
    fix = "bless a baseline again (agent-pipeline bless)"
    try:
        info = json.loads(pointer.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{pointer}: baseline pointer is not JSON ({exc}); {fix}") from None
    if not isinstance(info, dict) or not isinstance(info.get("path"), str):
        raise StateError(f"{pointer}: baseline pointer has no 'path'; {fix}")
    try:
        return load(Path(info["path"])), info
    except FileNotFoundError as exc:
        raise StateError(f"{pointer}: the baseline evaluation is missing ({exc}); {fix}") from None
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"{pointer}: the baseline evaluation {info['path']} is damaged ({exc!r}); {fix}") from None
