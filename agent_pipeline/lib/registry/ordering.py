"""Promotion order: a champion is never replaced by a version trained before it, unless asked.

MLflow numbers a registered model's versions in registration order, and a version is
registered right after its training, so a lower number is an older model. Two retrainings that
run at once both pass their gates; whichever promotes second must not put the older model back
over the newer one.
"""

from __future__ import annotations

from agent_pipeline.lib.core.errors import RegistryError

ALLOW_OLDER_TAG = "agent_pipeline/allow_older_candidate"


def refuse_older_candidate(candidate: str, champion: str | None, *, allow_older: bool = False) -> None:
    """Raise ``RegistryError`` when ``candidate`` was trained before the current ``champion``.

    Re-promoting the champion itself, a first promotion (no champion) and ``allow_older=True``
    (an operator who means it, e.g. the run tag ``agent_pipeline/allow_older_candidate=true``)
    pass.
    """
    if champion is None or allow_older:
        return
    try:
        older = int(candidate) < int(champion)
    except ValueError as exc:
        raise RegistryError(
            f"cannot order model versions {candidate!r} and {champion!r}: MLflow versions are integers"
        ) from exc
    if older:
        raise RegistryError(
            f"version {candidate} was trained before the current champion {champion}: not promoted (the champion "
            f"is unchanged). To promote it anyway, re-run champion_model with the run tag {ALLOW_OLDER_TAG}=true"
        )
