"""The benchmark sections. Each returns ``Figure``s whose reference is measured in the same run
(or, for accuracy, published), so the ratios survive this machine's ±30 % noise."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.evaluation import metrics
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.monitoring import records as monitoring
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.model import TrainSettings, rules_from_config, train_router
from agent_pipeline.lib.serving import bundle as serving
from bench import serving as serving_bench
from bench.report import Figure

SECTIONS = ("accuracy", "latency", "cold_start", "evaluation", "drift", "pipeline", "loop", "serve")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Larson et al. 2019, Table 2, "Full" data, test split: (in-scope accuracy, out-of-scope recall).
LARSON = {
    "FastText (oos class)": (89.0, 9.7),
    "SVM (oos class)": (91.0, 14.5),
    "CNN (oos class)": (91.2, 18.9),
    "DialogFlow (oos class)": (91.7, 14.0),
    "Rasa (oos class)": (91.5, 45.3),
    "MLP (oos class)": (93.5, 47.4),
    "BERT (oos class)": (96.9, 40.3),
    "MLP (threshold)": (93.4, 49.1),
    "BERT (threshold)": (96.2, 52.3),
}


def machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def _cache_dir() -> Path:
    d = settings.Settings.from_env(os.environ).home / "bench-cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


TIERS: list[str] | None = None  # set by --tiers


def tiers_available() -> list[str]:
    if TIERS:
        return TIERS
    try:
        from agent_pipeline.lib.router import embeddings

        embeddings.model_dir()
        return ["fast", "fast_svm_nb", "accurate", "cascade"]
    except Exception:  # noqa: BLE001 - the accurate tier is optional at bench time
        return ["fast", "fast_svm_nb"]


# Router variants measured besides the configured tiers: name -> classifier settings on top of the config.
VARIANTS = {"fast_svm_nb": {"tier": "fast", "fast_model": "svm_nb"}}


def trained_router(tier: str):
    """Train (or load from the bench cache) the router of ``tier`` on the full committed data."""
    import joblib

    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    raw.setdefault("classifier", {}).update(VARIANTS.get(tier, {"tier": tier}))
    key = hashlib.sha256(
        json.dumps(raw, sort_keys=True).encode()
        + settings.DEFAULT_TRAIN_DATA.read_bytes()
        + settings.DEFAULT_VALIDATION_DATA.read_bytes()
        + b"".join(
            f.read_bytes()  # the router's and the serving bundle's code: a change retrains
            for d in ("router", "serving")
            for f in sorted((ROOT / "agent_pipeline/lib" / d).glob("*.py"))
        )
    ).hexdigest()[:16]
    path = _cache_dir() / f"router-{tier}-{key}.joblib"
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents)
    val = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents)
    if path.is_file():
        router, report = joblib.load(path)
        router.info["bench_cache"] = str(path)
    else:
        kwargs = {"cache_dir": _cache_dir() / "embeddings"} if raw["classifier"]["tier"] != "fast" else {}
        router, report = train_router(
            train, val, agents, rules_from_config(raw, agents), TrainSettings.from_config(raw), **kwargs
        )
        joblib.dump((router, report), path)
        router.info["bench_cache"] = str(path)
    return router, report, val


def accuracy(quick: bool, ctx: dict) -> list[Figure]:
    figures, rows = [], []
    for tier in tiers_available():
        router, report, val = trained_router(tier)
        items = evaluation.route_items(router, {"validation": val})
        m = metrics.compute_metrics(items)
        in_scope, recall = 100 * report["val_in_scope_accuracy"], 100 * report["val_fallback_recall"]
        rows.append(
            (
                f"agent_pipeline {tier} (threshold {report['threshold']:.2f})",
                in_scope,
                recall,
                100 * m["route_accuracy"],
                100 * m["route_fallback_recall"],
            )
        )
        figures += [
            Figure(
                "accuracy",
                f"{tier}.val_in_scope_accuracy",
                in_scope,
                "%",
                "Larson BERT (threshold)",
                96.2,
                better="higher",
                target="fast >= 93.0, accurate >= 96.2",
                tolerance=0.01,
            ),
            Figure(
                "accuracy",
                f"{tier}.val_fallback_recall",
                recall,
                "%",
                "Larson BERT (threshold)",
                52.3,
                better="higher",
                target="fast >= 55, accurate >= 70",
                tolerance=0.05,
            ),
            Figure(
                "accuracy",
                f"{tier}.val_route_accuracy",
                100 * m["route_accuracy"],
                "%",
                "label-level in-scope",
                in_scope,
                better="higher",
                gated=False,
            ),
        ]
        curve = report["threshold_curve"]
        ctx[f"threshold curve ({tier})"] = curve.iloc[::10].to_markdown(index=False, floatfmt=".3f")
    table = [
        "| router | in-scope acc. | fallback (oos) recall | route acc. | route fallback recall |",
        "|---|---|---|---|---|",
    ]
    table += [f"| {r[0]} (val) | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} |" for r in rows]
    table += [f"| Larson et al. 2019 {name} (test) | {a:.1f} | {b:.1f} | | |" for name, (a, b) in LARSON.items()]
    ctx["accuracy vs Larson et al. 2019 Table 2"] = "\n".join(table)
    return figures


def _interleaved_throughput(reference, candidate, texts, rounds: int = 3) -> tuple[dict, dict]:
    """Best-of throughput of two batch functions measured alternately, so drift in machine
    load (these are shared 2-core machines) hits both sides alike."""
    ref, cand = [], []
    for _ in range(rounds):
        ref.append(metrics.batch_throughput(reference, texts, repeats=1))
        cand.append(metrics.batch_throughput(candidate, texts, repeats=1))
    best = lambda runs: max(runs, key=lambda r: r["items_per_s"])  # noqa: E731
    return best(ref), best(cand)


def latency(quick: bool, ctx: dict) -> list[Figure]:
    figures = []
    fast_router, _, val = trained_router("fast")
    texts = val["text"].tolist()[: 300 if quick else 2000]
    bare = fast_router.classifier.pipeline
    ref_single = metrics.latency_profile(lambda t: bare.predict_proba([t]), texts[:300])
    for tier in tiers_available():
        router = trained_router(tier)[0]
        single = metrics.latency_profile(router.route, texts)
        ref_batch, batch = _interleaved_throughput(bare.predict_proba, router.route_batch, texts)
        figures += [
            Figure(
                "latency",
                f"{tier}.route_p50",
                single["p50_ms"],
                "ms",
                "sklearn predict_proba([text]) p50",
                ref_single["p50_ms"],
                target="fast p99 <= 1 ms; cascade p50 <= 1 ms",
            ),
            Figure(
                "latency",
                f"{tier}.route_p99",
                single["p99_ms"],
                "ms",
                "sklearn predict_proba([text]) p99",
                ref_single["p99_ms"],
                target="fast <= 1 ms, accurate <= 6 ms",
            ),
            Figure(
                "latency",
                f"{tier}.batch_throughput",
                batch["items_per_s"],
                "texts/s",
                "sklearn predict_proba(batch)",
                ref_batch["items_per_s"],
                better="higher",
                target=">= 1 for fast",
            ),
        ]
    path = serving.export(fast_router, "bench", "0", _cache_dir() / "serving.pkl")
    served = metrics.latency_profile(serving.load(path).route, texts)
    figures.append(
        Figure(
            "latency",
            "serving_bundle.route_p50",
            served["p50_ms"],
            "ms",
            "sklearn predict_proba([text]) p50",
            ref_single["p50_ms"],
        )
    )
    return figures


def _median_wall(cmd: list[str], env: dict, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cold_start(quick: bool, ctx: dict) -> list[Figure]:
    router = trained_router("fast")[0]
    with tempfile.TemporaryDirectory() as home:
        serving.export(
            router,
            settings.DEFAULT_MODEL_NAME,
            "1",
            serving.bundle_path(Path(home)),
            tracking_uri=settings.default_tracking_uri(Path(home)),
        )
        env = {**os.environ, "AGENT_PIPELINE_HOME": home}
        n = 3 if quick else 7
        cli = _median_wall([str(BIN / "agent-pipeline"), "route", "transfer 100 dollars to savings", "--json"], env, n)
        ref = _median_wall([sys.executable, "-c", "import numpy"], env, n)
    return [
        Figure(
            "cold_start", "cli_route_cold_start", cli, "s", "python -c 'import numpy'", ref, target="<= 1.5 s absolute"
        )
    ]


def evaluation_cost(quick: bool, ctx: dict) -> list[Figure]:
    router, _, val = trained_router("fast")
    n = 20_000 if quick else 100_000
    rng = np.random.default_rng(0)
    cases = val.iloc[rng.integers(0, len(val), size=n)].reset_index(drop=True)
    cases["id"] = [f"case-{i}" for i in range(n)]
    t0 = time.perf_counter()
    router.route_batch(cases["text"].tolist())
    route_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    items = evaluation.route_items(router, {"bench": cases})
    metrics.compute_metrics(items), metrics.per_route_metrics(items), metrics.confusion_markdown(items)
    metrics.decisions_fingerprint(items)
    eval_s = time.perf_counter() - t0
    return [
        Figure(
            "evaluation",
            f"evaluate_{n // 1000}k_cases",
            eval_s,
            "s",
            f"route_batch of the same {n} texts",
            route_s,
            target="ratio <= 1.2",
        )
    ]


DRIFT_WORKER = """
import json, resource, sys, time
import numpy as np, pandas as pd, joblib
import evidently  # imported before timing: the import is a fixed per-process cost, not drift cost
from agent_pipeline.lib.monitoring import records as monitoring
router = joblib.load(sys.argv[1])[0]
n = int(sys.argv[2])
pool = pd.read_csv(sys.argv[3])
pool = pool[pool["pool"] == "stable"]
reference = pd.read_parquet(sys.argv[4])
rng = np.random.default_rng(n)
texts = pool["text"].to_numpy()[rng.integers(0, len(pool), size=n)]
dec = router.route_batch(pool["text"].tolist())
idx = rng.integers(0, len(pool), size=n)
log = pd.DataFrame({"text": texts, "route": dec["route"].to_numpy()[idx], "fallback": dec["fallback"].to_numpy()[idx],
                    "confidence": dec["confidence"].to_numpy()[idx]})
