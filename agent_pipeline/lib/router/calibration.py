"""Thresholds that generalize: the fallback (and cascade hand-off) threshold chosen on out-of-fold
probabilities over all labelled tuning data, by an objective declared in ``config/router.yaml``.

Why: the validation split has 100 (now 50) out-of-scope texts, so a threshold tuned on it, and
the fallback recall reported at it, are a judgement on a handful of examples. Here every
labelled row available for tuning (training + validation, ``oos`` included; reviewed feedback
too) gets a probability from a model that did not see it: k-fold cross-validation, stratified by
label and seeded. The threshold is the one that best meets the objective on those out-of-fold
probabilities, and the whole curve is reported. The final router is still fitted on the training
data only (so validation numbers stay comparable with earlier runs); the out-of-fold models have
(k-1)/k of the tuning data, about as much as the final one, so their confidences are on its scale.

Objectives (``threshold.objective``):

* ``in_scope_at_fallback_recall`` (default): the highest in-scope accuracy among thresholds whose
  fallback recall reaches ``min_fallback_recall``; when none does, the threshold with the highest
  recall (reported as ``constraint_met: false``).
* ``expected_cost``: minimise the expected cost per request, for a declared production
  share of out-of-scope requests (``oos_share``; out-of-scope rows are re-weighted to it, since
  CLINC150's tuning data is less than 1 % out of scope): a misroute (an in-scope request sent to
  the wrong agent, or an out-of-scope one sent to any agent) costs ``cost_misroute``, an
  unnecessary fallback (an in-scope request sent to the general agent) costs
  ``cost_unnecessary_fallback``.
* ``in_scope_at_fallback_recall``: the highest in-scope accuracy among thresholds whose fallback
  recall reaches ``min_fallback_recall``; when none does, the threshold with the highest recall
  (reported as ``constraint_met: false``).
* ``label_accuracy``, ``in_scope_plus_fallback``: the earlier objectives (accuracy over all rows;
  in-scope accuracy + ``fallback_weight`` x fallback recall).

Ties go to the lowest threshold. ``method: validation`` keeps the earlier behaviour (the curve of
the validation split alone), which unit tests use where the threshold is not the point.

The cascade: the hand-off threshold ``h`` (fast answers when its top probability >= h) and the
fallback threshold ``t`` are chosen together on the out-of-fold probabilities of both tiers: for
each ``h`` on ``cascade_grid`` the cascade's out-of-fold answer is simulated exactly (fast's
probabilities where fast is sure, accurate's elsewhere; no refit), and the best ``(h, t)`` whose
hand-off share (requests the accurate tier answers) stays within ``max_handoff_share`` wins; the
latency budget of the cascade is that share. When no threshold on the grid keeps the share that
low (a weak fast tier, e.g. trained on a few examples), the one with the smallest share is taken
and ``cv_handoff_budget_met`` is 0: training goes on and ``latency_within_slo`` judges the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.router.decision import OOS_LABEL

METHODS = ("cross_validation", "validation")
OBJECTIVES = ("expected_cost", "in_scope_at_fallback_recall", "label_accuracy", "in_scope_plus_fallback")


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``threshold:`` section of ``config/router.yaml``."""

    method: str = "cross_validation"
    folds: int = 5  # the fast tier
    folds_accurate: int = 3  # accurate and cascade (each fold fits both tiers)
    objective: str = "in_scope_at_fallback_recall"
    oos_share: float = 0.1
    cost_misroute: float = 1.0
    cost_unnecessary_fallback: float = 0.3
    min_fallback_recall: float = 0.7
    fallback_weight: float = 1.0
    grid: tuple[float, float, float] = (0.05, 0.95, 0.01)
    cascade_grid: tuple[float, float, float] = (0.5, 0.99, 0.01)
    max_handoff_share: float = 0.35
    jobs: int = 0  # processes for the fast tier's folds; 0 = one per CPU core (at most one per fold)

    def workers(self) -> int:
        import os

        return self.jobs if self.jobs > 0 else (os.cpu_count() or 1)

    def __post_init__(self) -> None:
        where = "router config: threshold."
        if self.method not in METHODS:
            raise ConfigError(f"{where}method '{self.method}' is not one of {', '.join(METHODS)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"{where}objective '{self.objective}' is not one of {', '.join(OBJECTIVES)}")
        for name in ("folds", "folds_accurate"):
            if int(getattr(self, name)) < 2:
                raise ConfigError(f"{where}{name} must be at least 2, got {getattr(self, name)}")
        if not 0.0 < self.oos_share < 1.0:
            raise ConfigError(f"{where}oos_share must be between 0 and 1 (exclusive), got {self.oos_share}")
        if self.cost_misroute < 0 or self.cost_unnecessary_fallback < 0:
            raise ConfigError(f"{where}costs must be >= 0, got {self.cost_misroute}, {self.cost_unnecessary_fallback}")
        if not 0.0 <= self.min_fallback_recall <= 1.0:
            raise ConfigError(f"{where}min_fallback_recall must be in [0, 1], got {self.min_fallback_recall}")
        if self.jobs < 0:
            raise ConfigError(f"{where}jobs must be >= 0 (0 = one per CPU core), got {self.jobs}")
        if not 0.0 <= self.max_handoff_share <= 1.0:
            raise ConfigError(f"{where}max_handoff_share must be in [0, 1], got {self.max_handoff_share}")
        for name in ("grid", "cascade_grid"):
            start, stop, step = getattr(self, name)
            if not (0 <= start <= stop <= 1 and step > 0):
                raise ConfigError(
                    f"{where}{name}: need 0 <= start <= stop <= 1 and step > 0, got {getattr(self, name)}"
                )

    @classmethod
    def from_config(cls, th: dict) -> CalibrationSettings:
        d = cls()
        costs = th.get("costs") or {}
        return cls(
            method=str(th.get("method", d.method)),
            folds=int(th.get("folds", d.folds)),
            folds_accurate=int(th.get("folds_accurate", d.folds_accurate)),
            objective=str(th.get("objective", d.objective)),
            oos_share=float(th.get("oos_share", d.oos_share)),
            cost_misroute=float(costs.get("misroute", d.cost_misroute)),
            cost_unnecessary_fallback=float(costs.get("unnecessary_fallback", d.cost_unnecessary_fallback)),
            min_fallback_recall=float(th.get("min_fallback_recall", d.min_fallback_recall)),
            fallback_weight=float(th.get("fallback_weight", d.fallback_weight)),
            grid=(
                float(th.get("grid_start", d.grid[0])),
                float(th.get("grid_stop", d.grid[1])),
                float(th.get("grid_step", d.grid[2])),
            ),
            cascade_grid=(
                float(th.get("cascade_grid_start", d.cascade_grid[0])),
                float(th.get("cascade_grid_stop", d.cascade_grid[1])),
                float(th.get("cascade_grid_step", d.cascade_grid[2])),
            ),
            max_handoff_share=float(th.get("max_handoff_share", d.max_handoff_share)),
            jobs=int(th.get("jobs", d.jobs)),
        )

    def describe(self) -> dict:
        """What the choice optimised (logged as MLflow params and in the training metadata)."""
        out = {"method": self.method, "objective": self.objective}
        if self.objective == "expected_cost":
            out.update(
                oos_share=self.oos_share,
                cost_misroute=self.cost_misroute,
                cost_unnecessary_fallback=self.cost_unnecessary_fallback,
            )
        elif self.objective == "in_scope_at_fallback_recall":
            out["min_fallback_recall"] = self.min_fallback_recall
        elif self.objective == "in_scope_plus_fallback":
            out["fallback_weight"] = self.fallback_weight
        return out


def grid_values(spec: tuple[float, float, float]) -> np.ndarray:
    start, stop, step = spec
    return np.round(np.arange(start, stop + step / 2, step), 6)


# -- curves and objectives ----------------------------------------------------------------------
def label_curve(gold: np.ndarray, pred: np.ndarray, conf: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """``metrics.threshold_curve`` plus the in-scope fallback rate (the unnecessary fallbacks)."""
    from agent_pipeline.lib.evaluation.metrics import threshold_curve

    curve = threshold_curve(gold, pred, conf, thresholds)
    in_scope = gold != OOS_LABEL
    n_in = int(in_scope.sum())
    if n_in:
        # an in-scope row falls back when it is predicted oos or its confidence is below t
        pred_oos = pred[in_scope] == OOS_LABEL
        c = np.sort(conf[in_scope & (pred != OOS_LABEL)])
        kept = len(c) - np.searchsorted(c, thresholds, side="left")
        curve["in_scope_fallback_rate"] = (int(pred_oos.sum()) + (len(c) - kept)) / n_in
    else:
        curve["in_scope_fallback_rate"] = np.nan
    return curve


def score(curve: pd.DataFrame, cfg: CalibrationSettings) -> np.ndarray:
    """The objective per row of ``curve`` (higher is better; expected cost is negated)."""
    if cfg.objective == "expected_cost":
        misroute_in = 1.0 - curve["in_scope_accuracy"] - curve["in_scope_fallback_rate"]
        cost = (1 - cfg.oos_share) * (
            cfg.cost_misroute * misroute_in + cfg.cost_unnecessary_fallback * curve["in_scope_fallback_rate"]
        ) + cfg.oos_share * cfg.cost_misroute * (1.0 - curve["fallback_recall"].fillna(1.0))
        return -cost.to_numpy(dtype=float)
    if cfg.objective == "label_accuracy":
        return curve["label_accuracy"].to_numpy(dtype=float)
    if cfg.objective == "in_scope_plus_fallback":
        return (curve["in_scope_accuracy"] + cfg.fallback_weight * curve["fallback_recall"].fillna(0.0)).to_numpy(
            dtype=float
        )
    recall = curve["fallback_recall"].fillna(1.0).to_numpy(dtype=float)
    ok = recall >= cfg.min_fallback_recall - 1e-12
    if not ok.any():  # unreachable recall: the most recall, then the best in-scope accuracy
        return recall * 10.0 + curve["in_scope_accuracy"].to_numpy(dtype=float)
    return np.where(ok, curve["in_scope_accuracy"].to_numpy(dtype=float), -np.inf)


def with_objective(curve: pd.DataFrame, cfg: CalibrationSettings) -> pd.DataFrame:
    out = curve.copy()
    s = score(curve, cfg)
    out["objective"] = -s if cfg.objective == "expected_cost" else s
    if cfg.objective == "expected_cost":
        out = out.rename(columns={"objective": "expected_cost"})
    return out


def choose(curve: pd.DataFrame, cfg: CalibrationSettings) -> int:
    """Row index of the best threshold (ties: the lowest threshold)."""
    s = score(curve, cfg)
    return int(np.argmax(np.where(np.isnan(s), -np.inf, s)))


def constraint_met(row: pd.Series, cfg: CalibrationSettings) -> bool:
    if cfg.objective != "in_scope_at_fallback_recall":
        return True
    r = row.get("fallback_recall")
    return bool(r != r or r >= cfg.min_fallback_recall - 1e-12)


# -- out-of-fold probabilities ------------------------------------------------------------------
@dataclass
class OutOfFold:
    """Out-of-fold probabilities of the fast tier (and the accurate tier, for accurate and cascade)."""

    labels: np.ndarray
    classes: np.ndarray
    fast: np.ndarray
    accurate: np.ndarray | None
    folds: int
    seconds: float
    fold_seconds: list[float] = field(default_factory=list)


def _align(proba: np.ndarray, fold_classes: Sequence[str], classes: np.ndarray) -> np.ndarray:
    """Columns of a fold's probabilities in the global class order (labels missing in the fold: 0)."""
    out = np.zeros((proba.shape[0], len(classes)), dtype=np.float64)
    index = {c: i for i, c in enumerate(classes)}
    out[:, [index[str(c)] for c in fold_classes]] = proba
    return out


def out_of_fold(
    texts: Sequence[str],
    labels: Sequence[str],
    settings,
    cache_dir: Path | None = None,
    folds: int | None = None,
    fit_labels: frozenset[str] | set[str] | None = None,
) -> OutOfFold:
    """Stratified k-fold (seeded) out-of-fold probabilities for ``settings.tier``.

    Every fold fits the fast tier exactly as ``fit_classifier`` does; for ``accurate`` and
    ``cascade`` it also fits the accurate tier on the fold's fast TF-IDF features, with
    embeddings through the content-addressed cache (each text is embedded once across folds).
    ``fit_labels``: only rows with these labels are fitted on (every row is still scored), so the
    folds' models know the labels the final model will know: out-of-scope texts that exist only
    for tuning (``threshold.oos_pool``) are judged, never learnt.
    """
    import warnings

    from sklearn.model_selection import StratifiedKFold

    from agent_pipeline.lib.router.fast import TextClassifier

    texts = np.asarray([str(t) for t in texts], dtype=object)
    labels = np.asarray([str(y) for y in labels], dtype=object)
    classes = np.asarray(sorted(set(labels)), dtype=object)
    deep = settings.tier != "fast"
    k = int(folds or (settings.calibration.folds_accurate if deep else settings.calibration.folds))
    fast = np.zeros((len(texts), len(classes)))
    accurate = np.zeros((len(texts), len(classes))) if deep else None
    t0 = time.perf_counter()
    per_fold = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=settings.seed).split(texts, labels))
    fit_mask = None if fit_labels is None else np.isin(labels, np.asarray(sorted(fit_labels), dtype=object))
    fitted = [train_idx if fit_mask is None else train_idx[fit_mask[train_idx]] for train_idx, _ in splits]
    jobs = min(k, settings.calibration.workers())
    if not deep:
        # The fast tier's folds are independent single-threaded fits: one process per core, the
        # same bits as one after the other in this process (tested).
        from joblib import Parallel, delayed

        args = [
            (texts[tr].tolist(), labels[tr].tolist(), texts[te].tolist(), settings)
            for tr, (_, te) in zip(fitted, splits)
        ]
        if jobs > 1:
            results = Parallel(n_jobs=jobs, backend="loky")(delayed(_fast_fold)(*a) for a in args)
        else:
            results = [_fast_fold(*a) for a in args]
        for (_, te), (fold_classes, proba, seconds) in zip(splits, results):
            fast[te] = _align(proba, fold_classes, classes)
            per_fold.append(seconds)
        return OutOfFold(labels, classes, fast, accurate, k, time.perf_counter() - t0, per_fold)
    for train_idx, (_, test_idx) in zip(fitted, splits):
        f0 = time.perf_counter()
        tr, te = texts[train_idx].tolist(), texts[test_idx].tolist()
        clf = TextClassifier.fit(tr, labels[train_idx].tolist(), settings)
        fast[test_idx] = _align(clf.predict_proba(te), clf.classes_, classes)
        if deep:
            from agent_pipeline.lib.router.tiers import AccurateClassifier

            acc = AccurateClassifier.fit_with(tr, labels[train_idx].tolist(), clf, settings, cache_dir)
            accurate[test_idx] = _align(acc.predict_proba(te), acc.classes_, classes)
        per_fold.append(time.perf_counter() - f0)
    return OutOfFold(labels, classes, fast, accurate, k, time.perf_counter() - t0, per_fold)


