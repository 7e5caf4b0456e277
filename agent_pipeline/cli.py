"""``agent-pipeline``: what is not a Dagster operation.

Route a request with the champion, evaluate any dataset file against any registered version,
show status, bless a baseline, roll back, simulate production traffic. Dagster operations
(materializing assets, launching jobs) stay with the ``dagster`` CLI and the UI.

User mistakes (a missing file, an unknown version, a malformed dataset) print one line starting
with ``error:`` and exit non-zero; tracebacks are for bugs. Heavy libraries are imported inside
the command that needs them, so each command pays only for itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_FAILED = 1


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _settings(args):
    """The process's settings: the environment, read once here, with the command line's overrides."""
    if getattr(args, "settings", None) is None:
        import os

        from agent_pipeline.lib.core.settings import Settings

        args.settings = Settings.from_env(os.environ, model_name=args.model_name)
    return args.settings


def _registry(args):
    from agent_pipeline.lib.registry.models import ModelRegistry

    s = _settings(args)
    if s.encoder_threads:
        from agent_pipeline.lib.router import onnx_encoder

        onnx_encoder.set_threads(s.encoder_threads)
    return ModelRegistry(s.tracking_uri or None, s.model_name, home=s.home, ui_url=s.mlflow_ui_url, user=s.user)


def _finite(obj: Any) -> Any:
    """JSON has no NaN: an undefined metric (e.g. fallback recall without out-of-scope cases) is null."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _print(obj: Any, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(_finite(obj), sort_keys=True, default=str, allow_nan=False))
    else:
        print("\n".join(lines))


def _load(args, store):
    if getattr(args, "version", None):
        return store.load(version=args.version)
    return store.load(alias=getattr(args, "alias", None) or "champion")


def _serving_router(args):
    """The champion's serving bundle, when the default champion is asked for and one exists."""
    if args.version or args.alias:
        return None
    from agent_pipeline.lib.serving import bundle as serving

    s = _settings(args)
    path = serving.bundle_path(s.home)
    if not path.is_file():
        return None
    try:
        router = serving.load(path)
    except Exception:  # noqa: BLE001 - an old or damaged bundle: route through the registry instead
        return None
    from agent_pipeline.lib.core.secrets import redact_uri

    trusted = router.model_name == s.model_name and router.tracking_uri == redact_uri(s.tracking)
    if not trusted:
        return None
    from agent_pipeline.lib.registry.models import alias_version_cheap

    # The bundle stores the tracking URI without credentials; ask the configured (real) one.
    champion = alias_version_cheap(s.tracking, router.model_name)
    if champion != str(router.version):
        # The served model must be the champion: the alias moved (or was removed) behind the bundle.
        print(
            f"warning: serving bundle {path} is v{router.version} but the champion alias is "
            f"{'v' + champion if champion else 'unset'}: answering from the registry's champion instead; "
            "run agent-pipeline doctor --repair to refresh the bundle",
            file=sys.stderr,
        )
        return None
    return router


def cmd_route(args) -> int:
    fast = _serving_router(args)
    if fast is not None:
        model_name, version, d = fast.model_name, fast.version, fast.route(args.text)
    else:
        store = _registry(args)
        model = _load(args, store)
        model_name, version, d = store.model_name, model.version, model.route_one(args.text)
    from agent_pipeline.lib.serving.decisions import decision_fields

    out = decision_fields(d, version)
    why = f" ({d['fallback_reason']})" if d["fallback"] else ""
    _print(
        out,
        args.json,
        [
            f"route:       {out['route']}{why}",
            f"agent:       {out['agent']}",
            f"label:       {out['label']} (classifier: {out['predicted_label']})",
            f"confidence:  {out['confidence']:.3f}",
            f"fallback:    {'yes' if out['fallback'] else 'no'}",
            f"rule:        {out['rule'] or '-'}",
            f"model:       {model_name} v{version}",
        ],
    )
    return 0


