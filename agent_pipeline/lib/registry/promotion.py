"""Changing the champion as one transaction: promotion, rollback, and recovery from a crash.

A champion change moves five things: the ``champion`` alias (and ``previous-champion``), the
serving bundle, the drift reference, the benchmark baseline (bootstrapped by the first
promotion) and the audit record. They move together or not at all:

1. prepare what can be prepared without changing anything visible (the new drift reference is
   captured as ``reference-v<N>.parquet``, not yet current);
2. write the intent ``registry/transaction.json`` (atomically): what moves, from what, to what;
3. the moves, each idempotent: alias (``champion`` first, then ``previous-champion``), serving
   bundle, drift reference, baseline bootstrap;
4. commit: the audit record (carrying the transaction id), then the intent is removed.

Anything found half-done (a process killed, a machine lost) is finished by ``recover``, which
every promotion and rollback calls first and ``agent-pipeline doctor --repair`` calls on demand:
if the alias had not moved yet, the change is rolled back (nothing visible had changed; the
audit gets a ``<action>-rolled-back`` record); if it had, it is rolled forward (the remaining
moves are redone and the commit record says ``"recovery": "rolled-forward"``); if the commit
record was already written, only the intent is cleared. A lock serializes champion changes.

Test hook: ``change_champion(..., pause_after=<step>)`` makes the process write
``registry/paused-after-<step>`` and sleep after that step, so a test can SIGKILL it there.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.core.files import atomic_write
from agent_pipeline.lib.registry import audit
from agent_pipeline.lib.registry.models import CHAMPION, PREVIOUS_CHAMPION, current_user, utc_now

STEPS = ("intent", "alias", "serving_bundle", "drift_reference", "baseline", "audit", "done")


def intent_path(home: Path) -> Path:
    return Path(home) / "registry" / "transaction.json"


def _pause_point(home: Path, step: str, pause_after: str | None) -> None:
    if pause_after == step:
        marker = Path(home) / "registry" / f"paused-after-{step}"
        marker.write_text(str(os.getpid()))
        time.sleep(3600)  # the test kills us here (SIGKILL from outside)


@contextmanager
def champion_lock(home: Path) -> Iterator[None]:
    """One champion change at a time (across processes); released by the kernel if we die."""
    path = Path(home) / "registry" / "champion.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_intent(home: Path, txn: dict[str, Any]) -> None:
    atomic_write(intent_path(home), json.dumps(txn, sort_keys=True, default=str))


def read_intent(home: Path) -> dict[str, Any] | None:
    path = intent_path(home)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _moves(store, home: Path, txn: dict[str, Any]) -> None:
    from agent_pipeline.lib.evaluation import runs as evaluation
    from agent_pipeline.lib.monitoring import records as monitoring

    version, previous = txn["version"], txn["previous_champion"]
    store.client.set_registered_model_alias(store.model_name, CHAMPION, version)
    if previous is not None and previous != version:
        store.client.set_registered_model_alias(store.model_name, PREVIOUS_CHAMPION, previous)
    if txn["action"] == "rollback" and previous is not None:
        store.set_version_tags(previous, {"rolled_back_at": txn["time"], "rolled_back_by": txn["user"]})
    _pause_point(home, "alias", txn.get("pause_after"))
    store.refresh_serving_bundle(version)
    _pause_point(home, "serving_bundle", txn.get("pause_after"))
    txn["drift_reference_restored"] = monitoring.restore_reference(home, version)
    _pause_point(home, "drift_reference", txn.get("pause_after"))
    bootstrap = txn.get("bootstrap_evaluation")
    if bootstrap and evaluation.load_baseline(home) is None:
        ev = evaluation.load(evaluation.evaluation_dir(home, version, bootstrap))
        info = evaluation.bless(
            home, ev, blessed_by="bootstrap (first promotion)", blessed_at=txn["time"], reason="first promotion"
        )
        txn["baseline_bootstrapped"] = {"version": info["version"], "evaluation_id": info["evaluation_id"]}
    _pause_point(home, "baseline", txn.get("pause_after"))


def _commit(store, home: Path, txn: dict[str, Any], recovery: str = "") -> dict[str, Any]:
    record = {
        "action": txn["action"],
        "model_name": store.model_name,
        "version": txn["version"],
        "previous_champion": txn["previous_champion"],
        "time": txn["time"],
        "user": txn["user"],
        "txn": txn["txn"],
        **txn.get("details", {}),
        **({"baseline_bootstrapped": txn["baseline_bootstrapped"]} if txn.get("baseline_bootstrapped") else {}),
        **(
            {"recovery": recovery, "recovered_at": utc_now(), "recovered_by": current_user(store.user)}
            if recovery
            else {}
        ),
    }
    record = audit.append(home, record)
    _pause_point(home, "audit", txn.get("pause_after"))
    tag = "promoted" if txn["action"] == "promote" else "rolled_back_to"
    store.set_version_tags(txn["version"], {f"{tag}_at": txn["time"], f"{tag}_by": txn["user"]})
    store.client.set_registered_model_tag(store.model_name, AUDIT_ANCHOR_TAG, f"{record['seq']}:{record['hash']}")
    intent_path(home).unlink(missing_ok=True)
    _pause_point(home, "done", txn.get("pause_after"))
    return record


AUDIT_ANCHOR_TAG = "audit.head"  # the registry's copy of the audit head, written at every champion change


def audit_anchor(store) -> str | None:
    """The registry's copy of the audit head (None before the first champion change)."""
    from mlflow.exceptions import MlflowException

    try:
        return store.client.get_registered_model(store.model_name).tags.get(AUDIT_ANCHOR_TAG)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def verify_audit(store, home: Path) -> audit.Verification:
    """``audit.verify`` against the state folder's head and the registry's copy of it."""
    return audit.verify(home, anchor=audit_anchor(store))


