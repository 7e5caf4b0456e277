"""Dataset validation (GX suite + label counts + leakage) on small good and bad frames, and on the real training set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.data.expectations import check_no_overlap, validate_dataset
from agent_pipeline.lib.router.agents import load_agent_registry

SOURCE = "data/golden_test.csv"
KNOWN_LABELS = {"balance", "book_flight", "oos"}
KNOWN_ROUTES = {"banking", "travel", "fallback"}
ALL_RULES = {
    "has_required_columns",
    "text_not_empty",
    "labels_known",
    "ids_unique",
    "enough_examples_per_label",
    "expected_routes_known",
}


@pytest.fixture(scope="module", autouse=True)
def gx_imported():
    """Import GX once for the module, so its import cost is paid in setup rather than in one test."""
    import great_expectations

    return great_expectations


def good_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["c1", "c2", "c3", "c4", "c5", "c6", "c7"],
            "text": [
                "what is my balance",
                "how much money do i have",
                "book a flight to paris",
                "get me a plane ticket to rome",
                "tell me a poem",
                "what is the meaning of blue",
                "what is the weather on mars",
            ],
            "label": ["balance", "balance", "book_flight", "book_flight", "oos", "oos", "oos"],
            "expected_route": ["banking", "", "travel", "travel", "fallback", "", "fallback"],
            "tags": ["critical", "", "", "", "", "", ""],
        }
    )


def validate(df: pd.DataFrame, **kwargs):
    kwargs = {
        "dataset": "golden_eval_set",
        "source": SOURCE,
        "known_labels": KNOWN_LABELS,
        "known_routes": KNOWN_ROUTES,
        "min_examples_per_label": 2,
    } | kwargs
    return validate_dataset(df, **kwargs)


def failed_rules(report) -> set[str]:
    return {r.rule for r in report.failures()}


def test_good_frame_passes_every_rule():
    report = validate(good_frame())

    assert report.passed
    assert {r.rule for r in report.rules} == ALL_RULES
    assert report.n_rows == 7
    assert report.summary() == f"{SOURCE}: all 6 rules passed on 7 rows"
    meta = report.to_metadata()
    assert (meta["n_rows"], meta["n_rules"], meta["n_failed"], meta["failures"]) == (7, 6, 0, "none")
    assert all(meta[f"{rule}_passed"] for rule in ALL_RULES)


def _set(column, row, value):
    def mutate(df):
        df.loc[row, column] = value
        return df

    return mutate


def _duplicate_id(df):
    df.loc[3, "id"] = df.loc[1, "id"]
    return df


def _thin_label(df):
    df.loc[0, "label"] = "oos"  # leaves one 'balance' row with min_examples_per_label=2
    df.loc[0, "expected_route"] = "fallback"
    return df


@pytest.mark.parametrize(
    ("mutate", "rule", "row", "in_message"),
    [
        (_set("label", 6, "unknown_intent"), "labels_known", 6, "'unknown_intent'"),
        (_set("label", 6, None), "labels_known", 6, "1 of 7 rows have no label"),
        (_set("text", 1, ""), "text_not_empty", 1, "empty or whitespace-only"),
        (_set("text", 1, " \t "), "text_not_empty", 1, "empty or whitespace-only"),
        (_set("text", 1, None), "text_not_empty", 1, "null text"),
        (_duplicate_id, "ids_unique", 1, "'c2'"),
        (_thin_label, "enough_examples_per_label", 1, "'balance' (1)"),
        (_set("expected_route", 0, "weather_agent"), "expected_routes_known", 0, "'weather_agent'"),
    ],
    ids=[
        "unknown_label",
        "null_label",
        "empty_text",
        "whitespace_text",
        "null_text",
        "duplicate_id",
        "thin_label",
        "unknown_route",
    ],
)
def test_each_defect_fails_exactly_its_rule(mutate, rule, row, in_message):
    report = validate(mutate(good_frame()))

    assert not report.passed
    assert failed_rules(report) == {rule}
    failure = report.failures()[0]
    assert failure.message.startswith(f"{SOURCE}: {rule} failed: ")
    assert in_message in failure.message
    assert failure.unexpected_count == 1 or rule == "ids_unique"
    assert failure.examples[0]["row"] == row
    assert set(failure.examples[0]) >= {"row", "id", "text", "label"}
    assert failure.message in report.summary() and f"row {row}:" in report.summary()
    assert report.to_metadata()[f"{rule}_passed"] is False


def test_duplicate_id_names_both_rows():
    failure = validate(_duplicate_id(good_frame())).failures()[0]

    assert failure.unexpected_count == 2
    assert [e["row"] for e in failure.examples] == [1, 3]
    assert {e["id"] for e in failure.examples} == {"c2"}


@pytest.mark.parametrize(
    ("column", "skipped"),
    [
        ("label", {"labels_known", "enough_examples_per_label"}),
        ("text", {"text_not_empty"}),
        ("id", {"ids_unique"}),
    ],
)
def test_missing_column_fails_schema_and_skips_dependent_rules(column, skipped):
    report = validate(good_frame().drop(columns=[column]))

    assert failed_rules(report) == {"has_required_columns"} | skipped
    schema = next(r for r in report.rules if r.rule == "has_required_columns")
    assert f"{SOURCE}: has_required_columns failed: missing required column(s) '{column}'" in schema.message
    assert "optional: expected_route, id, tags" in schema.message
    for rule in report.failures():
        if rule.rule in skipped:
            assert rule.message == f"{SOURCE}: {rule.rule} failed: skipped: column '{column}' missing"


def test_route_rule_is_skipped_without_known_routes_or_column():
    assert "expected_routes_known" not in {r.rule for r in validate(good_frame(), known_routes=None).rules}
    report = validate(good_frame().drop(columns=["expected_route"]))
    assert report.passed and "expected_routes_known" not in {r.rule for r in report.rules}


def test_rows_are_positions_even_with_a_custom_index():
    df = _set("label", 6, "unknown_intent")(good_frame())
    df.index = [100, 101, 102, 103, 104, 105, 106]

    assert validate(df).failures()[0].examples[0]["row"] == 6


def test_empty_frame_fails_for_lack_of_examples():
    report = validate(good_frame().iloc[0:0])

    assert failed_rules(report) == {"enough_examples_per_label"}


def test_metadata_is_flat_and_json_able():
    df = _set("text", 1, None)(_set("label", 6, "unknown_intent")(good_frame()))
    meta = validate(df).to_metadata()

    assert json.loads(json.dumps(meta)) == meta
    assert all(not isinstance(v, (dict, list)) for v in meta.values())
    assert meta["n_failed"] == 2
    assert meta["labels_known_unexpected"] == 1 and meta["text_not_empty_unexpected"] == 1
    assert "labels_known failed" in meta["failures"] and "text_not_empty failed" in meta["failures"]


def test_empty_known_labels_is_an_error_naming_the_source():
    with pytest.raises(ValueError, match=f"{SOURCE}: known_labels is empty"):
        validate(good_frame(), known_labels=[])


def test_overlap_caught_across_case_and_whitespace():
    train = pd.DataFrame({"text": ["book a flight to berlin", "check my balance"], "label": ["book_flight", "balance"]})
    eval_df = good_frame()
    eval_df.loc[0, "text"] = "  Check my   BALANCE\t"

    report = check_no_overlap(eval_df, train, dataset="golden_eval_set", source=SOURCE, train_source="train.csv")

    assert not report.passed
    (rule,) = report.rules
    assert rule.rule == "no_text_shared_with_training" and rule.unexpected_count == 1
    assert rule.message.startswith(f"{SOURCE}: no_text_shared_with_training failed: 1 of 7 rows")
    assert "train.csv" in rule.message and "Check my   BALANCE" in rule.message
    assert rule.examples[0]["row"] == 0 and rule.examples[0]["train_row"] == 1
    assert rule.examples[0]["train_text"] == "check my balance"


def test_overlap_passes_when_disjoint():
    train = pd.DataFrame({"text": ["check my balance", None], "label": ["balance", "oos"]})

    report = check_no_overlap(good_frame(), train, dataset="golden_eval_set", source=SOURCE, train_source="train.csv")

    assert report.passed and report.rules[0].unexpected_count == 0


def test_real_training_set_passes():
    registry = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    df = load_dataset(settings.DEFAULT_TRAIN_DATA, registry)

    report = validate_dataset(
        df,
        dataset="training_examples",
        source=str(settings.DEFAULT_TRAIN_DATA),
        known_labels=registry.known_labels,
        min_examples_per_label=50,
        known_routes=registry.routes,
    )

    assert report.passed, report.summary()
    assert report.n_rows == len(df) > 10_000


def test_a_file_without_label_names_label_not_the_derived_id():
    """A team's file with ``category`` instead of ``label``: the message names ``label`` (``id``
    is derived from text and label, so it is not the user's to add) and lists the optional columns."""
    from agent_pipeline.lib.data.datasets import normalize

    df = normalize(pd.DataFrame({"text": ["hello there"], "category": ["greeting"]}))
    schema = next(r for r in validate(df).rules if r.rule == "has_required_columns")
    assert "missing required column(s) 'label' (found: text, category" in schema.message
    assert "'id'" not in schema.message and "optional: expected_route, id, tags" in schema.message