def cmd_evaluate(args) -> int:
    from agent_pipeline.lib.data import expectations
    from agent_pipeline.lib.data.datasets import DatasetError, load_dataset
    from agent_pipeline.lib.evaluation import runs as evaluation
    from agent_pipeline.lib.router.agents import load_agent_registry

    agents = load_agent_registry(_settings(args).agents_config)
    try:
        df = load_dataset(args.dataset, agents)
    except DatasetError as exc:
        raise UserError(str(exc)) from exc
    report = expectations.validate_dataset(
        df,
        dataset=Path(args.dataset).name,
        source=str(args.dataset),
        known_labels=agents.known_labels,
        known_routes=agents.routes,
    )
    if not report.passed:
        raise UserError(f"{args.dataset} is not a valid dataset: " + "; ".join(r.message for r in report.failures()))
    store = _registry(args)
    model = _load(args, store)
    ev = evaluation.evaluate(model, {Path(args.dataset).stem: df}, version=model.version, measure_latency=False)
    if args.out:
        evaluation.save(ev, Path(args.out))
    headline = (
        "n",
        "label_accuracy",
        "in_scope_accuracy",
        "fallback_recall",
        "fallback_precision",
        "route_accuracy",
        "macro_f1",
    )
    out = {k: ev.metrics.get(k) for k in headline}
    out.update({"model_version": model.version, "dataset": str(args.dataset), "fingerprint": ev.fingerprint})
    out.update({k: v for k, v in ev.metrics.items() if k not in out})
    lines = [f"{store.model_name} v{model.version} on {args.dataset} ({int(out['n'])} cases)"]
    lines += [f"  {k:<22}{out[k]:.4f}" for k in headline[1:] if out.get(k) is not None and out[k] == out[k]]
    _print(out, args.json, lines)
    return 0


def cmd_status(args) -> int:
    from agent_pipeline.lib.evaluation import runs as evaluation
    from agent_pipeline.lib.evaluation.gates import gate_standing
    from agent_pipeline.lib.registry.models import CANDIDATE, CHAMPION, PREVIOUS_CHAMPION, read_audit

    store = _registry(args)
    aliases = {a: store.alias_version(a) for a in (CHAMPION, PREVIOUS_CHAMPION, CANDIDATE)}
    from agent_pipeline.lib.core.secrets import redact_uri

    shown_uri = redact_uri(store.tracking_uri)  # a Postgres URI carries a password
    out: dict[str, Any] = {"model_name": store.model_name, "tracking_uri": shown_uri, "aliases": aliases}
    for alias in (CHAMPION, CANDIDATE):
        v = aliases[alias]
        # The gates ran on the candidate evaluation; the champion's latest is the nightly one.
        ev = (
            evaluation.latest_evaluation(store.home, v, "champion" if alias == CHAMPION else "candidate") if v else None
        )
        if ev is None and v:
            ev = evaluation.latest_evaluation(store.home, v)
        out[f"{alias}_evaluation"] = (
            None
            if ev is None
            else {
                "evaluation_id": ev.evaluation_id,
                "path": str(ev.path),
                **{k: ev.metrics.get(k) for k in ("n", "route_accuracy", "in_scope_accuracy", "fallback_recall")},
                "gates": gate_standing(store, store.home, v, ev.evaluation_id)[0],
            }
        )
    found = evaluation.load_baseline(store.home)
    out["baseline"] = (
        None if found is None else {k: found[1][k] for k in ("version", "evaluation_id", "blessed_by", "blessed_at")}
    )
    audit = read_audit(store.home)
    out["last_actions"] = audit[-5:]
    lines = [f"model {store.model_name} ({shown_uri})"]
    lines += [f"  {a:<18} v{v}" if v else f"  {a:<18} -" for a, v in aliases.items()]
    for alias in (CHAMPION, CANDIDATE):
        e = out[f"{alias}_evaluation"]
        if e:
            gates = ", ".join(f"{g}={r}" for g, r in sorted(e["gates"].items())) or "not run"
            lines.append(
                f"  last {alias} evaluation {e['evaluation_id']}: route_accuracy {e['route_accuracy']:.4f}, "
                f"in_scope {e['in_scope_accuracy']:.4f}, fallback_recall {e['fallback_recall']:.4f}; gates: {gates}"
            )
    b = out["baseline"]
    lines.append(
        f"  baseline           v{b['version']} blessed by {b['blessed_by']} at {b['blessed_at']}"
        if b
        else "  baseline           -"
    )
    lines += [f"  {_audit_line(rec)}" for rec in out["last_actions"]]
    _print(out, args.json, lines)
    return 0


