"""Blocking Great Expectations checks on every dataset asset.

``passes_dataset_expectations``: schema, no empty text, known labels, unique ids, enough
examples per label, known expected routes, and at least two labels in training data. ``no_text_shared_with_training``: an evaluation or
validation text that also appears in training data would inflate every metric. A failing check
names the file, the rule and example rows, and nothing downstream of the dataset runs.
"""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import RouterFiles
from agent_pipeline.lib.data import expectations


def check_result(report: expectations.ValidationReport) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.summary(),
        metadata={k: v for k, v in report.to_metadata().items() if v is not None},
    )


def _source(df: pd.DataFrame, default: str) -> str:
    return str(df.attrs.get("source") or default)


def expectations_check(asset: str, min_examples: int | None) -> dg.AssetChecksDefinition:
    """The GX suite check for one dataset; ``min_examples=None`` uses the training setting."""

    @dg.asset_check(
        asset=asset,
        name="passes_dataset_expectations",
        blocking=True,
        description=f"Great Expectations suite on {asset}: schema, non-empty text, known labels and routes, "
        "unique ids, enough examples per label.",
    )
    def _check(files: RouterFiles, dataset: pd.DataFrame) -> dg.AssetCheckResult:
        df = dataset
        registry = files.registry()
        report = expectations.validate_dataset(
            df,
            dataset=asset,
            source=_source(df, asset),
            known_labels=registry.known_labels,
            min_examples_per_label=files.min_train_examples_per_label if min_examples is None else min_examples,
            known_routes=registry.routes,
            min_labels=2 if asset == "training_examples" else 1,
        )
        return check_result(report)

    return _check


def leakage_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="no_text_shared_with_training",
        blocking=True,
        additional_ins={"training_examples": dg.AssetIn("training_examples")},
        description=f"No text of {asset} appears in training_examples (case- and whitespace-insensitive).",
    )
    def _check(training_examples: pd.DataFrame, dataset: pd.DataFrame) -> dg.AssetCheckResult:
        df = dataset
        report = expectations.check_no_overlap(
            df,
            training_examples,
            dataset=asset,
            source=_source(df, asset),
            train_source=_source(training_examples, "training_examples"),
        )
        return check_result(report)

    return _check


training_examples_expectations = expectations_check("training_examples", None)
validation_examples_expectations = expectations_check("validation_examples", 1)
golden_eval_set_expectations = expectations_check("golden_eval_set", 1)
synthetic_eval_set_expectations = expectations_check("synthetic_eval_set", 1)
safety_probes_expectations = expectations_check("safety_probes", 1)
validation_examples_no_leakage = leakage_check("validation_examples")
golden_eval_set_no_leakage = leakage_check("golden_eval_set")
synthetic_eval_set_no_leakage = leakage_check("synthetic_eval_set")
