"""The promotion verdict: may this evaluation of a version make it the champion?

``champion_model`` (and nothing else) asks it before the champion changes
(``lib/registry/promotion.py`` then moves alias, bundle, reference, baseline and audit together).
Fail closed: a required gate without an agreed verdict is "not run", a failed or disagreeing one
blocks, a rolled-back version is refused outright, and the human approval is judged live on the
version's content hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.evaluation.gates import gate_standing
from agent_pipeline.lib.registry import approvals
from agent_pipeline.lib.registry.promotion import rolled_back_from


@dataclass(frozen=True)
class PromotionVerdict:
    """Whether one evaluation of ``version`` may make it the champion under the policy."""

    version: str
    evaluation_id: str
    required: list[str]
    results: dict[str, str]  # gate -> "passed"/"failed" (gate_standing, human_approval judged live)
    missing: list[str]  # required gates without an agreed verdict: not run
    failed: list[str]
    disagreeing: list[str]  # registry tag and gate record differ
    content_sha256: str
    approval_note: str = ""

    @property
    def passed(self) -> bool:
        return not (self.missing or self.failed)

    def refusal(self) -> str:
        """One line: what failed or did not run, for which evaluation, and that nothing changed."""
        extra = f" ({self.approval_note})" if "human_approval" in self.failed and self.approval_note else ""
        if self.disagreeing:
            extra += (
                f"; the registry's gate tags and the gate records of the evaluation disagree on "
                f"{', '.join(self.disagreeing)}: re-run the evaluation (agent-pipeline doctor shows the audit)"
            )
        return (
            f"version {self.version} not promoted: gates failed {self.failed or '[]'}, not run {self.missing or '[]'} "
            f"for evaluation {self.evaluation_id} (required by the policy: {', '.join(self.required)}){extra}; "
            "the champion is unchanged"
        )


def promotion_verdict(store, home: Path, policy, version: str, evaluation_id: str) -> PromotionVerdict:
    """Judge one evaluation of ``version`` against the policy's required gates (fail closed).

    A rolled-back version is refused outright (``RegistryError``, from the audit log or the
    registry tag): its fix is a new candidate. Gates come from ``gate_standing`` (registry and gate
    record must agree); ``human_approval`` is judged live on the version's content hash.
    """
    version = str(version)
    undone = rolled_back_from(home, version)  # the audit log's word; the registry tag is a convenience copy
    rolled_back = store.version_info(version)["tags"].get("rolled_back_at") or (undone or {}).get("time")
    if rolled_back:
        raise RegistryError(
            f"version {version} was rolled back at {rolled_back}: a rolled-back version does not come back; train a "
            "new candidate (train_and_promote_job), which the gates judge afresh; the champion is unchanged"
        )
    required = list(policy.required_gates)
    results, disagreeing = gate_standing(store, home, version, evaluation_id)
    content = store.content_hash(version)
    note = ""
    if approvals.GATE in required:
        live = approvals.verdict(home, policy, version, content, evaluation_id)
        results[approvals.GATE] = "passed" if live.passed else "failed"
        note = live.description
    return PromotionVerdict(
        version=version,
        evaluation_id=evaluation_id,
        required=required,
        results=results,
        missing=[g for g in required if g not in results],
        failed=[g for g in required if g in results and results[g] != "passed"],
        disagreeing=disagreeing,
        content_sha256=content,
        approval_note=note,
    )
