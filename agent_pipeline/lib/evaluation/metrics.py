"""Router evaluation metrics over item-level result frames: pure pandas and numpy, no model code.

An *items* frame has one row per evaluated case, as the evaluation runner writes it:
``id, text, label, expected_route, tags`` (gold, from the dataset) and ``pred_label,
decided_label, route, agent, confidence, fallback, fallback_reason, rule`` (the decision).
``decided_label`` is ``oos`` when the router fell back for low confidence or predicted ``oos``,
else the predicted label.

Label-level metrics follow Larson et al. (2019, CLINC150): ``in_scope_accuracy`` counts a
fallback on an in-scope request as wrong; ``fallback_recall``/``fallback_precision`` measure how
well out-of-scope requests are caught. Route-level metrics apply the same idea to routes, with
``fallback`` as the out-of-scope route. A *case passes* when its route equals its expected route.

Undefined values are ``NaN``, never a made-up 0 or 1: a metric whose denominator is empty
(``fallback_recall`` on a set without ``oos`` cases), the fallback precisions on a set with
nothing out of scope to catch (every fallback there is a miss, but "how precisely are
out-of-scope requests caught" has no answer), and ``critical_pass_rate`` when no case is tagged
``critical`` (``n_critical`` = 0 says so). ``finite_metrics`` drops them before they become
Dagster metadata or MLflow metrics, and ``compare_to_baseline`` skips them (and lists them as
not compared).

Counts are vectorised numpy; per-class precision, recall, F1 and the confusion matrix are
scikit-learn's (``precision_recall_fscore_support``, ``f1_score``, ``confusion_matrix``), so
``macro_f1`` is ``f1_score(average="macro")`` over the labels present in gold.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from agent_pipeline.lib.core.markdown import table as md_table
from agent_pipeline.lib.data.datasets import has_tag
from agent_pipeline.lib.router.agents import FALLBACK_ROUTE, OOS_LABEL

HEADLINE = (
    "label_accuracy", "in_scope_accuracy", "fallback_recall", "fallback_precision", "route_accuracy", "macro_f1",
)  # fmt: skip
CRITICAL_TAG = "critical"
FAILING_COLUMNS = ("id", "text", "expected_route", "route", "label", "decided_label", "confidence")
FINGERPRINT_COLUMNS = ("id", "route", "agent", "decided_label", "rule", "confidence")
# Slack for float noise when testing ``candidate < baseline - tolerance`` (0.8 - 0.1 != 0.7).
_EPS = 1e-9
_MARKDOWN_CASE_LIMIT = 20
_SUMMARY_ID_LIMIT = 5


def _require(items: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in items.columns]
    if missing:
        have = ", ".join(map(str, items.columns))
        raise ValueError(f"{where}: items frame lacks column(s) {', '.join(missing)} (has: {have})")


def _values(items: pd.DataFrame, column: str) -> np.ndarray:
    return items[column].to_numpy(dtype=object)


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None when it is missing, NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _classes(gold: np.ndarray, pred: np.ndarray) -> list:
    """Every value that is a gold or a predicted class, sorted (as strings)."""
    return sorted(set(gold.tolist()) | set(pred.tolist()), key=str)


def _macro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 over the classes present in gold (scikit-learn's ``f1_score``)."""
    from sklearn.metrics import f1_score

    if len(gold) == 0:
        return math.nan
    present = sorted(set(gold.tolist()), key=str)
    return float(f1_score(gold, pred, labels=present, average="macro", zero_division=0))


