"""Human sign-off bound to one exact candidate, kept in the audit log.

An approval is an audit record ``{"action": "approve", "version", "content_sha256",
"evaluation_id", "user", "note"}``: the model version, a hash of its artifacts
(``ModelRegistry.content_hash``) and the evaluation whose gates passed. It counts for a
promotion only while

* its approver is listed in the current policy's ``approval.approvers``;
* the version's artifacts still hash to ``content_sha256`` and the promotion is of that same
  ``evaluation_id`` (an approval of other content or another evaluation is stale);
* no later ``revoke`` record withdrew it;
* the audit chain verifies (an approval read from an edited log counts for nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.evaluation.gates import GateVerdict, gate_standing
from agent_pipeline.lib.registry import audit
from agent_pipeline.lib.registry.models import utc_now
from agent_pipeline.lib.registry.policy import Policy

GATE = "human_approval"


class ApprovalError(RegistryError):
    """An approval or revocation that is refused (wrong approver, unevaluated candidate, ...)."""


@dataclass(frozen=True)
class Standing:
    """Where one candidate (version + content + evaluation) stands with respect to sign-off."""

    valid: dict[str, Any] | None  # the approval that counts, if any
    stale: list[dict[str, Any]]  # approvals of this version for other content or another evaluation
    revoked: list[dict[str, Any]]
    not_allowed: list[dict[str, Any]]  # by someone the policy no longer lists


def approvals_of(records: list[dict[str, Any]], version: str) -> tuple[list[dict], set[str]]:
    """(approve records of ``version``, hashes of those revoked)."""
    approves = [r for r in records if r.get("action") == "approve" and str(r.get("version")) == str(version)]
    revoked = {h for r in records if r.get("action") == "revoke" for h in r.get("revokes", [])}
    return approves, revoked


def standing(home: Path, policy: Policy, version: str, content_sha256: str, evaluation_id: str) -> Standing:
    check = audit.verify(home)
    if not check.ok:
        raise ApprovalError(f"{check.line(home)}; approvals cannot be trusted until it verifies")
    approves, revoked = approvals_of(audit.read(home), version)
    valid, stale, gone, not_allowed = None, [], [], []
    for rec in approves:
        if rec["hash"] in revoked:
            gone.append(rec)
        elif rec.get("content_sha256") != content_sha256 or rec.get("evaluation_id") != evaluation_id:
            stale.append(rec)
        elif rec.get("user") not in policy.approval.approvers:
            not_allowed.append(rec)
        else:
            valid = rec
    return Standing(valid, stale, gone, not_allowed)


def verdict(home: Path, policy: Policy, version: str, content_sha256: str, evaluation_id: str) -> GateVerdict:
    """The ``human_approval`` gate for one candidate."""
    if not policy.approval.required:
        return GateVerdict(True, "approval not required by the policy", {"approval_required": False})
    s = standing(home, policy, version, content_sha256, evaluation_id)
    numbers = {
        "approval_required": True,
        "content_sha256": content_sha256,
        "n_stale_approvals": len(s.stale),
        "n_revoked_approvals": len(s.revoked),
    }
    if s.valid is not None:
        return GateVerdict(
            True,
            f"approved by {s.valid['user']} at {s.valid['time']}: {s.valid.get('note', '')}",
            {
                **numbers,
                "approved_by": s.valid["user"],
                "approved_at": s.valid["time"],
                "approval_hash": s.valid["hash"],
            },
        )
    why = []
    if s.revoked:
        why.append(f"{len(s.revoked)} revoked")
    if s.stale:
        why.append(f"{len(s.stale)} for other content or another evaluation")
    if s.not_allowed:
        why.append(f"{len(s.not_allowed)} by someone the policy does not list")
    extra = f" (approvals that do not count: {', '.join(why)})" if why else ""
    return GateVerdict(
        False,
        f"awaiting approval: run agent-pipeline approve {version} --by NAME --note TEXT (approvers: "
        f"{', '.join(policy.approval.approvers)}) for evaluation {evaluation_id}{extra}",
        numbers,
    )


def candidate_evaluation_id(home: Path, version: str) -> str:
    ev = evaluation.latest_evaluation(home, version, "candidate")
    if ev is None:
        raise ApprovalError(f"version {version} has no candidate evaluation: evaluate it (train_and_promote_job) first")
    return ev.evaluation_id


def approve(
    home: Path,
    store,
    policy: Policy,
    version: str,
    by: str,
    note: str,
    evaluation_id: str | None = None,
) -> dict[str, Any]:
    """Record an approval of ``version`` (its latest candidate evaluation unless given); audited."""
    version = store.resolve(version=version)
    if not note.strip():
        raise ApprovalError("an approval needs a note (--note TEXT): what was reviewed")
    if by not in policy.approval.approvers:
        allowed = ", ".join(policy.approval.approvers) or "nobody (the policy lists no approvers)"
        raise ApprovalError(f"{by!r} may not approve: the policy's approval.approvers are {allowed}")
    evaluation_id = evaluation_id or candidate_evaluation_id(home, version)
    results, _ = gate_standing(store, home, version, evaluation_id)  # registry tag and gate record agree
    other = [g for g in policy.required_gates if g != GATE]
    not_passed = [g for g in other if results.get(g) != "passed"]
    if not_passed:
        raise ApprovalError(
            f"version {version} evaluation {evaluation_id}: gates {not_passed} did not pass "
            f"({ {g: results.get(g, 'not run') for g in not_passed} }); only a candidate whose gates passed can be approved"
        )
    from agent_pipeline.lib.registry.promotion import verify_audit

    check = verify_audit(store, home)
    if not check.ok:
        raise ApprovalError(check.line(home))
    record = audit.append(
        home,
        {
            "action": "approve",
            "model_name": store.model_name,
            "version": version,
            "content_sha256": store.content_hash(version),
            "evaluation_id": evaluation_id,
            "gates": {g: results[g] for g in other},
            "user": by,
            "note": note,
            "time": utc_now(),
        },
    )
    store.set_version_tags(version, {"approved_by": by, "approved_at": record["time"], "approval": record["hash"]})
    return record


def revoke(home: Path, store, version: str, by: str, reason: str) -> dict[str, Any]:
    """Withdraw every standing approval of ``version``; audited. Anyone may revoke (it only blocks)."""
    version = store.resolve(version=version)
    if not reason.strip():
        raise ApprovalError("a revocation needs a reason (--reason TEXT)")
    approves, revoked = approvals_of(audit.read(home), version)
    standing_ = [r for r in approves if r["hash"] not in revoked]
    if not standing_:
        raise ApprovalError(f"version {version} has no standing approval to revoke")
    record = audit.append(
        home,
        {
            "action": "revoke",
            "model_name": store.model_name,
            "version": version,
            "revokes": [r["hash"] for r in standing_],
            "user": by,
            "reason": reason,
            "time": utc_now(),
        },
    )
    store.set_version_tags(version, {"approval": f"revoked by {by} at {record['time']}"})
    return record
