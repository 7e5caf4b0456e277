"""A routing decision as the user sees it and as production records it: one writer for each.

``decision_fields`` is the answer of ``agent-pipeline route --json`` and of ``POST /route``;
``production_record`` is one line of a landing file (the documented record contract,
``monitoring.records.RECORD_COLUMNS``). Standard library only: the CLI's cold start imports it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def decision_fields(decision: dict[str, Any], model_version: str) -> dict[str, Any]:
    """The public fields of a decision (``Router.route(...).to_dict()`` or ``ServingRouter.route``)."""
    return {
        "route": decision["route"],
        "agent": decision["agent"],
        "label": decision["decided_label"],
        "predicted_label": decision["pred_label"],
        "confidence": round(float(decision["confidence"]), 6),
        "fallback": bool(decision["fallback"]),
        "fallback_reason": decision["fallback_reason"] or None,
        "rule": decision["rule"] or None,
        "model_version": str(model_version),
    }


def production_record(
    *,
    timestamp: datetime,
    request_id: str,
    text: str,
    decision: dict[str, Any],
    latency_ms: float,
    model_version: str,
) -> dict[str, Any]:
    """One landing-file record, in ``RECORD_COLUMNS`` order. ``timestamp`` must be timezone-aware;
    ``text`` is stored as given, so the caller passes it redacted."""
    if timestamp.tzinfo is None:
        raise ValueError("production_record: timestamp must carry a UTC offset")
    return {
        "timestamp": timestamp.isoformat(),
        "request_id": request_id,
        "text": text,
        "route": str(decision["route"]),
        "agent": str(decision["agent"]),
        "label": str(decision["decided_label"]),
        "confidence": float(decision["confidence"]),
        "fallback": bool(decision["fallback"]),
        "latency_ms": round(float(latency_ms), 4),
        "model_version": str(model_version),
        "reviewed_label": None,
    }