def with_outcomes(items: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``items`` with ``passed`` (route == expected_route) and ``label_correct`` (decided_label == label)."""
    _require(items, ("route", "expected_route", "label", "decided_label"), "with_outcomes")
    out = items.copy()
    out["passed"] = _values(items, "route") == _values(items, "expected_route")
    out["label_correct"] = _values(items, "decided_label") == _values(items, "label")
    return out


def compute_metrics(items: pd.DataFrame) -> dict[str, float]:
    """Every metric as a float: ``n``, the HEADLINE metrics, route fallback recall/precision,
    ``route_macro_f1``, ``critical_pass_rate``, ``n_critical``, ``n_critical_failed``. NaN = undefined."""
    _require(items, ("label", "decided_label", "route", "expected_route", "tags"), "compute_metrics")
    label, decided = _values(items, "label"), _values(items, "decided_label")
    route, expected = _values(items, "route"), _values(items, "expected_route")
    n = len(items)

    label_ok = decided == label
    gold_oos, decided_oos = label == OOS_LABEL, decided == OOS_LABEL
    passed = route == expected
    gold_fb, pred_fb = expected == FALLBACK_ROUTE, route == FALLBACK_ROUTE
    # Few distinct tag strings: test each once, then spread the answer to the rows.
    tag_codes, tag_values = pd.factorize(items["tags"], use_na_sentinel=False)
    critical = has_tag(pd.Series(tag_values, dtype=object), CRITICAL_TAG).to_numpy(dtype=bool)[tag_codes]
    n_critical = int(critical.sum())
    n_critical_failed = int((critical & ~passed).sum())

    return {
        "n": float(n),
        "label_accuracy": _ratio(label_ok.sum(), n),
        "in_scope_accuracy": _ratio((label_ok & ~gold_oos).sum(), (~gold_oos).sum()),
        "fallback_recall": _ratio((gold_oos & decided_oos).sum(), gold_oos.sum()),
        "fallback_precision": _ratio((gold_oos & decided_oos).sum(), decided_oos.sum()) if gold_oos.any() else math.nan,
        "route_accuracy": _ratio(passed.sum(), n),
        "route_fallback_recall": _ratio((gold_fb & pred_fb).sum(), gold_fb.sum()),
        "route_fallback_precision": _ratio((gold_fb & pred_fb).sum(), pred_fb.sum()) if gold_fb.any() else math.nan,
        "macro_f1": _macro_f1(label, decided),
        "route_macro_f1": _macro_f1(expected, route),
        "critical_pass_rate": _ratio(n_critical - n_critical_failed, n_critical),
        "n_critical": float(n_critical),
        "n_critical_failed": float(n_critical_failed),
    }


def finite_metrics(metrics: Mapping[str, object]) -> dict[str, float]:
    """The metrics that are defined numbers, as floats (NaN, inf and None dropped): safe for
    Dagster float metadata, MLflow ``log_metrics`` and strict JSON."""
    return {name: number for name, value in metrics.items() if (number := _number(value)) is not None}


def per_route_metrics(items: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 and support per route (every route that is expected or taken), sorted by route.

    ``precision`` is NaN for a route never taken, ``recall`` NaN for a route never expected
    (scikit-learn's ``precision_recall_fscore_support`` with ``zero_division=nan``).
    """
    from sklearn.metrics import precision_recall_fscore_support

    _require(items, ("route", "expected_route"), "per_route_metrics")
    gold, pred = _values(items, "expected_route"), _values(items, "route")
    classes = _classes(gold, pred)
    if not classes:
        return pd.DataFrame(columns=["route", "precision", "recall", "f1", "support"])
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=classes, zero_division=np.nan)
    return pd.DataFrame(
        {
            "route": [str(c) for c in classes],
            "precision": precision,
            "recall": recall,
            "f1": np.nan_to_num(f1, nan=0.0),  # a route expected or taken but never right: 0
            "support": support.astype(int),
        }
    )


def confusion_markdown(items: pd.DataFrame, by: str = "route") -> str:
    """A markdown confusion table of counts: rows = gold values present, columns = predicted values present.

    ``by="route"`` compares ``expected_route`` with ``route``; ``by="label"`` compares ``label``
    with ``decided_label`` (scikit-learn's ``confusion_matrix``).
    """
    from sklearn.metrics import confusion_matrix

    pairs = {"route": ("expected_route", "route"), "label": ("label", "decided_label")}
    if by not in pairs:
        raise ValueError(f"confusion_markdown: by must be 'route' or 'label', got {by!r}")
    gold_col, pred_col = pairs[by]
    _require(items, (gold_col, pred_col), "confusion_markdown")
    gold, pred = _values(items, gold_col), _values(items, pred_col)
    classes = _classes(gold, pred)
    header = [f"{gold_col} \\ {pred_col}"]
    if not classes:
        return md_table(header, [])
    matrix = confusion_matrix(gold, pred, labels=classes)
    rows_idx = [i for i in range(len(classes)) if matrix[i].sum() > 0]
    cols_idx = [j for j in range(len(classes)) if matrix[:, j].sum() > 0]
    header += [str(classes[j]) for j in cols_idx]
    rows = [[str(classes[i])] + [int(matrix[i, j]) for j in cols_idx] for i in rows_idx]
    return md_table(header, rows)


