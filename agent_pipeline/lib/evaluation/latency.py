"""The latency gate, made fair: candidate and champion measured together, verdicts that a burst cannot flip.

A single timing pass on a busy machine says more about the machine than about the model: a
newcomer's first promotion was blocked at p99 45 ms against a 25 ms SLO, and the same model
measured 0.6 ms two minutes later. So the gate measures like this:

* **Interleaved.** The candidate and the current champion route the same texts, request by
  request, alternating which goes first (A/B, B/A, ...). Whatever slows the machine slows both.
* **The request's own time.** Each request is timed twice: wall clock, and the CPU time the
  process spent on it. On a loaded machine the wall clock of a request includes the time it
  waited for a core (a 2-core box running 20 processes adds tens of milliseconds to whichever
  requests the scheduler preempts, i.e. to the p99 of any model); the CPU time does not. The
  gate judges CPU time by default (``basis="cpu"``) and reports both. For a router that
  computes on several threads the CPU time is the sum over threads, so it errs towards "slow".
* **Warm-up, then rounds.** Untimed calls first (caches, lazy imports), then ``rounds`` timed
  passes over the texts; every percentile is computed per round.
* **Robust statistics.** A percentile's value is the median over rounds, and its spread is the
  interquartile range over rounds: one noisy burst moves one round, not the median or the
  quartiles. The candidate/champion ratio is computed per round (the rounds are paired) and
  summarised the same way.
* **Three outcomes.** ``pass`` when even the upper quartile is within the limit, ``fail`` when
  even the lower quartile is over it; when the limit falls between the quartiles, the median
  decides if the rounds agree closely (relative spread at most ``max_spread``), else the verdict
  is ``undecided``. An absolute SLO breach is also ``undecided`` when the champion, measured in
  the same rounds, breaches it too: the machine is slow now, not the candidate.

``undecided`` does not pass (the gate fails closed); its description says to re-run the check.
No Dagster import: the asset check calls :func:`judge` and describes the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from agent_pipeline.lib.core import markdown

Verdict = Literal["pass", "fail", "undecided"]
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


@dataclass(frozen=True)
class LatencyPlan:
    """How to measure and judge. ``slo_ms``: absolute limits per percentile (e.g. ``{"p50": 5, "p99": 25}``);
    ``max_ratio``: the candidate may be at most this many times slower than the champion on each
    percentile of ``ratio_on``. The ratio is taken on the body of the distribution (p50 by
    default): a round's p99 is its one or two slowest requests, which on a shared machine are
    whichever the scheduler preempted, so a p99 ratio compares noise; the tail is held by the
    absolute SLO instead."""

    slo_ms: dict[str, float]
    max_ratio: float = 1.5
    ratio_on: tuple[str, ...] = ("p50",)
    warmup: int = 30
    rounds: int = 7
    sample: int = 200
    max_spread: float = 0.5
    basis: Literal["cpu", "wall"] = "cpu"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.slo_ms) - set(PERCENTILES))
        if not self.slo_ms or unknown:
            raise ValueError(f"slo_ms: give one or more of {', '.join(PERCENTILES)}; got {sorted(self.slo_ms)}")
        if not self.ratio_on or set(self.ratio_on) - set(PERCENTILES):
            raise ValueError(f"ratio_on: give one or more of {', '.join(PERCENTILES)}; got {list(self.ratio_on)}")
        if self.basis not in ("cpu", "wall"):
            raise ValueError(f"basis: 'cpu' or 'wall', got {self.basis!r}")
        if self.rounds < 3 or self.sample < 10 or self.warmup < 0 or self.max_ratio < 1 or self.max_spread <= 0:
            raise ValueError(
                "latency plan: need rounds >= 3, sample >= 10, warmup >= 0, max_ratio >= 1, max_spread > 0; got "
                f"rounds={self.rounds}, sample={self.sample}, warmup={self.warmup}, max_ratio={self.max_ratio}, "
                f"max_spread={self.max_spread}"
            )


def sample_texts(texts: Sequence[str], n: int) -> list[str]:
    """Every k-th text, ``n`` of them at most (deterministic)."""
    texts = list(texts)
    if not texts:
        raise ValueError("latency: no texts to measure with")
    return texts[:: max(1, len(texts) // n)][:n]


def measure_interleaved(
    routers: dict[str, Callable[[str], object]],
    texts: Sequence[str],
    *,
    warmup: int,
    rounds: int,
    clock: Callable[[], int] = time.perf_counter_ns,
    cpu_clock: Callable[[], int] = time.process_time_ns,
) -> pd.DataFrame:
    """Per-request timings of every router over the same texts, interleaved request by request.

    Returns a frame with columns ``round``, ``router``, ``text_index``, ``ms`` (wall clock) and
    ``cpu_ms`` (CPU time of the process during the request). Within a round the
    order of the routers rotates with the text index, and the rotation shifts every round, so no
    router always runs first (or right after a given other one).
    """
    names = list(routers)
    if not names or not texts:
        raise ValueError("measure_interleaved: need at least one router and one text")
    for i in range(warmup):
        for name in names:
            routers[name](texts[i % len(texts)])
    rows_round, rows_router, rows_index, rows_ms, rows_cpu = [], [], [], [], []
    for r in range(rounds):
        for i, text in enumerate(texts):
            shift = (i + r) % len(names)
            for name in names[shift:] + names[:shift]:
                cpu0, start = cpu_clock(), clock()
                routers[name](text)
                elapsed, cpu = clock() - start, cpu_clock() - cpu0
                rows_round.append(r)
                rows_router.append(name)
                rows_index.append(i)
                rows_ms.append(elapsed / 1e6)
                rows_cpu.append(cpu / 1e6)
    return pd.DataFrame(
        {"round": rows_round, "router": rows_router, "text_index": rows_index, "ms": rows_ms, "cpu_ms": rows_cpu}
    )


def per_round(timings: pd.DataFrame, percentiles: Sequence[str], column: str = "ms") -> pd.DataFrame:
    """One row per (round, router): each requested percentile of that round's ``column`` (ms)."""
    qs = [PERCENTILES[p] for p in percentiles]
    out = []
    for (r, router), g in timings.groupby(["round", "router"], sort=True):
        values = np.percentile(g[column].to_numpy(), qs)
        out.append({"round": int(r), "router": router, **dict(zip(percentiles, map(float, values)))})
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Judgement:
    """One limit judged over rounds: median and quartiles of the per-round values."""

    name: str  # e.g. "p99 ms" or "p50 ratio"
    median: float
    q1: float
    q3: float
    limit: float
    verdict: Verdict
    reason: str = ""

    @property
    def spread(self) -> float:
        return (self.q3 - self.q1) / self.median if self.median > 0 else float("inf")

    def line(self) -> str:
        unit = "x" if "ratio" in self.name else " ms"
        text = (
            f"{self.name} {self.median:.3f}{unit} (IQR {self.q1:.3f}-{self.q3:.3f}) vs limit {self.limit:.3f}{unit}: "
            f"{self.verdict}"
        )
        return f"{text} ({self.reason})" if self.reason else text


