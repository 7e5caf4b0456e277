"""Figures, the markdown table and the regression check against the committed baseline."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One measured value, its reference (measured in the same run or published) and their ratio.

    ``better`` says which way is good for the ratio (``lower`` for times, ``higher`` for
    accuracies and throughput); ``gated`` figures are checked against bench/baseline.json with
    a relative ``tolerance`` (these machines are noisy: ±30 % run to run is normal for times).
    """

    section: str
    name: str
    value: float
    unit: str
    reference_name: str
    reference_value: float
    better: str = "lower"
    target: str = ""
    gated: bool = True
    tolerance: float = 0.5

    @property
    def ratio(self) -> float:
        return self.value / self.reference_value if self.reference_value else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def render_markdown(doc: dict) -> str:
    lines = [
        f"# Benchmark run {doc['date']}{' (quick)' if doc.get('quick') else ''}",
        "",
        f"Machine: {doc['machine']}",
        "",
        "| section | figure | value | reference | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for f in doc["figures"]:
        lines.append(
            f"| {f['section']} | {f['name']} | {f['value']:.4g} {f['unit']} | {f['reference_name']}: "
            f"{f['reference_value']:.4g} | {f['ratio']:.3g} | {f['target']} |"
        )
    for key, value in doc.get("context", {}).items():
        lines += ["", f"## {key}", "", str(value)]
    return "\n".join(lines) + "\n"


def check_against_baseline(figures: list[Figure], baseline: dict) -> list[str]:
    """One line per gated figure whose ratio is worse than its baseline by more than the tolerance."""
    out = []
    for f in figures:
        ref = baseline.get(f.name)
        if not f.gated or ref is None or f.ratio != f.ratio:
            continue
        tol = float(ref.get("tolerance", f.tolerance))
        if f.better == "lower" and f.ratio > ref["ratio"] * (1 + tol):
            out.append(f"{f.name}: ratio {f.ratio:.3g} > baseline {ref['ratio']:.3g} x (1 + {tol})")
        if f.better == "higher" and f.ratio < ref["ratio"] * (1 - tol):
            out.append(f"{f.name}: ratio {f.ratio:.3g} < baseline {ref['ratio']:.3g} x (1 - {tol})")
    return out