def cmd_bless(args) -> int:
    from agent_pipeline.governance_cli import _policy
    from agent_pipeline.lib.registry import promotion

    store = _registry(args)
    version = store.resolve(version=args.version) if args.version else store.resolve(alias="champion")
    info = promotion.bless_version(
        store, store.home, _policy(args), version, args.by or _settings(args).user, args.reason
    )
    _print(
        info,
        args.json,
        [
            f"blessed v{info['version']} evaluation {info['evaluation_id']} as the baseline ({info['blessed_by']}, {info['blessed_at']})"
        ],
    )
    return 0


def cmd_rollback(args) -> int:
    from agent_pipeline.lib.registry import promotion

    store = _registry(args)
    rec = promotion.rollback(store, store.home, to_version=args.to, reason=args.reason)
    _print(
        rec,
        args.json,
        [f"champion is now v{rec['version']} (was v{rec['previous_champion']}); recorded in the audit log"],
    )
    return 0


def _audit_line(r: dict) -> str:
    """One audit record as a line: what, which version, who, and why."""
    action = r.get("action", "?")
    extra = {
        "promote": f"previous v{r.get('previous_champion')}, evaluation {r.get('evaluation_id')}",
        "rollback": f"previous v{r.get('previous_champion')}: {r.get('reason', '')}",
        "approve": f"evaluation {r.get('evaluation_id')}, content {str(r.get('content_sha256', ''))[:12]}: {r.get('note', '')}",
        "revoke": r.get("reason", ""),
        "bless": f"evaluation {r.get('evaluation_id')}: {r.get('reason', '')}",
    }.get(action, r.get("reason", ""))
    if r.get("recovery"):
        extra += f" [recovered: {r['recovery']}]"
    return f"#{r.get('seq', '?')} {r.get('time')} {action} v{r.get('version')} by {r.get('user')} ({extra})"


def cmd_history(args) -> int:
    from agent_pipeline.lib.registry.models import read_audit

    store = _registry(args)
    audit = read_audit(store.home)
    _print(
        audit,
        args.json,
        [_audit_line(r) for r in audit] or ["no promotions yet"],
    )
    return 0


def cmd_simulate_traffic(args) -> int:
    import time
    from datetime import date

    from agent_pipeline.lib.core import settings
    from agent_pipeline.lib.monitoring import traffic

    try:
        start = date.fromisoformat(args.start)
    except ValueError as exc:
        raise UserError(f"--start '{args.start}' is not a YYYY-MM-DD date") from exc
    pool_path = _settings(args).traffic_pool
    landing = settings.landing_dir(_settings(args).home)
    try:
        pool = traffic.read_pool(pool_path)
        store = _registry(args)
        model = _load(args, store)
        t0 = time.perf_counter()
        paths = traffic.simulate(
            model,
            pool,
            start=start,
            days=args.days,
            scenario=args.scenario,
            seed=args.seed,
            rows_per_day=args.rows_per_day,
            review_share=args.review_share,
            landing=landing,
        )
    except traffic.TrafficError as exc:
        raise UserError(str(exc)) from exc
    seconds = time.perf_counter() - t0
    out = {
        "files": [str(p) for p in paths],
        "landing": str(landing),
        "pool": str(pool_path),
        "scenario": args.scenario,
        "seed": args.seed,
        "days": args.days,
        "rows_per_day": args.rows_per_day,
        "review_share": args.review_share,
        "model_version": model.version,
        "seconds": round(seconds, 3),
    }
    lines = [
        f"routed {args.days * args.rows_per_day} '{args.scenario}' requests (seed {args.seed}) with "
        f"{store.model_name} v{model.version} in {seconds:.1f} s; landing files in {landing}:"
    ]
    lines += [f"  {p.name}" for p in paths]
    _print(out, args.json, lines)
    return 0


