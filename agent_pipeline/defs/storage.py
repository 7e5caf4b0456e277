"""Where asset values live between steps: one folder per run, so concurrent runs never mix.

Dagster's default IO manager keeps an unpartitioned asset's value at one path per asset
(``$DAGSTER_HOME/storage/<asset>``), shared by every run. Two ``train_and_promote_job`` runs at
once then read each other's ``router_candidate`` and ``candidate_evaluation``: run A evaluated
and promoted run B's model. Here every value is written under the run that produced it,
``<storage>/<run id>/<asset key>[/<partition>]``, written to a temporary name and renamed, so
no other run can overwrite or half-overwrite it.

Reading follows Dagster's own lineage: within a run, the run's own value; in a re-execution,
the value of the parent run that produced it (``context.upstream_output.run_id``); an asset
that is not part of the run at all (e.g. ``champion_model`` materialized on its own) reads the
run of that asset's latest materialization, named in the step's log.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dagster as dg

from agent_pipeline.lib.core.files import atomic_path


def value_path(base: Path, run_id: str, asset_key: dg.AssetKey, partition: str | None = None) -> Path:
    path = base / run_id / Path(*asset_key.path)
    return path / partition if partition is not None else path


class RunScopedStore(dg.IOManager):
    """Pickled asset values under ``<base>/<run id>/<asset key>``; see the module docstring."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:  # MaterializeResult assets store nothing
            return
        partition = context.partition_key if context.has_partition_key else None
        path = value_path(self.base, context.run_id, context.asset_key, partition)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        context.add_output_metadata({"stored_at": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        partition = context.partition_key if context.has_partition_key else None
        run_id = self._source_run_id(context, key, partition)
        path = value_path(self.base, run_id, key, partition)
        if not path.is_file():
            raise dg.Failure(
                description=f"{key.to_user_string()} has no stored value from run {run_id} ({path}): "
                f"materialize {key.to_user_string()} again in this run (e.g. with its downstream assets)"
            )
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 - written by this IO manager inside DAGSTER_HOME

    @staticmethod
    def _source_run_id(context: dg.InputContext, key: dg.AssetKey, partition: str | None) -> str:
        upstream = context.upstream_output
        try:
            run_id = upstream.run_id if upstream is not None else None
        except dg.DagsterInvariantViolationError:
            run_id = None
        # This run, or the parent run of a re-execution; an asset from outside the run gets a
        # placeholder id that names no run.
        if run_id and context.instance.get_run_by_id(run_id) is not None:
            return run_id
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
        ).records
        if not records:
            raise dg.Failure(
                description=f"{key.to_user_string()} was never materialized; materialize it (or the whole job) first"
            )
        run_id = records[0].run_id
        context.log.info(f"{key.to_user_string()}: loading the value of its latest materialization, run {run_id}")
        return run_id


class RunScopedIOManager(dg.ConfigurableIOManagerFactory):
    """Asset values stored per run (``<base_dir>/<run id>/<asset>``); ``base_dir`` defaults to the
    instance's storage folder (``$DAGSTER_HOME/storage``)."""

    base_dir: str = ""

    def create_io_manager(self, context: dg.InitResourceContext) -> RunScopedStore:
        base = Path(self.base_dir) if self.base_dir else Path(context.instance.storage_directory())
        return RunScopedStore(base)
