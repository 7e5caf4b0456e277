"""MLflow tracking and model registry operations for the router.

One registered model (default ``agent-router``) holds every trained version. Aliases carry the
lifecycle: ``candidate`` is the newest trained version, ``champion`` serves traffic,
``previous-champion`` is what ``champion`` pointed to before the last promotion (so rollback is
one alias move). Gate results are written as version tags (``gate.<name>``). Champion changes
(promotion, rollback) are transactions in ``lib/registry/promotion.py``; every decision is
appended to the hash-chained audit log (``lib/registry/audit.py``). Nothing here deletes a version, a run or an audit line.

MLflow is imported lazily: the CLI's ``route`` command and Dagster's step processes only pay
for it when they use the registry.
"""

from __future__ import annotations

import getpass
import logging
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

    def content_hash(self, version: str) -> str:
        """sha256 over the version's model artifacts (every file's relative path and bytes).

        What an approval binds to: re-registering, re-logging or editing the artifacts of a
        version changes it, so an approval of other content does not count.
        """
        import hashlib

        import mlflow.artifacts

        v = self.resolve(version=version)
        self._activate()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.model_name}/{v}", dst_path=tmp)
            )
            digest = hashlib.sha256()
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            return digest.hexdigest()

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

    def refresh_serving_bundle(self, version: str) -> None:
        """Export the champion's decision path for fast cold starts (``lib/serving/bundle.py``)."""
        from agent_pipeline.lib.serving import bundle as serving

        model = self.load(version=version)
        path = serving.bundle_path(self.home)
        if model.router is None:
            path.unlink(missing_ok=True)  # a foreign pyfunc router: route through MLflow
        else:
            serving.export(model.router, self.model_name, version, path, tracking_uri=self.tracking_uri)


def alias_version_cheap(tracking_uri: str, model_name: str, alias: str = CHAMPION) -> str | None:
    """The alias's version read straight from a SQLite registry (milliseconds, no MLflow import);
    other stores go through ``MlflowClient``. What ``route`` checks its serving bundle against."""
    if tracking_uri.startswith("sqlite:///"):
        import sqlite3

        db = tracking_uri.removeprefix("sqlite:///")
        if not Path(db).is_file():
            return None
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
            row = con.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (model_name, alias)
            ).fetchone()
        return str(row[0]) if row else None
    return ModelRegistry(tracking_uri, model_name).alias_version(alias)


def append_audit(home: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record to the hash-chained audit log (``lib/registry/audit.py``); returns it."""
    from agent_pipeline.lib.registry import audit

    return audit.append(home, record)


def read_audit(home: Path) -> list[dict[str, Any]]:
    from agent_pipeline.lib.registry import audit

    return audit.read(home)
