"""MLflow tracking and model registry operations for the router.

One registered model (default ``agent-router``) holds every trained version. Aliases carry the
lifecycle: ``candidate`` is the newest trained version, ``champion`` serves traffic,
``previous-champion`` is what ``champion`` pointed to before the last promotion (so rollback is
one alias move). Gate results are written as version tags (``gate.<name>``), and every
promotion or rollback appends one JSON line to the audit log and sets version tags, so the
history survives in two places. Nothing here deletes a version, a run or an audit line.

MLflow is imported lazily: the CLI's ``route`` command and Dagster's step processes only pay
for it when they use the registry.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import RegistryError
from agent_pipeline.lib.core.telemetry import with_dagster_links

CANDIDATE = "candidate"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
# The MLflow 3 UI opens an untagged experiment in its GenAI view ("Evaluation runs", traces,
# prompts); this tag opens the model-training view (training runs, metrics, models) a router needs.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
PIP_REQUIREMENTS = ["scikit-learn>=1.9,<2", "pandas>=2.2,<3", "numpy>=2,<3", "pyyaml>=6", "mlflow>=3.17,<4"]


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def current_user(name: str = "") -> str:
    """``name`` (the configured ``AGENT_PIPELINE_USER``) or the login name."""
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises various errors without a passwd entry
        return "unknown"


@dataclass(frozen=True)
class LoadedModel:
    """A registered version loaded for use: the pyfunc model plus, for our own router, the Router."""

    name: str
    version: str
    pyfunc: Any
    router: Any | None

    def route_batch(self, texts):
        import pandas as pd

        if self.router is not None:
            return self.router.route_batch(texts)
        return self.pyfunc.predict(pd.DataFrame({"text": list(texts)}))

    def route_one(self, text: str) -> dict:
        if self.router is not None:
            return self.router.route(text).to_dict()
        return self.route_batch([text]).iloc[0].to_dict()


class ModelRegistry:
    """Thin, explicit wrapper over MLflow for this project's registered router."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        model_name: str = settings.DEFAULT_MODEL_NAME,
        experiment: str = settings.DEFAULT_EXPERIMENT,
        home: Path | None = None,
        ui_url: str = "",
        user: str = "",
    ) -> None:
        if home is None:
            raise ValueError("ModelRegistry needs the state folder: pass home= (Settings.home, StateFolder.path)")
        self.home = Path(home)
        self.tracking_uri = tracking_uri or settings.default_tracking_uri(self.home)
        self.user = user  # who acts, for the audit log ("" = the login name)
        self.model_name = model_name
        self.experiment = experiment
        self.ui_url = ui_url.rstrip("/")
        self._experiment_id: str | None = None

    # -- plumbing --------------------------------------------------------------------------
    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _activate(self) -> str:
        import mlflow

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                artifact_location = None
                if not self.tracking_uri.startswith(("http://", "https://", "databricks")):
                    root = settings.mlflow_dir(self.home) / "artifacts"
                    root.mkdir(parents=True, exist_ok=True)
                    artifact_location = root.as_uri()
                self._experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=artifact_location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
                )
            else:
                self._experiment_id = exp.experiment_id
                if EXPERIMENT_KIND not in exp.tags:
                    self.client.set_experiment_tag(self._experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        mlflow.set_experiment(experiment_id=self._experiment_id)
        return self._experiment_id

    def _ui_link(self, route: str) -> str:
        # workflowType: the MLflow 3 UI otherwise opens every link in its GenAI view (runs listed
        # as "Evaluations", traces and prompts in the sidebar); a router is a trained model.
        return f"{self.ui_url or 'mlflow-ui'}/#/{route}?workflowType=machine_learning"

    def run_url(self, run_id: str) -> str:
        return self._ui_link(f"experiments/{self._activate()}/runs/{run_id}")

    def artifact_url(self, run_id: str, path: str) -> str:
        """The MLflow UI's viewer of one artifact of a run (HTML renders there; the raw download
        endpoint serves every file as an attachment)."""
        return self._ui_link(f"experiments/{self._activate()}/runs/{run_id}/artifacts/{path}")

    def version_url(self, version: str) -> str:
        return self._ui_link(f"models/{self.model_name}/versions/{version}")

    # -- logging ---------------------------------------------------------------------------
    def log_router(
        self,
        router,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        artifacts: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        """Log the router as a pyfunc model in a new run and register it as a new version.

        The version gets the ``candidate`` alias. ``artifacts`` maps a relative path to a
        JSON-able object or a pandas DataFrame (written as CSV). Returns version, run id, URIs.
        """
        import joblib
        import mlflow
        import pandas as pd

        from agent_pipeline.lib.core.csvfiles import write_csv
        from agent_pipeline.lib.router.pyfunc import RouterModel

        self._activate()
        with (
            tempfile.TemporaryDirectory() as tmp,
            mlflow.start_run(run_name=f"train-{self.model_name}", tags=with_dagster_links(tags)) as run,
        ):
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for rel, obj in (artifacts or {}).items():
                if isinstance(obj, pd.DataFrame):
                    path = Path(tmp) / Path(rel).name
                    write_csv(obj, path)
                    mlflow.log_artifact(
                        str(path), artifact_path=str(Path(rel).parent) if Path(rel).parent != Path(".") else None
                    )
                else:
                    mlflow.log_dict(obj, rel)
            router_path = Path(tmp) / "router.joblib"
            joblib.dump(router, router_path)
            # MLflow warns on every log that a Python-object model is CloudPickled; RouterModel is
            # this package's own class (pickled by reference), so the caution is noise here.
            pyfunc_log = logging.getLogger("mlflow.pyfunc")
            level = pyfunc_log.level
            pyfunc_log.setLevel(logging.ERROR)
            try:
                info = mlflow.pyfunc.log_model(
                    name="router",
                    python_model=RouterModel(),
                    artifacts={"router": str(router_path)},
                    pip_requirements=PIP_REQUIREMENTS,
                )
            finally:
                pyfunc_log.setLevel(level)
            run_id = run.info.run_id
        mv = mlflow.register_model(info.model_uri, self.model_name, tags={**tags, "run_id": run_id})
        self.client.set_registered_model_alias(self.model_name, CANDIDATE, mv.version)
        return {"version": str(mv.version), "run_id": run_id, "model_uri": info.model_uri}

    def log_evaluation(
        self,
        version: str,
        *,
        metrics: dict[str, float],
        params: dict[str, Any],
        tags: dict[str, str],
        files: dict[str, Path],
    ) -> str:
        """Log an evaluation of ``version`` as its own MLflow run; returns the run id."""
        import mlflow

        self._activate()
        run_tags = with_dagster_links({**tags, "model_version": str(version)})
        with mlflow.start_run(run_name=f"eval-v{version}", tags=run_tags) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # NaN-free
            for rel_dir, path in files.items():
                mlflow.log_artifact(str(path), artifact_path=rel_dir or None)
            return run.info.run_id

    def log_drift_report(
        self, day: str, reference_version: str, *, metrics: dict[str, float], tags: dict[str, str], files: list[Path]
    ) -> str:
        """Log one day's drift report (HTML, JSON) as run ``drift-<day>``; returns the run id.
        The files go under the artifact folder ``drift/``."""
        import mlflow

        self._activate()
        run_tags = {**tags, "day": day, "reference_model_version": str(reference_version), "kind": "drift_report"}
        with mlflow.start_run(run_name=f"drift-{day}", tags=run_tags) as run:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            for path in files:
                mlflow.log_artifact(str(path), artifact_path="drift")
            return run.info.run_id

    # -- reading ---------------------------------------------------------------------------
    def resolve(self, version: str | None = None, alias: str | None = None) -> str:
        """The version number for an explicit version or an alias (``champion`` by default)."""
        from mlflow.exceptions import MlflowException

        self._activate()
        try:
            if version is not None:
                return str(self.client.get_model_version(self.model_name, str(version)).version)
            return str(self.client.get_model_version_by_alias(self.model_name, alias or CHAMPION).version)
        except MlflowException as exc:
            what = f"version {version}" if version is not None else f"alias '{alias or CHAMPION}'"
            from agent_pipeline.lib.core.secrets import redact_uri

            raise RegistryError(f"model '{self.model_name}' has no {what} in {redact_uri(self.tracking_uri)}") from exc

    def alias_version(self, alias: str) -> str | None:
        try:
            return self.resolve(alias=alias)
        except RegistryError:
            return None

    def load(self, version: str | None = None, alias: str | None = None) -> LoadedModel:
        import mlflow.pyfunc

        v = self.resolve(version, alias)
        model = mlflow.pyfunc.load_model(f"models:/{self.model_name}/{v}")
        try:
            inner = model.unwrap_python_model()
        except Exception:  # noqa: BLE001 - a non-Python-function flavour has nothing to unwrap
            inner = None
        return LoadedModel(self.model_name, v, model, getattr(inner, "router", None))

    def version_info(self, version: str) -> dict[str, Any]:
        self._activate()
        mv = self.client.get_model_version(self.model_name, str(version))
        return {
            "version": str(mv.version),
            "run_id": mv.run_id,
            "aliases": list(mv.aliases),
            "tags": dict(mv.tags),
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(),
        }

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        self._activate()
        for k, v in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), k, str(v))

    # -- lifecycle -------------------------------------------------------------------------
    def record_gates(self, version: str, evaluation_id: str, results: dict[str, bool]) -> None:
        """Write one gate result per tag: ``gate.<name>`` = ``passed|failed@<evaluation_id>``."""
        self.set_version_tags(
            version, {f"gate.{name}": f"{'passed' if ok else 'failed'}@{evaluation_id}" for name, ok in results.items()}
        )

    def gate_results(self, version: str, evaluation_id: str) -> dict[str, str]:
        """Gate name -> "passed"/"failed" for one evaluation of ``version`` (gates not run are absent)."""
        out = {}
        for k, v in self.version_info(version)["tags"].items():
            if k.startswith("gate.") and v.endswith(f"@{evaluation_id}"):
                out[k.removeprefix("gate.")] = v.split("@", 1)[0]
        return out

    def promote(self, version: str, record: dict[str, Any]) -> dict[str, Any]:
        """Move ``champion`` to ``version``; the old champion becomes ``previous-champion``.

        Writes the audit record first (so a crash between the two leaves a trace, never a
        silent alias move) and returns it.
        """
        version = self.resolve(version=version)
        previous = self.alias_version(CHAMPION)
        record = {
            "action": "promote",
            "model_name": self.model_name,
            "version": version,
            "previous_champion": previous,
            "time": utc_now(),
            "user": current_user(self.user),
            **record,
        }
        append_audit(self.home, record)
        if previous is not None and previous != version:
            self.client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, previous)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)
        self.set_version_tags(version, {"promoted_at": record["time"], "promoted_by": record["user"]})
        self.refresh_serving_bundle(version)
        return record

    def rollback(self, to_version: str | None = None, reason: str = "") -> dict[str, Any]:
        """Point ``champion`` back at ``previous-champion`` (or ``to_version``); audited."""
        current = self.alias_version(CHAMPION)
        target = self.resolve(version=to_version) if to_version else self.alias_version(PREVIOUS_CHAMPION)
        if target is None:
            raise RegistryError(f"model '{self.model_name}' has no previous champion to roll back to")
        if target == current:
            raise RegistryError(f"version {target} is already the champion")
        record = {
            "action": "rollback",
            "model_name": self.model_name,
            "version": target,
            "previous_champion": current,
            "time": utc_now(),
            "user": current_user(self.user),
            "reason": reason,
        }
        append_audit(self.home, record)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, target)
        if current is not None:
            self.client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, current)
            self.set_version_tags(current, {"rolled_back_at": record["time"], "rolled_back_by": record["user"]})
        self.set_version_tags(target, {"rolled_back_to_at": record["time"]})
        self.refresh_serving_bundle(target)
        from agent_pipeline.lib.monitoring import records as monitoring

        if not monitoring.restore_reference(self.home, target):
            logging.getLogger(__name__).warning(
                "version %s has no drift reference in %s; drift reports keep the previous one until a promotion",
                target,
                self.home,
            )
        return record

    def refresh_serving_bundle(self, version: str) -> None:
        """Export the champion's decision path for fast cold starts (``lib/serving/bundle.py``)."""
        from agent_pipeline.lib.serving import bundle as serving

        model = self.load(version=version)
        path = serving.bundle_path(self.home)
        if model.router is None:
            path.unlink(missing_ok=True)  # a foreign pyfunc router: route through MLflow
        else:
            serving.export(model.router, self.model_name, version, path, tracking_uri=self.tracking_uri)


def append_audit(home: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to the promotion audit log (never rewritten)."""
    path = settings.audit_log_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_audit(home: Path) -> list[dict[str, Any]]:
    path = settings.audit_log_path(home)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