def failing_cases(items: pd.DataFrame, limit: int | None = 20) -> pd.DataFrame:
    """The cases whose route is wrong, in item order (at most ``limit``; ``None`` = all)."""
    _require(items, FAILING_COLUMNS, "failing_cases")
    failed = items.loc[_values(items, "route") != _values(items, "expected_route"), list(FAILING_COLUMNS)]
    if limit is not None:
        failed = failed.head(limit)
    return failed.reset_index(drop=True)


@dataclass(frozen=True)
class MetricDelta:
    metric: str
    baseline: float
    candidate: float
    delta: float
    tolerance: float
    ok: bool


@dataclass(frozen=True, eq=False)
class RegressionReport:
    """The outcome of comparing a candidate evaluation with the blessed baseline."""

    passed: bool
    deltas: list[MetricDelta]
    newly_failing: pd.DataFrame
    newly_passing: int
    compared_cases: int
    max_new_failures: int = 0
    skipped: tuple[str, ...] = field(default_factory=tuple)

    def markdown(self) -> str:
        """A metric table, the metrics not compared, and the newly failing cases (id, text, expected, got)."""
        parts = [
            f"**{'PASSED' if self.passed else 'FAILED'}**: {self.summary()}",
            md_table(
                ["metric", "baseline", "candidate", "delta", "tolerance", "ok"],
                [
                    [
                        d.metric,
                        f"{d.baseline:.4f}",
                        f"{d.candidate:.4f}",
                        f"{d.delta:+.4f}",
                        f"{d.tolerance:g}",
                        "yes" if d.ok else "NO",
                    ]
                    for d in self.deltas
                ],
            ),
        ]
        if self.skipped:
            parts.append("Not compared (missing or undefined on one side): " + ", ".join(self.skipped))
        parts.append(
            f"{len(self.newly_failing)} of {self.compared_cases} shared cases newly fail "
            f"(allowed {self.max_new_failures}); {self.newly_passing} newly pass."
        )
        if len(self.newly_failing):
            shown = self.newly_failing.head(_MARKDOWN_CASE_LIMIT)
            parts.append(
                md_table(
                    ["id", "text", "expected", "got"],
                    shown[["id", "text", "expected_route", "route"]].itertuples(index=False, name=None),
                )
            )
            if len(self.newly_failing) > len(shown):
                parts.append(f"... and {len(self.newly_failing) - len(shown)} more")
        return "\n\n".join(parts)

    def summary(self) -> str:
        """One line: ``ok``, or what regressed, e.g.
        ``route_accuracy dropped 0.042 (tolerance 0.01); 7 cases newly fail: a, b, c, d, e, ...``."""
        problems = [f"{d.metric} dropped {-d.delta:.3f} (tolerance {d.tolerance:g})" for d in self.deltas if not d.ok]
        count = len(self.newly_failing)
        if count:
            ids = [str(x) for x in self.newly_failing["id"].head(_SUMMARY_ID_LIMIT)]
            named = ", ".join(ids + (["..."] if count > len(ids) else []))
            cases = f"{count} case{'s' if count != 1 else ''} newly fail{'' if count != 1 else 's'}: {named}"
            if count > self.max_new_failures:
                problems.append(cases)
            elif not problems:
                return f"ok; {cases} (allowed {self.max_new_failures})"
        return "; ".join(problems) if problems else "ok"


