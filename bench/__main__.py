"""``make bench``: every figure as a ratio against a reference measured in the same run.

    python -m bench [--quick] [--only SECTION ...] [--out DIR] [--no-check] [--update-baseline]
    python -m bench --baseline-from bench/results/<stamp>.json

Sections: ``accuracy`` (each tier vs Larson et al. 2019), ``latency`` (router vs the bare fitted
estimator), ``cold_start`` (the CLI as a process vs a bare interpreter importing numpy),
``evaluation`` (metrics vs routing), ``drift`` (100k vs 1M rows), ``pipeline`` (CLI materialize
vs the assets' own compute time), ``loop`` (drifted landing file -> new champion through the
sensors, vs the bootstrap run). Results go to ``bench/results/<UTC stamp>.{json,md}``; the
ratios are checked against ``bench/baseline.json`` (committed) and the run exits 1 when one is
worse than its reference by more than the stated tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import sections
from bench.report import check_against_baseline, render_markdown

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not a reference)")
    p.add_argument("--only", nargs="*", choices=sections.SECTIONS, default=None)
    p.add_argument(
        "--tiers",
        nargs="*",
        choices=("fast", "fast_svm_nb", "accurate", "cascade"),
        default=None,
        help="router tiers to measure (default: every tier that is installed); fast_svm_nb is the "
        "fast tier with fast_model: svm_nb",
    )
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--no-check", action="store_true", help="do not compare with bench/baseline.json")
    p.add_argument("--update-baseline", action="store_true", help="write this run's ratios as the new baseline")
    p.add_argument(
        "--baseline-from",
        metavar="RESULTS_JSON",
        help="write the baseline from an earlier run's results file (no measuring) and exit",
    )
    args = p.parse_args(argv)
    baseline_path = HERE / "baseline.json"
    if args.baseline_from:
        doc = json.loads(Path(args.baseline_from).read_text())
        if doc.get("quick"):
            p.error(f"{args.baseline_from} is a --quick run: a smoke run is not a reference")
        write_baseline(baseline_path, doc["figures"])
        return 0

    sections.TIERS = args.tiers
    figures, context = sections.run_all(args.only or list(sections.SECTIONS), quick=args.quick)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "date": stamp,
        "machine": sections.machine(),
        "quick": args.quick,
        "context": context,
        "figures": [f.to_dict() for f in figures],
    }
    (out / f"{stamp}.json").write_text(json.dumps(doc, indent=2, default=str))
    md = render_markdown(doc)
    (out / f"{stamp}.md").write_text(md)
    print(md)
    print(f"results: {out / stamp}.json / .md")
    if args.update_baseline:
        write_baseline(baseline_path, [f.to_dict() for f in figures])
        return 0
    if args.no_check or not baseline_path.is_file():
        return 0
    failures = check_against_baseline(figures, json.loads(baseline_path.read_text()))
    for line in failures:
        print(f"REGRESSION {line}")
    return 1 if failures else 0


def write_baseline(path: Path, figures: list[dict]) -> None:
    """The gated figures' ratios, tolerances and directions, as ``bench/baseline.json``."""
    baseline = {
        f["name"]: {"ratio": f["ratio"], "tolerance": f["tolerance"], "better": f["better"]}
        for f in figures
        if f["gated"]
    }
    path.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
