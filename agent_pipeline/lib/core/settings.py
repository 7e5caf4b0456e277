"""Where state lives and where inputs come from: one place, no Dagster import.

All generated state lives under ``AGENT_PIPELINE_HOME`` (default ``.agent_pipeline/`` at the
repository root). Pointing it at an empty folder gives a fresh, independent installation:
the Dagster instance (``DAGSTER_HOME`` defaults to ``$AGENT_PIPELINE_HOME/dagster``), the
MLflow tracking store and registry (SQLite, unless ``MLFLOW_TRACKING_URI`` is set), evaluation
results, drift reports, traffic landing files and the promotion audit log.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2]
PROJECT_ROOT = PACKAGE_DIR.parent

# Committed inputs (overridable by the environment variables named in the README).
DEFAULT_TRAIN_DATA = PROJECT_ROOT / "data" / "clinc150" / "train.csv"
DEFAULT_VALIDATION_DATA = PROJECT_ROOT / "data" / "clinc150" / "val.csv"
DEFAULT_GOLDEN_DATA = PROJECT_ROOT / "data" / "golden.csv"
DEFAULT_SAFETY_PROBES = PROJECT_ROOT / "data" / "safety_probes.csv"
DEFAULT_TRAFFIC_POOL = PROJECT_ROOT / "data" / "clinc150" / "traffic_pool.csv"
DEFAULT_AGENTS_CONFIG = PROJECT_ROOT / "config" / "agents.yaml"
DEFAULT_ROUTER_CONFIG = PROJECT_ROOT / "config" / "router.yaml"
DEFAULT_GATES_CONFIG = PROJECT_ROOT / "config" / "gates.yaml"
DEFAULT_MODEL_NAME = "agent-router"
DEFAULT_EXPERIMENT = "agent-router"


def pipeline_home() -> Path:
    """The state folder: ``$AGENT_PIPELINE_HOME`` (relative paths are relative to the repository)
    or ``<repo>/.agent_pipeline``, so every process agrees whatever its working directory."""
    return (PROJECT_ROOT / (os.environ.get("AGENT_PIPELINE_HOME") or ".agent_pipeline")).resolve()


def dagster_home(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "dagster"


def mlflow_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "mlflow"


def default_tracking_uri(home: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store inside the state folder."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{mlflow_dir(home) / 'mlflow.db'}"


def evaluations_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "evaluations"


def baseline_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "baseline"


def audit_log_path(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "registry" / "promotions.jsonl"


def landing_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "traffic" / "landing"


def traffic_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "traffic"


def inference_log_dir(home: Path | None = None) -> Path:
    """Validated production records, one Parquet file per day (the ``inference_log`` partitions)."""
    return traffic_dir(home) / "log"


def reports_dir(home: Path | None = None) -> Path:
    return (home or pipeline_home()) / "reports"


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for printing a Postgres tracking URI)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