def _unique_ids(items: pd.DataFrame, where: str) -> None:
    dup = items["id"].duplicated(keep=False)
    if dup.any():
        first = items.loc[dup, "id"].iloc[0]
        raise ValueError(
            f"compare_to_baseline: {where} items have duplicate id {first!r} ({int(dup.sum())} rows share an id)"
        )


def compare_to_baseline(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    candidate_items: pd.DataFrame,
    baseline_items: pd.DataFrame,
    tolerances: Mapping[str, float],
    max_new_failures: int = 0,
) -> RegressionReport:
    """Compare a candidate with the baseline, metric by metric and case by case.

    The metrics compared are the keys of ``tolerances`` (all higher-is-better). One regresses
    when ``candidate < baseline - tolerance``; equality at the boundary is ok. A metric missing,
    None or NaN on either side is skipped and listed in ``skipped``. Newly failing cases are the
    ids in both frames that passed in the baseline and fail in the candidate (candidate order).
    The report passes when no metric regresses and at most ``max_new_failures`` cases newly fail.
    """
    for metric, tol in tolerances.items():
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"compare_to_baseline: tolerance for {metric!r} must be a finite number >= 0, got {tol!r}")
    if max_new_failures < 0:
        raise ValueError(f"compare_to_baseline: max_new_failures must be >= 0, got {max_new_failures}")

    deltas: list[MetricDelta] = []
    skipped: list[str] = []
    for metric, tol in tolerances.items():
        base, cand = _number(baseline_metrics.get(metric)), _number(candidate_metrics.get(metric))
        if base is None or cand is None:
            skipped.append(metric)
            continue
        delta = cand - base
        deltas.append(MetricDelta(metric, base, cand, delta, float(tol), ok=delta >= -float(tol) - _EPS))

    _require(candidate_items, FAILING_COLUMNS, "compare_to_baseline (candidate)")
    _require(baseline_items, ("id", "route", "expected_route"), "compare_to_baseline (baseline)")
    _unique_ids(candidate_items, "candidate")
    _unique_ids(baseline_items, "baseline")
    cand = with_outcomes(candidate_items)
    base = with_outcomes(baseline_items)[["id", "passed"]].rename(columns={"passed": "baseline_passed"})
    shared = cand.merge(base, on="id", how="inner", sort=False)
    newly_failing = shared.loc[shared["baseline_passed"] & ~shared["passed"], list(FAILING_COLUMNS)]
    newly_failing = newly_failing.reset_index(drop=True)
    newly_passing = int((~shared["baseline_passed"] & shared["passed"]).sum())

    passed = all(d.ok for d in deltas) and len(newly_failing) <= max_new_failures
    return RegressionReport(
        passed=passed,
        deltas=deltas,
        newly_failing=newly_failing,
        newly_passing=newly_passing,
        compared_cases=len(shared),
        max_new_failures=max_new_failures,
        skipped=tuple(skipped),
    )