def judge_values(name: str, values: Sequence[float], limit: float, max_spread: float) -> Judgement:
    """Judge per-round ``values`` against ``limit`` (lower is better); see the module docstring."""
    arr = np.asarray(values, dtype=float)
    q1, median, q3 = (float(x) for x in np.percentile(arr, [25, 50, 75]))
    if q3 <= limit:
        return Judgement(name, median, q1, q3, limit, "pass")
    if q1 > limit:
        return Judgement(name, median, q1, q3, limit, "fail")
    spread = (q3 - q1) / median if median > 0 else float("inf")
    if spread <= max_spread:
        return Judgement(name, median, q1, q3, limit, "pass" if median <= limit else "fail")
    return Judgement(
        name, median, q1, q3, limit, "undecided", f"rounds disagree: spread {spread:.0%} > {max_spread:.0%}"
    )


@dataclass
class LatencyResult:
    """What the gate decided and the numbers behind it."""

    verdict: Verdict
    slo: list[Judgement]
    ratio: list[Judgement]
    rounds: pd.DataFrame  # per-round percentiles per router, on the judged basis
    n_texts: int
    champion: bool
    notes: list[str] = field(default_factory=list)
    basis: str = "cpu"
    wall: dict[str, float] = field(default_factory=dict)  # the candidate's wall-clock medians over rounds

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        parts = [j.line() for j in self.ratio + self.slo]
        head = {
            "pass": "within SLO",
            "fail": "too slow",
            "undecided": "UNDECIDED (measurement too noisy to judge; not passed)",
        }[self.verdict]
        basis = "CPU time per request" if self.basis == "cpu" else "wall clock per request"
        wall = ", ".join(f"{p} {v:.3f} ms" for p, v in self.wall.items())
        notes = self.notes + ([f"wall clock (not judged) {wall}"] if self.basis == "cpu" and wall else [])
        return f"{head} ({basis}, {self.n_texts} texts x {self.rounds['round'].nunique()} rounds): " + "; ".join(
            parts + notes
        )

    def metadata(self) -> dict[str, float | str]:
        md: dict[str, float | str] = {"verdict": self.verdict, "basis": self.basis, "n_texts": float(self.n_texts)}
        md.update({f"wall_{p}_ms": v for p, v in self.wall.items()})
        md["n_rounds"] = float(self.rounds["round"].nunique()) if len(self.rounds) else 0.0
        for j in self.slo + self.ratio:
            key = j.name.replace(" ", "_")
            md[f"{key}"] = j.median
            md[f"{key}_q1"] = j.q1
            md[f"{key}_q3"] = j.q3
            md[f"{key}_limit"] = j.limit
        return md

    def rounds_markdown(self) -> str:
        return markdown.frame_table(self.rounds, floatfmt=".3f", empty="(none)")


