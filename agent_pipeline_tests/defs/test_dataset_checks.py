"""The dataset checks, called with a good and a bad file each, and a bad golden file in a run.

Each bad file has one defect (a missing column, an unknown label, an empty text, a duplicate
id, a text copied from training). The frames come from the dataset assets themselves, invoked
directly on the file, so the check sees exactly what a run gives it. A failing check must name
the file, the rule and an offending row, because that line is all an operator sees in the UI.
The last test runs ``train_and_promote_job`` on a malformed golden file: the blocking check
fails, and nothing downstream of ``golden_eval_set`` is materialized or promoted.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from agent_pipeline.definitions import defs
from agent_pipeline.defs.datasets import assets, checks
from agent_pipeline.defs.resources import RouterFiles, StateFolder
from agent_pipeline.lib.registry.models import ModelRegistry


@pytest.fixture(scope="module")
def golden_rows(small_inputs) -> pd.DataFrame:
    return pd.read_csv(small_inputs.golden, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def training(small_inputs, tmp_path_factory) -> pd.DataFrame:
    """The training_examples asset's value for the small training file (no reviewed feedback)."""
    files = RouterFiles(train_path=str(small_inputs.train))
    return assets.training_examples(
        dg.build_asset_context(), files=files, state=StateFolder(home=str(tmp_path_factory.mktemp("state")))
    ).value


def write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def training_frame(files: RouterFiles, tmp_path: Path) -> pd.DataFrame:
    """The training_examples asset's value for ``files`` (no reviewed feedback)."""
    return assets.training_examples(
        dg.build_asset_context(), files=files, state=StateFolder(home=str(tmp_path / "state"))
    ).value


def golden_frame(path: Path) -> pd.DataFrame:
    """The golden_eval_set asset's value for ``path`` (the frame the checks receive in a run)."""
    return assets.golden_eval_set(files=RouterFiles(golden_path=str(path))).value


def expectations(path: Path) -> dg.AssetCheckResult:
    return checks.golden_eval_set_expectations(files=RouterFiles(golden_path=str(path)), dataset=golden_frame(path))


def test_good_golden_file_passes_expectations(small_inputs):
    result = expectations(small_inputs.golden)
    assert result.passed, result.description
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert str(small_inputs.golden) in result.description
    assert result.metadata["n_failed"].value == 0


def _drop_label(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["label"])


def _unknown_label(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[4, "label"] = "teleport_me"
    return df


def _empty_text(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[7, "text"] = "   "
    return df


def _duplicate_id(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[9, "id"] = df.loc[2, "id"]
    return df


@pytest.mark.parametrize(
    "mutate,rule,evidence",
    [
        (_drop_label, "has_required_columns", ["missing required column(s) 'label' (found:"]),
        (_unknown_label, "labels_known", ["'teleport_me'", "row 4: id='golden-005'"]),
        (_empty_text, "text_not_empty", ["1 of 150 rows have empty or whitespace-only text", "row 7: id='golden-008'"]),
        (_duplicate_id, "ids_unique", ["'golden-003'", "row 2: id='golden-003'", "row 9: id='golden-003'"]),
    ],
    ids=["missing-column", "unknown-label", "empty-text", "duplicate-id"],
)
def test_bad_golden_file_fails_expectations_naming_file_rule_and_row(tmp_path, golden_rows, mutate, rule, evidence):
    path = write(mutate(golden_rows.copy()), tmp_path / "golden_bad.csv")
    result = expectations(path)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert f"{path}: {rule} failed" in result.description
    for text in evidence:
        assert text in result.description
    assert result.metadata[f"{rule}_passed"].value is False


def test_training_minimum_per_label_applies_to_training_only(tmp_path, small_inputs):
    """training_examples needs 20 rows per label (RouterFiles); the eval sets need one."""
    df = pd.read_csv(small_inputs.train, dtype=str, keep_default_na=False)
    thin_label = df["label"].iloc[0]
    thin = df.drop(df.index[df["label"] == thin_label][19:])
    path = write(thin, tmp_path / "train_thin.csv")
    files = RouterFiles(train_path=str(path))
    frame = training_frame(files, tmp_path)
    result = checks.training_examples_expectations(files=files, dataset=frame)
    assert not result.passed
    assert f"{path}: enough_examples_per_label failed" in result.description
    assert f"{thin_label!r} (19)" in result.description
    as_eval_set = checks.golden_eval_set_expectations(files=files, dataset=frame)
    assert as_eval_set.passed, as_eval_set.description


@pytest.mark.parametrize("column", ["text", "label"])
def test_training_file_without_a_required_column_is_named_by_the_check(tmp_path, small_inputs, column):
    """No KeyError on the way: the asset hands the frame to its check, which names the column."""
    df = pd.read_csv(small_inputs.train, dtype=str, keep_default_na=False).drop(columns=[column])
    path = write(df, tmp_path / "train_no_column.csv")
    files = RouterFiles(train_path=str(path))
    result = checks.training_examples_expectations(files=files, dataset=training_frame(files, tmp_path))
    assert not result.passed
    assert f"{path}: has_required_columns failed: missing required column(s) {column!r}" in result.description
    assert "optional: expected_route, id, tags" in result.description


def test_golden_disjoint_from_training_passes_leakage_check(small_inputs, training):
    result = checks.golden_eval_set_no_leakage(training_examples=training, dataset=golden_frame(small_inputs.golden))
    assert result.passed, result.description


def test_golden_text_copied_from_training_fails_leakage_check(tmp_path, golden_rows, small_inputs, training):
    leaked = training["text"].iloc[11]
    df = golden_rows.copy()
    df.loc[20, "text"] = "  " + leaked.upper() + " "
    path = write(df, tmp_path / "golden_leak.csv")
    result = checks.golden_eval_set_no_leakage(training_examples=training, dataset=golden_frame(path))
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert f"{path}: no_text_shared_with_training failed: 1 of 150 rows" in result.description
    assert str(small_inputs.train) in result.description  # where the training copy lives
    assert f"row 20: id='{df.loc[20, 'id']}'" in result.description
    assert f"train_text={leaked!r}" in result.description


def test_malformed_golden_file_stops_the_run_before_anything_downstream(
    pipeline_env, golden_rows, tmp_path, monkeypatch
):
    df = golden_rows.copy()
    df.loc[5, "id"] = df.loc[0, "id"]
    df.loc[6, "label"] = "teleport_me"
    bad = write(df, tmp_path / "golden_malformed.csv")
    monkeypatch.setenv("AGENT_PIPELINE_GOLDEN_DATA", str(bad))
    job = defs().resolve_job_def("train_and_promote_job")
    # The whole job, router_candidate included: "nothing downstream" must hold because the
    # blocking check blocks, not because the selection left the consumers out.
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
        golden = evaluations[("golden_eval_set", "passes_dataset_expectations")]
        assert not golden.passed
        assert f"{bad}: ids_unique failed" in golden.description
        assert f"{bad}: labels_known failed" in golden.description
        assert "'teleport_me'" in golden.description
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert "golden_eval_set" in materialized  # the checked asset itself is stored; its consumers are not
        assert "router_candidate" in materialized  # not downstream of the golden set: trained, never judged
        for key in ("synthetic_eval_set", "candidate_evaluation", "champion_model"):
            assert key not in materialized
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is None
        assert not any(a == "candidate_evaluation" for a, _ in evaluations)  # no gate ran
    assert ModelRegistry(home=pipeline_env).alias_version("champion") is None