def threshold_curve(
    labels: Sequence[str] | np.ndarray | pd.Series,
    pred_labels: Sequence[str] | np.ndarray | pd.Series,
    confidences: Sequence[float] | np.ndarray | pd.Series,
    thresholds: Sequence[float] | np.ndarray,
    oos_label: str = OOS_LABEL,
) -> pd.DataFrame:
    """Label metrics at each confidence threshold, as if the router had used it.

    At threshold ``t`` a case is decided ``pred`` when ``confidence >= t`` and ``pred != oos``,
    else ``oos``. Columns: threshold, in_scope_accuracy, fallback_recall, fallback_precision,
    label_accuracy (NaN on an empty denominator; fallback_precision also NaN without ``oos`` cases). Vectorised: sorting plus ``searchsorted``,
    O((n + T) log n).
    """
    gold = np.asarray(labels, dtype=object)
    pred = np.asarray(pred_labels, dtype=object)
    conf = np.asarray(confidences, dtype=float)
    ts = np.asarray(thresholds, dtype=float)
    if not (len(gold) == len(pred) == len(conf)):
        raise ValueError(
            f"threshold_curve: labels ({len(gold)}), pred_labels ({len(pred)}) and confidences ({len(conf)})"
            " differ in length"
        )
    if np.isnan(conf).any():
        first = int(np.flatnonzero(np.isnan(conf))[0])
        raise ValueError(f"threshold_curve: confidences contain NaN (first at position {first})")
    if np.isnan(ts).any():
        raise ValueError("threshold_curve: thresholds contain NaN")

    def count_at_least(mask: np.ndarray) -> np.ndarray:
        """For each threshold, how many rows in ``mask`` have confidence >= it."""
        values = np.sort(conf[mask])
        return len(values) - np.searchsorted(values, ts, side="left")

    n = len(gold)
    gold_oos = gold == oos_label
    pred_oos = pred == oos_label
    n_oos = int(gold_oos.sum())
    n_in = n - n_oos
    in_correct = count_at_least(~gold_oos & (pred == gold))  # pred == gold in scope implies pred != oos
    oos_caught = n_oos - count_at_least(gold_oos & ~pred_oos)
    decided_oos = n - count_at_least(~pred_oos)
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame(
            {
                "threshold": ts,
                "in_scope_accuracy": in_correct / n_in if n_in else np.full(len(ts), np.nan),
                "fallback_recall": oos_caught / n_oos if n_oos else np.full(len(ts), np.nan),
                "fallback_precision": np.where(
                    (decided_oos > 0) & (n_oos > 0), oos_caught / np.maximum(decided_oos, 1), np.nan
                ),
                "label_accuracy": (in_correct + oos_caught) / n if n else np.full(len(ts), np.nan),
            }
        )


def latency_profile(
    fn: Callable[[str], object], texts: Sequence[str], *, warmup: int = 20, repeats: int = 1
) -> dict[str, float]:
    """Single-request latency: ``warmup`` untimed calls, then ``fn(text)`` for every text ``repeats`` times,
    each timed with ``perf_counter_ns``. Returns p50_ms, p95_ms, p99_ms, mean_ms, max_ms and n (timed calls)."""
    if len(texts) == 0:
        raise ValueError("latency_profile: texts is empty")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"latency_profile: need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for i in range(warmup):
        fn(texts[i % len(texts)])
    clock = time.perf_counter_ns
    samples = np.empty(len(texts) * repeats, dtype=np.int64)
    k = 0
    for _ in range(repeats):
        for text in texts:
            start = clock()
            fn(text)
            samples[k] = clock() - start
            k += 1
    ms = samples / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
        "mean_ms": float(ms.mean()), "max_ms": float(ms.max()), "n": float(len(ms)),
    }  # fmt: skip


def batch_throughput(
    fn: Callable[[Sequence[str]], object], texts: Sequence[str], *, repeats: int = 3
) -> dict[str, float]:
    """Batch throughput: ``fn(texts)`` ``repeats`` times, best (fastest) run. Returns items_per_s, seconds, n."""
    if len(texts) == 0:
        raise ValueError("batch_throughput: texts is empty")
    if repeats < 1:
        raise ValueError(f"batch_throughput: need repeats >= 1, got {repeats}")
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn(texts)
        best = min(best, (time.perf_counter_ns() - start) / 1e9)
    seconds = max(best, 1e-9)
    return {"items_per_s": len(texts) / seconds, "seconds": seconds, "n": float(len(texts))}


def decisions_fingerprint(items: pd.DataFrame) -> str:
    """SHA-256 (hex) of every decision: (id, route, agent, decided_label, rule, confidence rounded to 9 places),
    in id order, so row order does not matter and any changed decision does. Missing strings hash as ""."""
    _require(items, FINGERPRINT_COLUMNS, "decisions_fingerprint")
    columns = [items[c].fillna("").astype(str).tolist() for c in FINGERPRINT_COLUMNS[:-1]]
    columns.append([f"{round(c, 9):.9f}" for c in items["confidence"].astype(float).tolist()])
    # "\x1f" sorts below every printable character, so sorting whole rows sorts by id first.
    rows = sorted("\x1f".join(fields) for fields in zip(*columns))
    return hashlib.sha256(("\x1e".join(rows) + "\x1e").encode()).hexdigest()