def recover(store, home: Path) -> dict[str, Any] | None:
    """Finish or undo a half-done champion change; returns what was done (None: nothing pending).

    Call with the champion lock held (``change_champion`` and ``doctor`` do).
    """
    txn = read_intent(home)
    if txn is None:
        return None
    if any(r.get("txn") == txn["txn"] and r.get("action") == txn["action"] for r in audit.read(home)):
        intent_path(home).unlink(missing_ok=True)
        return {"outcome": "already committed", "txn": txn["txn"], "version": txn["version"]}
    if store.alias_version(CHAMPION) == txn["version"]:
        _moves(store, home, txn)
        record = _commit(store, home, txn, recovery="rolled-forward")
        return {"outcome": "rolled forward", "txn": txn["txn"], "version": txn["version"], "record": record}
    # The alias is the first move: it did not move, so nothing visible changed. Re-assert the
    # previous state anyway (serving bundle and drift reference of the standing champion).
    from agent_pipeline.lib.monitoring import records as monitoring

    standing = store.alias_version(CHAMPION)
    if standing is not None:
        store.refresh_serving_bundle(standing)
        monitoring.restore_reference(home, standing)
    record = audit.append(
        home,
        {
            "action": f"{txn['action']}-rolled-back",
            "model_name": store.model_name,
            "version": txn["version"],
            "previous_champion": txn["previous_champion"],
            "champion": standing,
            "txn": txn["txn"],
            "reason": "interrupted before the champion alias moved; nothing was changed",
            "time": utc_now(),
            "user": current_user(store.user),
        },
    )
    intent_path(home).unlink(missing_ok=True)
    return {"outcome": "rolled back", "txn": txn["txn"], "version": txn["version"], "record": record}


