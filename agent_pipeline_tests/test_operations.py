"""Operating a promoted router: bless, rollback, history, simulated traffic (CLI), and the baseline jobs.

One state folder goes through ``train_and_promote_job`` twice (v1, then v2 promoted over it)
on one instance; the tests then act as an operator would, in order: the CLI as a subprocess,
``bless_baseline_job`` and ``champion_eval_job`` (with ``champion_holds_baseline``) through
Dagster. Each test reads what a user sees: exit codes, JSON, the audit log, files, metadata.
"""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.registry import promotion
from agent_pipeline.lib.registry.models import ModelRegistry, read_audit
from agent_pipeline_tests.test_cli import cli, ok_json


@pytest.fixture(scope="module")
def ops(small_inputs, tmp_path_factory):
    """(home, instance): v1 then v2 trained, gated and promoted; the instance stays open."""
    home = tmp_path_factory.mktemp("ops") / "home"
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        for key, value in small_inputs.env(home).items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        job = defs().resolve_job_def("train_and_promote_job")
        for _ in range(2):
            assert job.execute_in_process(instance=instance, raise_on_error=False).success
        yield home, instance


def test_history_lists_both_promotions(small_inputs, ops):
    home, _ = ops
    history = ok_json(cli(small_inputs, home, "history", "--json"))
    assert [(r["action"], r["version"], r["previous_champion"]) for r in history] == [
        ("promote", "1", None),
        ("promote", "2", "1"),
    ]
    text = cli(small_inputs, home, "history")
    assert text.returncode == 0 and "promote v2" in text.stdout and "previous v1" in text.stdout


def test_bless_records_who_and_moves_the_baseline(small_inputs, ops):
    home, _ = ops
    out = ok_json(cli(small_inputs, home, "bless", "--by", "risk-officer", "--reason", "quarterly", "--json"))
    assert (out["version"], out["blessed_by"]) == ("2", "risk-officer")
    _, info = evaluation.load_baseline(home)
    assert (info["version"], info["blessed_by"], info["reason"]) == ("2", "risk-officer", "quarterly")
    unknown = cli(small_inputs, home, "bless", "--version", "99")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error:") and "Traceback" not in unknown.stderr


def test_rollback_restores_the_previous_champion_and_what_route_serves(small_inputs, ops):
    home, _ = ops
    out = ok_json(cli(small_inputs, home, "rollback", "--reason", "ops drill", "--json"))
    assert (out["version"], out["previous_champion"]) == ("1", "2")
    store = ModelRegistry(home=home)
    assert store.alias_version("champion") == "1"
    last = read_audit(home)[-1]
    assert (last["action"], last["version"], last["reason"]) == ("rollback", "1", "ops drill")
    assert ok_json(cli(small_inputs, home, "route", "check my balance", "--json"))["model_version"] == "1"
    again = cli(small_inputs, home, "rollback", "--to", "1")
    assert again.returncode == 2 and "already the champion" in again.stderr
    # v2 was rolled back: a second rollback (previous-champion is now v2) does not bring it back.
    undo = cli(small_inputs, home, "rollback", "--reason", "undo")
    assert undo.returncode == 2 and "version 2 was rolled back at" in undo.stderr, undo.stderr
    assert "nor does a promotion: train a new candidate" in undo.stderr
    assert store.alias_version("champion") == "1"
    # Someone with MLflow write access moves the alias back to v2 by hand: doctor says so and
    # repairs nothing for a champion the audit log does not know.
    store.client.set_registered_model_alias(store.model_name, "champion", "2")
    try:
        doctor = cli(small_inputs, home, "doctor", "--repair")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        assert "champion alias is v2 but the audit log's last committed change made v1 the champion" in doctor.stdout
        assert promotion.serving_version(home) == "1"  # the bundle was not re-exported for v2
    finally:
        store.client.set_registered_model_alias(store.model_name, "champion", "1")
    assert cli(small_inputs, home, "doctor").returncode == 0


def test_simulate_traffic_writes_landing_files_routed_by_the_champion(small_inputs, ops):
    home, _ = ops
    args = ("--start", "2026-01-05", "--days", "2", "--scenario", "new-topic", "--seed", "3", "--rows-per-day", "50")
    out = ok_json(cli(small_inputs, home, "simulate-traffic", *args, "--json"))
    assert [p.rsplit("/", 1)[1] for p in out["files"]] == [
        "2026-01-05-new-topic-s3.jsonl",
        "2026-01-06-new-topic-s3.jsonl",
    ]
    champion = ModelRegistry(home=home).alias_version("champion")
    rows = [json.loads(line) for line in open(out["files"][0], encoding="utf-8")]
    assert len(rows) == 50 and {r["model_version"] for r in rows} == {champion}
    assert all(r["timestamp"].startswith(str(date(2026, 1, 5))) for r in rows)
    again = ok_json(cli(small_inputs, home, "simulate-traffic", *args, "--json"))  # same seed, same texts
    rows_again = [json.loads(line) for line in open(again["files"][0], encoding="utf-8")]
    assert [r["text"] for r in rows_again] == [r["text"] for r in rows]
    bad = cli(small_inputs, home, "simulate-traffic", "--start", "yesterday", "--scenario", "stable", "--seed", "1")
    assert bad.returncode == 2 and "is not a YYYY-MM-DD date" in bad.stderr


def test_bless_baseline_job_blesses_the_champion_and_benchmark_baseline_reports_it(small_inputs, ops, monkeypatch):
    home, instance = ops
    for key, value in small_inputs.env(home).items():
        monkeypatch.setenv(key, value)
    champion = ModelRegistry(home=home).alias_version("champion")
    job = defs().resolve_job_def("bless_baseline_job")
    config = {"ops": {"benchmark_baseline": {"config": {"version": "champion", "blessed_by": "job", "reason": "r"}}}}
    result = job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
    assert result.success
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    md = {k: v.value for k, v in mat.metadata.items()}
    assert (md["model_version"], md["blessed_by"], md["blessed_now"]) == (champion, "job", True)
    # Without a version the asset only describes the current baseline.
    report = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"benchmark_baseline": {"config": {"version": ""}}}},
        raise_on_error=False,
    )
    (mat,) = [e.materialization for e in report.get_asset_materialization_events()]
    assert mat.metadata["blessed_now"].value is False and mat.metadata["model_version"].value == champion


def test_champion_holds_baseline_on_the_eval_sets(small_inputs, ops, monkeypatch):
    home, instance = ops
    for key, value in small_inputs.env(home).items():
        monkeypatch.setenv(key, value)
    result = defs().resolve_job_def("champion_eval_job").execute_in_process(instance=instance, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["champion_holds_baseline"].passed, checks["champion_holds_baseline"].description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "champion_evaluation" in materialized
