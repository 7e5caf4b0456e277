"""Resources: where data comes from, where state goes, MLflow, the promotion policy, alerts.

Each setting is bound to an environment variable when that variable is set (the UI then shows
the binding) and otherwise to a default that works offline on a fresh checkout. Every variable
is listed in ``.env.example`` and the README.
"""

import json
import logging
import os
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from agent_pipeline.defs.executors import selected_executor
from agent_pipeline.defs.storage import RunScopedIOManager
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import ConfigError, DatasetError
from agent_pipeline.lib.monitoring import ingest
from agent_pipeline.lib.registry.models import ModelRegistry
from agent_pipeline.lib.registry.policy import Policy, load_policy
from agent_pipeline.lib.router.agents import AgentRegistry, load_agent_registry, load_yaml
from agent_pipeline.lib.router.config_schema import validate_router
from agent_pipeline.lib.router.guard import Guard, guard_from_config
from agent_pipeline.lib.router.model import Rule, TrainSettings, rules_from_config


def env_or(name: str, default: str | int | float) -> dg.EnvVar | str | int | float:
    """Bind to ``$name`` when it is set, else use ``default`` (dg.EnvVar has no default)."""
    return dg.EnvVar(name) if os.environ.get(name) else default


@contextmanager
def config_failure(path: str):
    """A ``ConfigError`` or ``DatasetError`` inside becomes a ``dg.Failure``: its one line as the
    description, the file as metadata (the run fails with that line, not only a stack trace)."""
    try:
        yield
    except (ConfigError, DatasetError) as exc:
        raise dg.Failure(
            description=f"{exc}; fix the file before anything is trained",
            metadata={"file": dg.MetadataValue.path(str(path)), "error": str(exc)},
            allow_retries=False,
        ) from None


def _env_int(name: str, default: int):
    """An int field bound to ``$name`` when set (Dagster parses it at launch), else ``default``."""
    return dg.EnvVar.int(name) if os.environ.get(name) else default


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
    holdout_path: str = str(settings.DEFAULT_HOLDOUT_DATA)  # sealed: only generalizes_to_holdout reads it
    agents_config: str = str(settings.DEFAULT_AGENTS_CONFIG)
    router_config: str = str(settings.DEFAULT_ROUTER_CONFIG)
    min_train_examples_per_label: int = 20
    synthetic_seed: int = 20261125
    synthetic_variants_per_case: int = 2
    synthetic_validation_cases: int = 600

    def registry(self) -> AgentRegistry:
        """The validated agent registry; a bad file is a ``dg.Failure`` whose one line names the file and key."""
        with config_failure(self.agents_config):
            return load_agent_registry(self.agents_config)

    def router_guard(self) -> Guard | None:
        """The guard stage declared in the router config (None when ``guard.enabled: false``)."""
        return guard_from_config(load_yaml(self.router_config, "router config"), self.router_config)

    def router_settings(self) -> tuple[list[Rule], TrainSettings]:
        """Rules and training settings from the validated router config (``config_schema.validate_router``)."""
        registry = self.registry()
        with config_failure(self.router_config):
            raw = load_yaml(self.router_config, "router config")
            validate_router(raw, registry.known_labels, source=self.router_config)
            rules = rules_from_config(raw, registry, self.router_config)
            try:
                return rules, TrainSettings.from_config(raw)
            except ConfigError as exc:  # its messages say "router config: <key>": name the file
                raise ConfigError(str(exc).replace("router config:", f"{self.router_config}:", 1)) from None


def refuse_run_config_override(context: dg.InitResourceContext, key: str, deployment: dict[str, str]) -> None:
    """Governance settings come from the deployment (environment, definitions), never from one run.

    A run's config (the launchpad, ``dagster job execute -c``) may not set ``deployment``'s fields of
    resource ``key`` to anything but the deployment's values: otherwise a run could promote under
    a policy of its own choosing or write another name into the audit log.
    """
    run = context.run
    given = ((((run.run_config or {}) if run else {}).get("resources") or {}).get(key) or {}).get("config") or {}
    changed = {f: given[f] for f in deployment if f in given and str(given[f]) != deployment[f]}
    if changed:
        fields = ", ".join(f"{f}={v!r}" for f, v in sorted(changed.items()))
        raise ConfigError(
            f"run config sets resources.{key}.config {fields}; the deployment's "
            f"{', '.join(f'{f}={deployment[f]!r}' for f in sorted(changed))} applies to every run. Change "
            f"{', '.join(sorted(changed))} in the deployment (.env.example), not in a run's config; nothing was run"
        )


class MlflowRegistry(dg.ConfigurableResource):
    """MLflow tracking + model registry. Empty ``tracking_uri`` = SQLite inside the state folder.

    ``user`` (who promotes, in the audit log) is the deployment's ``AGENT_PIPELINE_USER``; a run's
    config cannot change it (``refuse_run_config_override``).
    """

    tracking_uri: str = ""
    model_name: str = settings.DEFAULT_MODEL_NAME
    experiment: str = settings.DEFAULT_EXPERIMENT
    ui_url: str = settings.DEFAULT_MLFLOW_UI_URL
    user: str = ""  # who promotes, in the audit log ("" = the login name)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        refuse_run_config_override(context, "mlflow", {"user": os.environ.get("AGENT_PIPELINE_USER", "")})

    def open(self, home: Path) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri or None, self.model_name, self.experiment, home, self.ui_url, self.user)