def change_champion(
    store,
    home: Path,
    *,
    action: str,
    version: str,
    details: dict[str, Any],
    bootstrap_evaluation: str | None = None,
    user: str | None = None,
    pause_after: str | None = None,
    precondition: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Make ``version`` the champion as one transaction; returns (commit record, recovery done first).

    ``precondition`` runs under the champion lock, after recovery and before anything moves; it
    refuses by raising (``RegistryError``). ``champion_model`` re-checks its promotion verdict
    there, so an approval revoked or a rollback committed after its first check is not missed.
    """
    check = verify_audit(store, home)
    if not check.ok:
        raise RegistryError(f"{check.line(home)}; champion changes are refused until the audit log verifies")
    with champion_lock(home):
        recovered = recover(store, home)
        if precondition is not None:
            precondition()
        previous = store.alias_version(CHAMPION)
        txn = {
            "txn": uuid.uuid4().hex,
            "action": action,
            "version": str(version),
            "previous_champion": previous,
            "bootstrap_evaluation": bootstrap_evaluation if previous is None else None,
            "details": details,
            "time": utc_now(),
            "user": user or current_user(store.user),
        }
        _write_intent(home, txn)
        txn["pause_after"] = pause_after  # test hook only: not part of the intent on disk
        _pause_point(home, "intent", pause_after)
        _moves(store, home, txn)
        return _commit(store, home, txn), recovered


def was_champion(home: Path, version: str) -> bool:
    """True when a committed promotion or rollback made ``version`` the champion."""
    return any(
        r.get("action") in ("promote", "rollback") and str(r.get("version")) == str(version) for r in audit.read(home)
    )


def committed_champion(home: Path) -> str | None:
    """The version the audit log's last committed promotion or rollback made the champion."""
    last = None
    for record in audit.read(home):
        if record.get("action") in ("promote", "rollback"):
            last = str(record.get("version"))
    return last


def rolled_back_from(home: Path, version: str) -> dict[str, Any] | None:
    """The committed rollback that took the champion away from ``version``, unless a later
    promotion made it champion again through the gates; from the audit log (not the registry
    tag ``rolled_back_at``, which anyone with MLflow write access can delete)."""
    mark = None
    for record in audit.read(home):
        action, target = record.get("action"), str(record.get("version"))
        if action == "rollback" and str(record.get("previous_champion")) == str(version):
            mark = record
        elif action == "promote" and target == str(version):
            mark = None
    return mark


def rollback(store, home: Path, to_version: str | None = None, reason: str = "", user: str | None = None):
    """Champion back to ``previous-champion`` (or ``to_version``): only to a version that was
    champion and was not itself rolled back (a second rollback does not undo the first)."""
    current = store.alias_version(CHAMPION)
    target = store.resolve(version=to_version) if to_version else store.alias_version(PREVIOUS_CHAMPION)
    if target is None:
        raise RegistryError(f"model '{store.model_name}' has no previous champion to roll back to")
    if target == current:
        raise RegistryError(f"version {target} is already the champion")
    if not was_champion(home, target):
        raise RegistryError(
            f"version {target} was never the champion (no promotion record in {audit.log_path(home)}): rollback only "
            "returns to a former champion; promote a new version through the gates instead"
        )
    undone = rolled_back_from(home, target)
    if undone is not None:
        raise RegistryError(
            f"version {target} was rolled back at {undone.get('time')} (audit #{undone.get('seq')}: "
            f"{undone.get('reason', '')}); a rollback does not bring it back, nor does a promotion: train a new "
            "candidate (train_and_promote_job), which the gates judge afresh"
        )
    if not reason.strip():
        raise RegistryError("a rollback needs a reason (--reason TEXT)")
    record, _ = change_champion(store, home, action="rollback", version=target, details={"reason": reason}, user=user)
    return record


def doctor(store, home: Path, repair: bool = False) -> list[tuple[str, str]]:
    """Consistency of the champion's state: (status, line) pairs; status is ok, fixed or problem."""
    from agent_pipeline.lib.evaluation import runs as evaluation
    from agent_pipeline.lib.monitoring import records as monitoring

    out: list[tuple[str, str]] = []
    check = verify_audit(store, home)
    out.append(("ok" if check.ok else "problem", check.line(home)))
    txn = read_intent(home)
    if txn is not None:
        if repair and check.ok:
            with champion_lock(home):
                done = recover(store, home)
            out.append(
                (
                    "fixed",
                    f"half-done {txn['action']} of v{txn['version']} (txn {txn['txn'][:8]}): {done['outcome']}"
                    if done
                    else "nothing pending",
                )
            )
        else:
            out.append(
                (
                    "problem",
                    f"half-done {txn['action']} of v{txn['version']} (txn {txn['txn'][:8]}) since {txn['time']}: run agent-pipeline doctor --repair",
                )
            )
    champion = store.alias_version(CHAMPION)
    if champion is None:
        out.append(("ok", "no champion yet"))
        return out
    committed = committed_champion(home)
    pending = read_intent(home)  # a half-done change (reported above) may have moved the alias already
    if committed != champion and not (pending is not None and str(pending.get("version")) == champion):
        # Nothing is re-exported or restored for a champion the audit log does not know.
        where = f"made v{committed} the champion" if committed else "made no version champion"
        out.append(
            (
                "problem",
                f"champion alias is v{champion} but the audit log's last committed change {where}: the alias was "
                "moved outside the pipeline; move it back (agent-pipeline rollback --to VERSION --reason TEXT) or "
                "promote through the gates; nothing repaired",
            )
        )
        return out
    served = serving_version(home)
    if served is not None and served != champion:
        if repair:
            store.refresh_serving_bundle(champion)
            out.append(("fixed", f"serving bundle was v{served}, re-exported for champion v{champion}"))
        else:
            out.append(
                (
                    "problem",
                    f"serving bundle is v{served} but the champion is v{champion}: run agent-pipeline doctor --repair",
                )
            )
    else:
        out.append(
            (
                "ok",
                f"serving bundle is the champion v{champion}"
                if served
                else "no serving bundle (the tier routes through MLflow)",
            )
        )
    ref = reference_version(home)
    if ref != champion:
        if repair and monitoring.restore_reference(home, champion):
            out.append(("fixed", f"drift reference was v{ref}, restored the one captured for v{champion}"))
        else:
            out.append(
                (
                    "problem",
                    f"drift reference is v{ref} but the champion is v{champion}: run agent-pipeline doctor --repair (a promotion captures it)",
                )
            )
    else:
        out.append(("ok", f"drift reference is the champion's (v{champion})"))
    if evaluation.load_baseline(home) is None:
        out.append(
            (
                "problem",
                f"no baseline while v{champion} is the champion: agent-pipeline bless --version {champion} --by NAME --reason TEXT",
            )
        )
    else:
        out.append(("ok", "baseline present"))
    return out


def serving_version(home: Path) -> str | None:
    """The version in the serving bundle; None without one (a tier that routes through MLflow)."""
    from agent_pipeline.lib.serving import bundle as serving

    path = serving.bundle_path(home)
    if not path.is_file():
        return None
    try:
        return str(serving.load(path).version)
    except Exception:  # noqa: BLE001 - a damaged bundle is "not the champion's"
        return "unreadable"


def reference_version(home: Path) -> str | None:
    import pandas as pd

    from agent_pipeline.lib.monitoring import records as monitoring

    path = monitoring.reference_path(home)
    if not path.is_file():
        return None
    col = pd.read_parquet(path, columns=["model_version"])["model_version"]
    return str(col.iloc[0]) if len(col) else None


def state_summary(home: Path) -> dict[str, Any]:
    """What the doctor and the kill tests compare: pending transaction, served and reference versions."""
    return {
        "pending": read_intent(home),
        "serving": serving_version(home),
        "reference": reference_version(home),
        "baseline": (settings.baseline_dir(home) / "current.json").is_file(),
    }


def gated_evaluation(store, home: Path, policy, version: str) -> str | None:
    """The newest candidate evaluation of ``version`` on which every required gate (approval aside)
    passed, by both witnesses (``gate_standing``)."""
    from agent_pipeline.lib.evaluation import runs as evaluation
    from agent_pipeline.lib.evaluation.gates import gate_standing

    root = settings.evaluations_dir(home) / f"v{version}"
    needed = [g for g in policy.required_gates if g != "human_approval"]
    for folder in sorted(root.glob("*-candidate-*"), reverse=True) if root.is_dir() else []:
        if not (folder / "metrics.json").is_file():
            continue
        standing, _ = gate_standing(store, home, version, folder.name)
        if all(standing.get(g) == "passed" for g in needed):
            return evaluation.load(folder).evaluation_id
    return None


def bless_version(store, home: Path, policy, version: str, by: str, reason: str) -> dict[str, Any]:
    """Make ``version``'s newest evaluation the baseline, if a candidate evaluation of it passed its gates; audited."""
    from agent_pipeline.lib.evaluation import runs as evaluation

    version = store.resolve(version=version)
    vetted = gated_evaluation(store, home, policy, version)
    if vetted is None:
        raise RegistryError(
            f"version {version} has no candidate evaluation on which the required gates "
            f"({', '.join(g for g in policy.required_gates if g != 'human_approval')}) passed: only a version that "
            "passed its gates can become the baseline"
        )
    check = verify_audit(store, home)
    if not check.ok:
        raise RegistryError(f"{check.line(home)}; blessing is refused until the audit log verifies")
    info = evaluation.bless_latest(home, version, by, reason)
    audit.append(
        home,
        {
            "action": "bless",
            "model_name": store.model_name,
            "version": version,
            "evaluation_id": info["evaluation_id"],
            "gated_evaluation_id": vetted,
            "fingerprint": info["fingerprint"],
            "dataset_versions": info["dataset_versions"],
            "user": info["blessed_by"],
            "reason": reason,
            "time": info["blessed_at"],
        },
    )
    return info
