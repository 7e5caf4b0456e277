"""Resources: where data comes from, where state goes, MLflow, the promotion policy, alerts.

Each setting is bound to an environment variable when that variable is set (the UI then shows
the binding) and otherwise to a default that works offline on a fresh checkout. Every variable
is listed in ``.env.example`` and the README.
"""

import json
import logging
import os
import urllib.request
from pathlib import Path

import dagster as dg

from agent_pipeline.defs.executors import selected_executor
from agent_pipeline.defs.storage import RunScopedIOManager
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.policy import Policy, load_policy
from agent_pipeline.lib.router.agents import AgentRegistry, load_agent_registry, load_yaml
from agent_pipeline.lib.router.guard import Guard, guard_from_config
from agent_pipeline.lib.router.model import Rule, TrainSettings, rules_from_config


def env_or(name: str, default: str | int | float) -> dg.EnvVar | str | int | float:
    """Bind to ``$name`` when it is set, else use ``default`` (dg.EnvVar has no default)."""
    return dg.EnvVar(name) if os.environ.get(name) else default


class StateFolder(dg.ConfigurableResource):
    """The folder that holds all generated state (``$AGENT_PIPELINE_HOME``)."""

    home: str = ""

    @property
    def path(self) -> Path:
        """The folder, absolute (a relative ``home`` is relative to the current directory)."""
        return settings.resolve_home(self.home)


class RouterFiles(dg.ConfigurableResource):
    """Input datasets and router configuration files."""

    train_path: str = str(settings.DEFAULT_TRAIN_DATA)
    validation_path: str = str(settings.DEFAULT_VALIDATION_DATA)
    golden_path: str = str(settings.DEFAULT_GOLDEN_DATA)
    safety_probes_path: str = str(settings.DEFAULT_SAFETY_PROBES)
    agents_config: str = str(settings.DEFAULT_AGENTS_CONFIG)
    router_config: str = str(settings.DEFAULT_ROUTER_CONFIG)
    min_train_examples_per_label: int = 20
    synthetic_seed: int = 20261125
    synthetic_variants_per_case: int = 2
    synthetic_validation_cases: int = 600

    def registry(self) -> AgentRegistry:
        return load_agent_registry(self.agents_config)

    def router_guard(self) -> Guard | None:
        """The guard stage declared in the router config (None when ``guard.enabled: false``)."""
        return guard_from_config(load_yaml(self.router_config, "router config"), self.router_config)

    def router_settings(self) -> tuple[list[Rule], TrainSettings]:
        raw = load_yaml(self.router_config, "router config")
        return rules_from_config(raw, self.registry(), self.router_config), TrainSettings.from_config(raw)


class MlflowRegistry(dg.ConfigurableResource):
    """MLflow tracking + model registry. Empty ``tracking_uri`` = SQLite inside the state folder."""

    tracking_uri: str = ""
    model_name: str = settings.DEFAULT_MODEL_NAME
    experiment: str = settings.DEFAULT_EXPERIMENT
    ui_url: str = settings.DEFAULT_MLFLOW_UI_URL
    user: str = ""  # who promotes, in the audit log ("" = the login name)

    def open(self, home: Path) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri or None, self.model_name, self.experiment, home, self.ui_url, self.user)


class PolicySettings(dg.ConfigurableResource):
    """The promotion policy (``config/policy.yaml``): required gates, thresholds, approvers."""

    config_path: str = str(settings.DEFAULT_POLICY_CONFIG)

    def load(self) -> Policy:
        """The validated policy; a bad file is a ``dg.Failure`` whose one line names the file and key."""
        try:
            return load_policy(self.config_path)
        except ConfigError as exc:
            raise dg.Failure(
                description=f"{exc}; fix the policy file before anything is trained or promoted",
                metadata={"policy_file": dg.MetadataValue.path(self.config_path)},
                allow_retries=False,
            ) from None


class Alerts(dg.ConfigurableResource):
    """Where alerts go: a webhook (JSON POST) when ``webhook_url`` is set, else the log."""

    webhook_url: str = ""
    timeout_s: float = 5.0

    def send(self, title: str, body: dict) -> str:
        payload = {"title": title, **body}
        if not self.webhook_url:
            logging.getLogger("agent_pipeline.alerts").warning("ALERT %s", json.dumps(payload, default=str))
            return "logged"
        req = urllib.request.Request(
            self.webhook_url,
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - operator-configured URL
            return f"webhook {resp.status}"


def build_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory]:
    return {
        "state": StateFolder(home=env_or("AGENT_PIPELINE_HOME", "")),
        "files": RouterFiles(
            train_path=env_or("AGENT_PIPELINE_TRAIN_DATA", str(settings.DEFAULT_TRAIN_DATA)),
            validation_path=env_or("AGENT_PIPELINE_VALIDATION_DATA", str(settings.DEFAULT_VALIDATION_DATA)),
            golden_path=env_or("AGENT_PIPELINE_GOLDEN_DATA", str(settings.DEFAULT_GOLDEN_DATA)),
            safety_probes_path=env_or("AGENT_PIPELINE_SAFETY_PROBES", str(settings.DEFAULT_SAFETY_PROBES)),
            agents_config=env_or("AGENT_PIPELINE_AGENTS_CONFIG", str(settings.DEFAULT_AGENTS_CONFIG)),
            router_config=env_or("AGENT_PIPELINE_ROUTER_CONFIG", str(settings.DEFAULT_ROUTER_CONFIG)),
        ),
        "mlflow": MlflowRegistry(
            tracking_uri=env_or("MLFLOW_TRACKING_URI", ""),
            model_name=env_or("AGENT_PIPELINE_MODEL_NAME", settings.DEFAULT_MODEL_NAME),
            ui_url=env_or("AGENT_PIPELINE_MLFLOW_UI_URL", settings.DEFAULT_MLFLOW_UI_URL),
            user=env_or("AGENT_PIPELINE_USER", ""),
        ),
        "policy": PolicySettings(
            config_path=env_or("AGENT_PIPELINE_POLICY_CONFIG", str(settings.DEFAULT_POLICY_CONFIG))
        ),
        "alerts": Alerts(webhook_url=env_or("AGENT_PIPELINE_ALERT_WEBHOOK_URL", "")),
        # Asset values stored per run: concurrent runs never read each other's (defs/storage.py).
        "io_manager": RunScopedIOManager(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    # In-process execution by default: every step subprocess would re-import the code location
    # and the ML libraries (seconds each on 2 cores, DEPS.md gotcha 5); the steps here are
    # CPU-bound and the graph is small. AGENT_PIPELINE_EXECUTOR selects multiprocess, Celery or
    # Kubernetes instead (defs/executors.py, deploy/README.md).
    return dg.Definitions(resources=build_resources(), executor=selected_executor())