t0 = time.perf_counter()
result = monitoring.day_drift(log, reference, router, html_path=None, seed=1)
def peak_rss_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss would carry over the parent's peak
    # across fork + exec (it read 2.8 GB here when the bench process itself held that much).
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t0, "max_rss_mb": peak_rss_mb(), "drift": result.drift_detected}))
"""


def drift_cost(quick: bool, ctx: dict) -> list[Figure]:
    router, _, val = trained_router("fast")
    cache = _cache_dir()
    router_path = router.info["bench_cache"]
    from agent_pipeline.lib.registry.models import LoadedModel

    ref = monitoring.capture_reference(cache / "drift-home", LoadedModel("bench", "0", None, router), val["text"])
    sizes = (20_000, 200_000) if quick else (100_000, 1_000_000)
    out = {}
    for n in sizes:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                DRIFT_WORKER,
                str(router_path),
                str(n),
                str(settings.DEFAULT_TRAFFIC_POOL),
                str(monitoring.reference_path(cache / "drift-home")),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    small, big = sizes
    exponent = float(np.log(out[big]["seconds"] / out[small]["seconds"]) / np.log(big / small))
    ctx["drift cost"] = json.dumps({str(k): v for k, v in out.items()}, indent=1) + f"\nreference rows: {ref['rows']}"
    return [
        Figure(
            "drift",
            f"drift_{big // 1000}k_seconds",
            out[big]["seconds"],
            "s",
            f"drift_{small // 1000}k_seconds",
            out[small]["seconds"],
            target="<= 60 s at 1M rows; ratio near 1 = sampling bounds the cost",
        ),
        Figure(
            "drift",
            f"drift_{big // 1000}k_peak_rss",
            out[big]["max_rss_mb"],
            "MiB",
            f"drift_{small // 1000}k_peak_rss",
            out[small]["max_rss_mb"],
            target="<= 4096 MiB at 1M rows",
        ),
        Figure(
            "drift",
            "drift_growth_exponent",
            max(exponent, 1e-3),
            "",
            "linear growth",
            1.0,
            target="<= 1 (near-linear or better)",
            gated=False,
        ),
    ]


def pipeline(quick: bool, ctx: dict) -> list[Figure]:
    """CLI materialize of the lifecycle on a small data slice vs the sum of its steps' compute."""
    import dagster as dg

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = pd.read_csv(settings.DEFAULT_TRAIN_DATA, dtype=str, keep_default_na=False)
        val = pd.read_csv(settings.DEFAULT_VALIDATION_DATA, dtype=str, keep_default_na=False)
        train.groupby("label", group_keys=False).head(40).to_csv(tmp / "train.csv", index=False)
        val.groupby("label", group_keys=False).head(6).to_csv(tmp / "val.csv", index=False)
        home = tmp / "home"
        env = {
            **os.environ,
            "AGENT_PIPELINE_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "AGENT_PIPELINE_TRAIN_DATA": str(tmp / "train.csv"),
            "AGENT_PIPELINE_VALIDATION_DATA": str(tmp / "val.csv"),
        }
        (home / "dagster").mkdir(parents=True)
        shutil.copy(ROOT / "dagster.yaml", home / "dagster" / "dagster.yaml")
        selection = "group:datasets or group:training or key:candidate_evaluation or key:champion_model"
        t0 = time.perf_counter()
        subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-m", "agent_pipeline.definitions", "--select", selection],
            env=env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        wall = time.perf_counter() - t0
        os.environ["DAGSTER_HOME"], old = str(home / "dagster"), os.environ.get("DAGSTER_HOME")
        try:
            with dg.DagsterInstance.get() as inst:
                run = inst.get_runs(limit=1)[0]
                steps = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                compute = sum(e.dagster_event.event_specific_data.duration_ms for e in steps) / 1000
                n_steps = len(steps)
        finally:
            if old is not None:
                os.environ["DAGSTER_HOME"] = old
    ctx["pipeline"] = f"{n_steps} steps (assets + checks), wall {wall:.1f} s, compute {compute:.1f} s"
    return [
        Figure(
            "pipeline",
            "cli_materialize_wall",
            wall,
            "s",
            "sum of step compute",
            compute,
            target="overhead small vs compute",
        ),
        Figure(
            "pipeline",
            "overhead_per_step",
            (wall - compute) / max(1, n_steps),
            "s",
            "mean step compute",
            compute / max(1, n_steps),
            gated=False,
        ),
    ]