def _fast_fold(train_texts: list[str], train_labels: list[str], test_texts: list[str], settings):
    """One fast-tier fold (run in a worker process): its classes, out-of-fold probabilities, seconds."""
    from threadpoolctl import threadpool_limits

    from agent_pipeline.lib.router.fast import TextClassifier

    f0 = time.perf_counter()
    with threadpool_limits(limits=1):  # the same arithmetic in a worker process or in this one
        clf = TextClassifier.fit(train_texts, train_labels, settings)
        proba = clf.predict_proba(test_texts)
    return list(clf.classes_), proba, time.perf_counter() - f0


def _top(proba: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = proba.argmax(axis=1)
    return classes[k], proba[np.arange(len(k)), k]


# -- the choice ---------------------------------------------------------------------------------
@dataclass
class Calibration:
    """The chosen thresholds, the curves they were read from, and what it cost."""

    threshold: float
    cascade_threshold: float | None
    curve: pd.DataFrame  # per fallback threshold, at the chosen hand-off for the cascade
    cascade_curve: pd.DataFrame | None  # per hand-off threshold: the best fallback threshold there
    at: dict[str, float]  # cross-validated metrics at the choice
    settings: CalibrationSettings
    n_rows: int
    n_oos: int
    folds: int
    seconds: float

    def report(self) -> dict:
        out = {
            "cv_folds": self.folds,
            "cv_rows": self.n_rows,
            "cv_oos_rows": self.n_oos,
            "cv_seconds": self.seconds,
            **{f"cv_{k}": v for k, v in self.at.items()},
        }
        if self.cascade_threshold is not None:
            out["cascade_threshold"] = self.cascade_threshold
        return out


def choose_thresholds(oof: OutOfFold, tier: str, cfg: CalibrationSettings) -> Calibration:
    """The fallback threshold (and, for ``cascade``, the hand-off threshold) on out-of-fold probabilities."""
    grid = grid_values(cfg.grid)
    gold = oof.labels
    n_oos = int((gold == OOS_LABEL).sum())
    if tier == "cascade":
        fast_pred, fast_conf = _top(oof.fast, oof.classes)
        acc_pred, acc_conf = _top(oof.accurate, oof.classes)
        rows, best = [], None
        for h in grid_values(cfg.cascade_grid):
            sure = fast_conf >= h
            pred = np.where(sure, fast_pred, acc_pred)
            conf = np.where(sure, fast_conf, acc_conf)
            curve = label_curve(gold, pred, conf, grid)
            i = choose(curve, cfg)
            s = score(curve, cfg)[i]
            handoff = float(1.0 - sure.mean())
            row = {"cascade_threshold": float(h), "handoff_share": handoff, **curve.iloc[i].to_dict()}
            row["objective"] = float(-s if cfg.objective == "expected_cost" else s)
            rows.append(row)
            if handoff <= cfg.max_handoff_share + 1e-12 and (best is None or s > best[0] + 1e-12):
                best = (s, float(h), curve)
        cascade_curve = pd.DataFrame(rows)
        if cfg.objective == "expected_cost":
            cascade_curve = cascade_curve.rename(columns={"objective": "expected_cost"})
        budget_met = best is not None
        if best is None:  # a weak fast tier: the smallest hand-off share on the grid (the latency gate judges it)
            i_min = int(np.argmin(cascade_curve["handoff_share"].to_numpy()))
            h_min = float(cascade_curve["cascade_threshold"].iloc[i_min])
            sure = fast_conf >= h_min
            best = (
                None,
                h_min,
                label_curve(gold, np.where(sure, fast_pred, acc_pred), np.where(sure, fast_conf, acc_conf), grid),
            )
        _, h, curve = best
        curve = with_objective(curve, cfg)
        i = choose(curve, cfg)
        at = {**curve.iloc[i].to_dict()}
        at["handoff_share"] = float(cascade_curve.loc[cascade_curve["cascade_threshold"] == h, "handoff_share"].iloc[0])
        at["handoff_budget_met"] = float(budget_met)
        return Calibration(
            float(curve["threshold"].iloc[i]),
            h,
            curve,
            cascade_curve,
            _at(at, cfg),
            cfg,
            len(gold),
            n_oos,
            oof.folds,
            oof.seconds,
        )
    proba = oof.accurate if tier == "accurate" else oof.fast
    pred, conf = _top(proba, oof.classes)
    curve = with_objective(label_curve(gold, pred, conf, grid), cfg)
    i = choose(curve, cfg)
    return Calibration(
        float(curve["threshold"].iloc[i]),
        None,
        curve,
        None,
        _at(curve.iloc[i].to_dict(), cfg),
        cfg,
        len(gold),
        n_oos,
        oof.folds,
        oof.seconds,
    )


def _at(row: dict, cfg: CalibrationSettings) -> dict[str, float]:
    out = {k: float(v) for k, v in row.items() if k != "threshold" and isinstance(v, (int, float, np.floating))}
    out["constraint_met"] = float(constraint_met(pd.Series(row), cfg))
    return out


def calibrate(train: pd.DataFrame, validation: pd.DataFrame, settings, cache_dir: Path | None = None) -> Calibration:
    """Cross-validate over ``train`` + ``validation`` and choose the thresholds for ``settings.tier``."""
    frames = [df[["text", "label"]] for df in (train, validation) if df is not None and len(df)]
    data = pd.concat(frames, ignore_index=True)
    # The final model is fitted on ``train``: labels only validation has (e.g. a tuning pool of
    # out-of-scope texts) are scored out of fold but never fitted on, like in the final model.
    fit_labels = frozenset(train["label"].astype(str))
    oof = out_of_fold(data["text"].astype(str), data["label"].astype(str), settings, cache_dir, fit_labels=fit_labels)
    return choose_thresholds(oof, settings.tier, settings.calibration)


def curve_markdown(curve: pd.DataFrame, rows: int = 15) -> str:
    """Every n-th row of a curve as a markdown table (Dagster metadata)."""
    from agent_pipeline.lib.core import markdown

    return markdown.frame_table(curve.iloc[:: max(1, len(curve) // rows)], floatfmt=".3f")