def cmd_serve(args) -> int:
    import os

    from agent_pipeline.lib.serving.app import ServeSettings, serve

    try:
        settings = ServeSettings.from_env(os.environ, model_name=args.model_name)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    serve(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agent-pipeline", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-name", default=None, help="registered model name (default: $AGENT_PIPELINE_MODEL_NAME or agent-router)"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def version_args(sp):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--alias", default=None, help="registry alias (default: champion)")
        g.add_argument("--version", default=None, help="registered version number")

    sp = sub.add_parser("route", help="route one request with the champion (or --alias/--version)")
    sp.add_argument("text")
    version_args(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_route)

    sp = sub.add_parser("evaluate", help="evaluate a dataset file against a registered version")
    sp.add_argument("--dataset", required=True, help="CSV or JSON Lines file in the dataset schema")
    version_args(sp)
    sp.add_argument("--out", default=None, help="also save the evaluation folder (items.csv, metrics.json) here")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("status", help="champion, candidate, last evaluations and gates, baseline, last promotions")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("bless", help="bless an evaluated version (default: champion) as the benchmark baseline")
    sp.add_argument("--version", default=None)
    sp.add_argument("--by", default=None, help="who blesses (default: $AGENT_PIPELINE_USER or the login name)")
    sp.add_argument("--reason", default="")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_bless)

    sp = sub.add_parser("rollback", help="point champion back to the previous champion (or --to VERSION)")
    sp.add_argument("--to", default=None)
    sp.add_argument("--reason", default="")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_rollback)

    sp = sub.add_parser("history", help="the audit log: promotions, rollbacks, approvals, blessings, recoveries")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_history)

    from agent_pipeline import governance_cli

    governance_cli.add_commands(sub)

    sp = sub.add_parser("simulate-traffic", help="route held-out traffic with the champion into daily landing files")
    sp.add_argument("--start", required=True, help="first day, YYYY-MM-DD (UTC)")
    sp.add_argument("--days", type=int, default=1)
    # lib/monitoring/traffic.SCENARIOS, spelled out: importing it (pandas) would slow every command's start.
    sp.add_argument("--scenario", required=True, choices=["stable", "new-topic", "oos-surge"])
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--rows-per-day", type=int, default=1000)
    sp.add_argument("--review-share", type=float, default=0.2, help="share of requests with a human-reviewed label")
    version_args(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_simulate_traffic)

    sp = sub.add_parser("serve", help="serve the champion over HTTP: POST /route, GET /healthz, GET /metrics")
    sp.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sp.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = build_parser().parse_args(argv)
    from agent_pipeline.lib.core.errors import ConfigError, DatasetError, RegistryError, StateError
    from agent_pipeline.lib.core.secrets import redact_uri

    try:
        return int(args.func(args) or 0)
    except (UserError, RegistryError, DatasetError, ConfigError, StateError, FileNotFoundError) as exc:
        print(redact_uri(f"error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        # MLflow (an unreachable tracking server, a corrupt store) and the HTTP stack under it
        # are problems of the setup, not bugs here: one line, like the others, credentials
        # hidden. Anything else is a bug: traceback.
        if type(exc).__module__.split(".")[0] in ("mlflow", "requests", "urllib3"):
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(redact_uri(f"error: MLflow: {first}"), file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
