"""``@traced``: one OpenTelemetry span per asset step, with the run id and model version.

Put it under ``@dg.asset``. The span (``lib/core/telemetry.step_span``) carries the asset key,
the Dagster run id (and the run's UI URL), the partition, and the model version the step
reports in its metadata (``model_version``); log lines of the ``agent_pipeline`` loggers inside
the step carry the same run id and model version. Tracing is off unless the OTEL environment
turns it on (see ``lib/core/telemetry.py``), and then costs one span per step.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import dagster as dg

from agent_pipeline.lib.core import telemetry


def _step(context: dg.AssetExecutionContext) -> str:
    keys = sorted(k.to_user_string() for k in context.selected_asset_keys)
    return ",".join(keys) or context.op_def.name


def _model_version(event: Any) -> str | None:
    md = getattr(event, "metadata", None) or {}
    value = md.get("model_version") if isinstance(md, dict) else None
    value = getattr(value, "value", value)
    return None if value in (None, "") else str(value)


def _span(context: dg.AssetExecutionContext):
    return telemetry.step_span(
        _step(context), context.run.run_id, partition_key=context.partition_key if context.has_partition_key else None
    )


def _current() -> dg.AssetExecutionContext | None:
    """The step's context; None when the asset function is called directly (a unit test)."""
    try:
        return dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return None


def traced(fn):
    """Wrap an asset's compute function (plain or generator) in a pipeline-step span."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            context = _current()
            if context is None:
                yield from fn(*args, **kwargs)
                return
            with _span(context) as span:
                for event in fn(*args, **kwargs):
                    telemetry.set_step_model_version(span, _model_version(event))
                    yield event

        return generator

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        context = _current()
        if context is None:
            return fn(*args, **kwargs)
        with _span(context) as span:
            out = fn(*args, **kwargs)
            telemetry.set_step_model_version(span, _model_version(out))
            return out

    return plain