class PolicySettings(dg.ConfigurableResource):
    """The promotion policy (``config/policy.yaml``): required gates, thresholds, approvers.

    Its path is the deployment's ``AGENT_PIPELINE_POLICY_CONFIG``: a run's config cannot point it
    at a laxer file (``refuse_run_config_override``).
    """

    config_path: str = str(settings.DEFAULT_POLICY_CONFIG)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        deployment = os.environ.get("AGENT_PIPELINE_POLICY_CONFIG") or str(settings.DEFAULT_POLICY_CONFIG)
        refuse_run_config_override(context, "policy", {"config_path": deployment})

    def sha256(self) -> str:
        """The policy file's content hash (recorded with every promotion)."""
        import hashlib

        return hashlib.sha256(Path(self.config_path).read_bytes()).hexdigest()

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


class IngestSettings(dg.ConfigurableResource):
    """Size limits for landing data (``lib/monitoring/ingest.py``): rows beyond them are quarantined."""

    max_text_chars: int = ingest.DEFAULT_MAX_TEXT_CHARS
    max_file_bytes: int = ingest.DEFAULT_MAX_FILE_BYTES

    def limits(self) -> ingest.IngestLimits:
        try:
            return ingest.IngestLimits(max_text_chars=self.max_text_chars, max_file_bytes=self.max_file_bytes)
        except ingest.IngestError as exc:
            raise dg.Failure(description=f"ingest_settings: {exc}") from exc


class Alerts(dg.ConfigurableResource):
    """Where alerts go: a webhook (JSON POST) when ``webhook_url`` is set, else the log.

    An alert carries ids and counts: run id, job, check, severity, numeric metadata. Free text
    that can quote users' requests (a check's description, a failure message, text metadata)
    is left out unless ``include_texts`` is set (``AGENT_PIPELINE_ALERT_INCLUDE_TEXTS=true``);
    the Dagster UI, linked by run id, has the details.
    """

    webhook_url: str = ""
    timeout_s: float = 5.0
    include_texts: bool = False

    def payload(self, title: str, body: dict) -> dict:
        """What is sent: ``body`` without free text unless ``include_texts``."""
        if self.include_texts:
            return {"title": title, **body}
        out: dict = {"title": title}
        for key, value in body.items():
            if key in ("description", "error"):
                out[f"{key}_omitted"] = True
            elif key == "metadata" and isinstance(value, dict):
                out[key] = {k: v for k, v in value.items() if _is_number_text(v)}
            elif key == "tags" and isinstance(value, dict):
                out[key] = {k: v for k, v in value.items() if "text" not in k.lower()}
            else:
                out[key] = value
        return out

    def send(self, title: str, body: dict) -> str:
        payload = self.payload(title, body)
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


def _is_number_text(value) -> bool:
    """A count, rate or flag (``3``, ``0.25``, ``True``) as metadata carries it."""
    if isinstance(value, (int, float, bool)):
        return True
    try:
        float(str(value))
        return True
    except ValueError:
        return str(value) in ("True", "False")


def build_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory]:
    return {
        "state": StateFolder(home=env_or("AGENT_PIPELINE_HOME", "")),
        "files": RouterFiles(
            train_path=env_or("AGENT_PIPELINE_TRAIN_DATA", str(settings.DEFAULT_TRAIN_DATA)),
            validation_path=env_or("AGENT_PIPELINE_VALIDATION_DATA", str(settings.DEFAULT_VALIDATION_DATA)),
            golden_path=env_or("AGENT_PIPELINE_GOLDEN_DATA", str(settings.DEFAULT_GOLDEN_DATA)),
            safety_probes_path=env_or("AGENT_PIPELINE_SAFETY_PROBES", str(settings.DEFAULT_SAFETY_PROBES)),
            holdout_path=env_or("AGENT_PIPELINE_HOLDOUT_DATA", str(settings.DEFAULT_HOLDOUT_DATA)),
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
        "ingest_settings": IngestSettings(
            max_text_chars=_env_int("AGENT_PIPELINE_MAX_TEXT_CHARS", ingest.DEFAULT_MAX_TEXT_CHARS),
            max_file_bytes=_env_int("AGENT_PIPELINE_MAX_LANDING_FILE_BYTES", ingest.DEFAULT_MAX_FILE_BYTES),
        ),
        "alerts": Alerts(
            webhook_url=env_or("AGENT_PIPELINE_ALERT_WEBHOOK_URL", ""),
            include_texts=os.environ.get("AGENT_PIPELINE_ALERT_INCLUDE_TEXTS", "").lower() in ("1", "true", "yes"),
        ),
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
