"""Where state lives and where inputs come from: one place, no Dagster import, no environment reads.

All generated state lives under the state folder ``home`` (``AGENT_PIPELINE_HOME``, default
``.agent_pipeline``; a relative path is relative to the current directory). Pointing it at an
empty folder gives a fresh, independent installation: the Dagster instance (``DAGSTER_HOME``
defaults to ``<home>/dagster``), the MLflow tracking store and registry (SQLite, unless a
tracking URI is given), evaluation results, drift reports, traffic landing files and the
promotion audit log.

``Settings`` is the typed, validated set of every setting. It is built once per process by the
edge that owns the environment: ``Settings.from_env(os.environ)`` in the CLI, the demo and the
bench; the Dagster resources (``defs/resources.py``) bind the same variables with ``dg.EnvVar``.
lib/ receives values as arguments and never reads ``os.environ`` (tested).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from agent_pipeline.lib.core.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[2]
PROJECT_ROOT = PACKAGE_DIR.parent

# Committed inputs (overridable by the environment variables named in ``ENV``).
DEFAULT_TRAIN_DATA = PROJECT_ROOT / "data" / "clinc150" / "train.csv"
DEFAULT_VALIDATION_DATA = PROJECT_ROOT / "data" / "clinc150" / "val.csv"
DEFAULT_GOLDEN_DATA = PROJECT_ROOT / "data" / "golden.csv"
DEFAULT_SAFETY_PROBES = PROJECT_ROOT / "data" / "safety_probes.csv"
# The sealed holdout: read only by the promotion gate generalizes_to_holdout (lib/evaluation/holdout.py).
DEFAULT_HOLDOUT_DATA = PROJECT_ROOT / "data" / "clinc150" / "holdout.csv"
DEFAULT_TRAFFIC_POOL = PROJECT_ROOT / "data" / "clinc150" / "traffic_pool.csv"
DEFAULT_AGENTS_CONFIG = PROJECT_ROOT / "config" / "agents.yaml"
DEFAULT_ROUTER_CONFIG = PROJECT_ROOT / "config" / "router.yaml"
DEFAULT_POLICY_CONFIG = PROJECT_ROOT / "config" / "policy.yaml"
DEFAULT_MODEL_NAME = "agent-router"
DEFAULT_EXPERIMENT = "agent-router"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"


DEFAULT_HOME = ".agent_pipeline"


def resolve_home(value: str | os.PathLike | None) -> Path:
    """The state folder named by ``value`` (``AGENT_PIPELINE_HOME``), absolute.

    Empty: ``.agent_pipeline``. A relative path is relative to the current working directory,
    like any other path on a command line (``make`` passes an absolute one). The one rule every
    process applies: the Dagster resources, the CLI, the demo and ``_home`` (``DAGSTER_HOME``).
    """
    return Path(value or DEFAULT_HOME).expanduser().resolve()


def dagster_home(home: Path) -> Path:
    return Path(home) / "dagster"


def mlflow_dir(home: Path) -> Path:
    return Path(home) / "mlflow"


def default_tracking_uri(home: Path) -> str:
    """The MLflow store used when no tracking URI is configured: SQLite inside the state folder."""
    return f"sqlite:///{mlflow_dir(home) / 'mlflow.db'}"


def evaluations_dir(home: Path) -> Path:
    return Path(home) / "evaluations"


def baseline_dir(home: Path) -> Path:
    return Path(home) / "baseline"


def audit_log_path(home: Path) -> Path:
    return Path(home) / "registry" / "audit.jsonl"


def landing_dir(home: Path) -> Path:
    return Path(home) / "traffic" / "landing"


def traffic_dir(home: Path) -> Path:
    return Path(home) / "traffic"


def inference_log_dir(home: Path) -> Path:
    """Validated production records, one Parquet file per day (the ``inference_log`` partitions)."""
    return traffic_dir(home) / "log"


def reports_dir(home: Path) -> Path:
    return Path(home) / "reports"


# Every setting's environment variable: the one table the CLI, the demo, the resources and
# ``.env.example`` agree on.
ENV = {
    "home": "AGENT_PIPELINE_HOME",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "model_name": "AGENT_PIPELINE_MODEL_NAME",
    "mlflow_ui_url": "AGENT_PIPELINE_MLFLOW_UI_URL",
    "train_data": "AGENT_PIPELINE_TRAIN_DATA",
    "validation_data": "AGENT_PIPELINE_VALIDATION_DATA",
    "golden_data": "AGENT_PIPELINE_GOLDEN_DATA",
    "agents_config": "AGENT_PIPELINE_AGENTS_CONFIG",
    "router_config": "AGENT_PIPELINE_ROUTER_CONFIG",
    "policy_config": "AGENT_PIPELINE_POLICY_CONFIG",
    "traffic_pool": "AGENT_PIPELINE_TRAFFIC_POOL",
    "alert_webhook_url": "AGENT_PIPELINE_ALERT_WEBHOOK_URL",
    "user": "AGENT_PIPELINE_USER",
    "encoder_threads": "AGENT_PIPELINE_ENCODER_THREADS",
}


@dataclass(frozen=True)
class Settings:
    """Every setting, typed and validated once (a plain dataclass: the CLI's cold start stays
    free of pydantic). Paths are absolute; ``tracking_uri`` "" means SQLite in ``home``."""

    home: Path
    tracking_uri: str = ""
    model_name: str = DEFAULT_MODEL_NAME
    mlflow_ui_url: str = DEFAULT_MLFLOW_UI_URL
    train_data: Path = DEFAULT_TRAIN_DATA
    validation_data: Path = DEFAULT_VALIDATION_DATA
    golden_data: Path = DEFAULT_GOLDEN_DATA
    agents_config: Path = DEFAULT_AGENTS_CONFIG
    router_config: Path = DEFAULT_ROUTER_CONFIG
    policy_config: Path = DEFAULT_POLICY_CONFIG
    traffic_pool: Path = DEFAULT_TRAFFIC_POOL
    alert_webhook_url: str = ""
    user: str = ""
    encoder_threads: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "Path":
                object.__setattr__(self, f.name, Path(value).expanduser().resolve())
            elif f.type == "str" and not isinstance(value, str):
                raise ConfigError(f"{ENV[f.name]}: expected text, got {value!r}")
        if self.encoder_threads is not None and (
            not isinstance(self.encoder_threads, int)
            or isinstance(self.encoder_threads, bool)
            or self.encoder_threads < 1
        ):
            raise ConfigError(f"{ENV['encoder_threads']}: must be a whole number >= 1, got {self.encoder_threads!r}")
        if not self.model_name.strip():
            raise ConfigError(f"{ENV['model_name']}: must not be empty")

    @property
    def tracking(self) -> str:
        """The MLflow tracking (and registry) URI in effect."""
        return self.tracking_uri or default_tracking_uri(self.home)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides) -> Settings:
        """The settings named by ``env`` (``os.environ``, passed in); unset or empty = the default.

        ``overrides`` (e.g. a command-line ``--model-name``) win over the environment. Errors
        name the variable and the value.
        """
        values: dict = {"home": resolve_home(env.get(ENV["home"]))}
        for name, var in ENV.items():
            raw = env.get(var, "")
            if name == "home" or raw == "":
                continue
            if name == "encoder_threads":
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{var}={raw!r}: must be a whole number >= 1") from None
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v not in (None, "")})
        return cls(**values)


def redact_uri(uri: str) -> str:
    """``uri`` with its credentials replaced by ``***``: the one rule, ``lib/core/secrets.redact_uri``."""
    from agent_pipeline.lib.core.secrets import redact_uri as _redact

    return _redact(uri)
