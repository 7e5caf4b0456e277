"""``agent-pipeline`` governance commands: approve, revoke, evidence, audit verify, doctor.

Registered by ``cli.build_parser``; same conventions (one ``error:`` line for what the user can
fix, ``--json`` for machines). ``audit verify`` and ``doctor`` exit 1 when they find a problem.
"""

from __future__ import annotations

import sys


def _policy(args):
    from agent_pipeline.cli import _settings
    from agent_pipeline.lib.registry.policy import load_policy

    return load_policy(_settings(args).policy_config)


def cmd_approve(args) -> int:
    from agent_pipeline.cli import _print, _registry
    from agent_pipeline.lib.registry import approvals

    store = _registry(args)
    rec = approvals.approve(store.home, store, _policy(args), args.version, args.by, args.note, args.evaluation_id)
    _print(
        rec,
        args.json,
        [
            f"v{rec['version']} approved by {rec['user']} for evaluation {rec['evaluation_id']} "
            f"(content {rec['content_sha256'][:16]}); audit record #{rec['seq']}. approval_sensor launches the "
            "promotion (or materialize champion_model with this version and evaluation_id)"
        ],
    )
    return 0


def cmd_revoke(args) -> int:
    from agent_pipeline.cli import _print, _registry
    from agent_pipeline.lib.registry import approvals

    store = _registry(args)
    rec = approvals.revoke(store.home, store, args.version, args.by, args.reason)
    _print(rec, args.json, [f"{len(rec['revokes'])} approval(s) of v{rec['version']} revoked by {rec['user']}"])
    return 0


def cmd_evidence(args) -> int:
    from agent_pipeline.cli import UserError, _registry
    from agent_pipeline.lib.evaluation import runs as evaluation
    from agent_pipeline.lib.registry import evidence

    store = _registry(args)
    version = store.resolve(version=args.version)
    if args.evaluation_id:
        path = evidence.card_dir(store.home, version, args.evaluation_id) / "model_card.md"
        card = path.read_text(encoding="utf-8") if path.is_file() else None
    else:
        path = evidence.latest_card(store.home, version)
        card = path.read_text(encoding="utf-8") if path else None
    if card is None:
        # Never promoted: the candidate's evidence as it stands (not written, not logged).
        ev_id = args.evaluation_id
        if not ev_id:
            ev = evaluation.latest_evaluation(store.home, version, "candidate")
            if ev is None:
                raise UserError(f"version {version} has no candidate evaluation and no model card")
            ev_id = ev.evaluation_id
        card = evidence.build_card(store.home, store, _policy(args), version, ev_id)
    sys.stdout.write(card)
    return 0


def cmd_audit_verify(args) -> int:
    from agent_pipeline.cli import _registry
    from agent_pipeline.lib.registry import promotion

    store = _registry(args)
    home = store.home
    result = promotion.verify_audit(store, home)
    if result.ok:
        print(result.line(home))
        return 0
    print(f"error: {result.line(home)}", file=sys.stderr)
    return 1


def cmd_doctor(args) -> int:
    from agent_pipeline.cli import _print, _registry
    from agent_pipeline.lib.registry import promotion

    store = _registry(args)
    findings = promotion.doctor(store, store.home, repair=args.repair)
    _print(
        [{"status": s, "finding": line} for s, line in findings],
        args.json,
        [f"{s:<8} {line}" for s, line in findings],
    )
    return 1 if any(s == "problem" for s, _ in findings) else 0


def add_commands(sub) -> None:
    sp = sub.add_parser("approve", help="sign off an evaluated candidate (bound to its content and evaluation)")
    sp.add_argument("version")
    sp.add_argument("--by", required=True, help="who approves (must be listed in the policy's approval.approvers)")
    sp.add_argument("--note", required=True, help="what was reviewed")
    sp.add_argument("--evaluation-id", default=None, help="default: the version's latest candidate evaluation")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_approve)

    sp = sub.add_parser("revoke", help="withdraw the approvals of a version")
    sp.add_argument("version")
    sp.add_argument("--by", required=True)
    sp.add_argument("--reason", required=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_revoke)

    sp = sub.add_parser("evidence", help="print a version's model card (evidence bundle)")
    sp.add_argument("version")
    sp.add_argument("--evaluation-id", default=None)
    sp.set_defaults(func=cmd_evidence)

    sp = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = sp.add_subparsers(dest="audit_command", required=True)
    v = audit_sub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad record")
    v.set_defaults(func=cmd_audit_verify)

    sp = sub.add_parser("doctor", help="check the champion's state (pending promotion, bundle, reference, audit)")
    sp.add_argument("--repair", action="store_true", help="finish or undo a half-done promotion; refresh what drifted")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_doctor)
