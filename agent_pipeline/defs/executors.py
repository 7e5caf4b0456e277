"""Which executor runs the jobs' steps: chosen by configuration, never by editing code.

``AGENT_PIPELINE_EXECUTOR`` selects it for every job of the code location:

* ``in_process`` (default): every step in the run's process. The steps are CPU-bound and the
  graph is small, and a step subprocess would re-import the ML stack (DEPS.md gotcha 5).
* ``multiprocess``: Dagster's default, one subprocess per step (``AGENT_PIPELINE_MAX_CONCURRENT``
  at once, default 2).
* ``celery``: ``dagster-celery`` with Redis as broker (``AGENT_PIPELINE_CELERY_BROKER``, default
  ``redis://127.0.0.1:6379/0``; results on ``AGENT_PIPELINE_CELERY_BACKEND``, default the
  broker). Steps go to the workers started with ``deploy/celery.yaml``; the instance must be
  persistent (``deploy/dagster.yaml``: Postgres) and ``AGENT_PIPELINE_HOME`` shared by all.
* ``k8s``: ``dagster-k8s``'s ``k8s_job_executor`` (install ``dagster-k8s`` at the pinned
  family version; see deploy/README.md).

A run's own config can still override the executor's settings (``execution: config:``).
"""

from __future__ import annotations

import os

import dagster as dg

VARIABLE = "AGENT_PIPELINE_EXECUTOR"
CHOICES = ("in_process", "multiprocess", "celery", "k8s")
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def selected_executor(value: str | None = None) -> dg.ExecutorDefinition:
    kind = (value if value is not None else os.environ.get(VARIABLE, "")).strip().lower().replace("-", "_")
    kind = kind or "in_process"
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor.configured(
            {"max_concurrent": int(os.environ.get("AGENT_PIPELINE_MAX_CONCURRENT", "2"))}, name="multiprocess"
        )
    if kind == "celery":
        from dagster_celery import celery_executor

        broker = os.environ.get("AGENT_PIPELINE_CELERY_BROKER") or DEFAULT_BROKER
        backend = os.environ.get("AGENT_PIPELINE_CELERY_BACKEND") or broker
        return celery_executor.configured({"broker": broker, "backend": backend}, name="celery")
    if kind == "k8s":
        try:
            from dagster_k8s import k8s_job_executor  # type: ignore[import-not-found]
        except ImportError as exc:
            raise dg.DagsterInvariantViolationError(
                f"{VARIABLE}=k8s needs the dagster-k8s package (pip install dagster-k8s==0.29.27, "
                "the version of this project's dagster family); see deploy/README.md"
            ) from exc
        return k8s_job_executor
    raise dg.DagsterInvariantViolationError(
        f"{VARIABLE}={kind!r} is not an executor; use one of {', '.join(CHOICES)} (unset = in_process)"
    )