def judge(
    candidate: Callable[[str], object],
    champion: Callable[[str], object] | None,
    texts: Sequence[str],
    plan: LatencyPlan,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> LatencyResult:
    """Measure ``candidate`` (interleaved with ``champion`` when there is one) and judge it against ``plan``."""
    sample = sample_texts(texts, plan.sample)
    routers = {"candidate": candidate} if champion is None else {"candidate": candidate, "champion": champion}
    timings = measure_interleaved(routers, sample, warmup=plan.warmup, rounds=plan.rounds, clock=clock)
    pcts = sorted(plan.slo_ms, key=lambda p: PERCENTILES[p])
    wanted = sorted(set(pcts) | set(plan.ratio_on), key=lambda p: PERCENTILES[p])
    rounds = per_round(timings, wanted, "cpu_ms" if plan.basis == "cpu" else "ms")
    wall_rounds = per_round(timings[timings["router"] == "candidate"], pcts, "ms")
    wall = {p: float(np.median(wall_rounds[p])) for p in pcts}
    cand = rounds[rounds["router"] == "candidate"].set_index("round")
    slo = [judge_values(f"{p} ms", cand[p], float(plan.slo_ms[p]), plan.max_spread) for p in pcts]
    ratio: list[Judgement] = []
    notes: list[str] = []
    if champion is not None:
        champ = rounds[rounds["router"] == "champion"].set_index("round")
        ratio = [judge_values(f"{p} ratio", cand[p] / champ[p], plan.max_ratio, plan.max_spread) for p in plan.ratio_on]
        ratio_ok = all(j.verdict != "fail" for j in ratio)  # not shown slower than the champion
        for i, j in enumerate(slo):
            p = pcts[i]
            champ_j = judge_values(f"{p} ms", champ[p], float(plan.slo_ms[p]), plan.max_spread)
            if j.verdict == "fail" and ratio_ok and champ_j.verdict != "pass":
                slo[i] = Judgement(
                    j.name,
                    j.median,
                    j.q1,
                    j.q3,
                    j.limit,
                    "undecided",
                    f"the champion breaches it too in the same rounds ({champ_j.median:.3f} ms): the machine is slow "
                    "now, or the SLO is below what the champion does",
                )
    else:
        notes.append("no champion to compare with: absolute SLO only")
    verdicts = {j.verdict for j in slo + ratio}
    verdict: Verdict = "fail" if "fail" in verdicts else "undecided" if "undecided" in verdicts else "pass"
    return LatencyResult(verdict, slo, ratio, rounds, len(sample), champion is not None, notes, plan.basis, wall)