def loop(quick: bool, ctx: dict) -> list[Figure]:
    """The monitoring loop through the real sensors (``make demo`` on a 40-per-label training slice):
    time from the first drifted landing file to a new champion, against the bootstrap run."""
    import re

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = pd.read_csv(settings.DEFAULT_TRAIN_DATA, dtype=str, keep_default_na=False)
        train.groupby("label", group_keys=False).head(40).to_csv(tmp / "train.csv", index=False)
        env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI")}
        env.update({"AGENT_PIPELINE_HOME": str(tmp / "home"), "AGENT_PIPELINE_TRAIN_DATA": str(tmp / "train.csv")})
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--home", str(tmp / "home"), "--rows-per-day", "800"],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    out = proc.stdout
    bootstrap = re.search(r"bootstrap \(train_and_promote_job\): ([\d.]+) s", out)
    to_champion = re.search(r"first drifted landing file \(.*\) -> champion v\d+: ([\d.]+) s", out)
    if proc.returncode != 0 or not bootstrap or not to_champion:
        raise RuntimeError(
            f"demo did not end with a new champion (exit {proc.returncode}):\n{out[-3000:]}\n{proc.stderr[-2000:]}"
        )
    ctx["loop (make demo, 40/label slice)"] = "\n".join(line for line in out.splitlines() if " s" in line)[-3000:]
    return [
        Figure(
            "loop",
            "drifted_file_to_new_champion",
            float(to_champion.group(1)),
            "s",
            "bootstrap train_and_promote_job",
            float(bootstrap.group(1)),
            target="one retrain cycle",
        )
    ]


RUNNERS = {
    "accuracy": accuracy,
    "latency": latency,
    "cold_start": cold_start,
    "evaluation": evaluation_cost,
    "drift": drift_cost,
    "pipeline": pipeline,
    "loop": loop,
    "serve": lambda quick, ctx: serving_bench.serve_section(quick, ctx, trained_router),
}


def run_all(names: list[str], quick: bool) -> tuple[list[Figure], dict]:
    figures: list[Figure] = []
    ctx: dict = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        figures += RUNNERS[name](quick, ctx)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    return figures, ctx
