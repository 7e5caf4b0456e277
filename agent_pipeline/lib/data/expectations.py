"""Dataset validation with Great Expectations Core 1.x: the rules behind the dataset asset checks.

``validate_dataset`` runs one GX suite (one ephemeral context, one validation) over a dataset
in the project schema (see ``lib/data/datasets.py``) and reports each rule as a ``RuleResult``:

=============================  ==========================================================
rule                           fails when
=============================  ==========================================================
``has_required_columns``       ``text``, ``label`` or ``id`` is missing (the rules that need
                               a missing column fail with "skipped: column X missing")
``text_not_empty``             a text is null, empty or whitespace-only
``labels_known``               a label is null or not among the known labels
``ids_unique``                 an id is null or shared by several rows
``enough_examples_per_label``  a known label present has fewer than ``min_examples_per_label``
                               rows, or the dataset has no rows with a known label (unknown
                               labels are ``labels_known``'s to report)
``expected_routes_known``      a non-empty ``expected_route`` is not a known route (only
                               when ``known_routes`` is given and the column exists)
``enough_labels``              fewer than ``min_labels`` distinct known labels (only when
                               ``min_labels`` > 1: a classifier needs at least two classes)
=============================  ==========================================================

``check_no_overlap`` reports ``no_text_shared_with_training``: no evaluation text may equal a
training text after lowercasing, stripping and collapsing whitespace.

GX has no per-value count expectation, so label counts are computed with pandas. The leakage
rule is a set lookup in pandas too: GX's ``ExpectColumnValuesToNotBeInSet`` re-serialises its
value set for every metric it resolves and takes seconds with a 13k-text training set.
Messages name the source, the rule and the counts; examples give the 0-based row position.
GX is imported inside the function that runs the suite, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

REQUIRED_COLUMNS = ("text", "label", "id")
ROUTE_COLUMN = "expected_route"
MAX_EXAMPLES = 5
MAX_LISTED = 20
BLANK_TEXT_REGEX = r"^\s*$"
_EXAMPLE_COLUMNS = ("id", "text", "label")
_RESULT_FORMAT = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_EXAMPLES,
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule.

    ``unexpected_count`` counts offending rows, except for ``has_required_columns`` (missing
    columns) and ``enough_examples_per_label`` (labels below the minimum). ``examples`` holds
    up to five offending rows as ``{"row", "id", "text", "label", ...}``.
    """

    rule: str
    passed: bool
    message: str
    unexpected_count: int
    examples: list[dict]


@dataclass(frozen=True)
class ValidationReport:
    dataset: str
    source: str
    rules: list[RuleResult]
    n_rows: int

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    def failures(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]

    def _failure_lines(self) -> list[str]:
        lines: list[str] = []
        for rule in self.failures():
            lines.append(rule.message)
            lines.extend(f"  {_describe(example)}" for example in rule.examples)
        return lines

    def summary(self) -> str:
        """One line per failed rule followed by its example rows, or a one-line all-clear."""
        if self.passed:
            return f"{self.source}: all {len(self.rules)} rules passed on {self.n_rows} rows"
        return "\n".join(self._failure_lines())

    def to_metadata(self) -> dict[str, Any]:
        """A flat, JSON-able dict for Dagster metadata (counts, per-rule flags, failure text)."""
        meta: dict[str, Any] = {
            "dataset": self.dataset,
            "source": self.source,
            "n_rows": self.n_rows,
            "n_rules": len(self.rules),
            "n_failed": len(self.failures()),
        }
        for rule in self.rules:
            meta[f"{rule.rule}_passed"] = rule.passed
            meta[f"{rule.rule}_unexpected"] = rule.unexpected_count
        meta["failures"] = "\n".join(self._failure_lines()) or "none"
        return meta


def validate_dataset(
    df: pd.DataFrame,
    *,
    dataset: str,
    source: str,
    known_labels: Iterable[str],
    min_examples_per_label: int = 1,
    known_routes: Iterable[str] | None = None,
    min_labels: int = 1,
) -> ValidationReport:
    """Validate ``df`` against the dataset rules with one GX suite; never raises on bad data."""
    labels = sorted({str(x) for x in known_labels})
    if not labels:
        raise ValueError(f"{source}: known_labels is empty; pass the agent registry's known_labels")
    if min_examples_per_label < 1:
        raise ValueError(f"{source}: min_examples_per_label must be >= 1, got {min_examples_per_label}")
    routes = None if known_routes is None else sorted({str(x) for x in known_routes})
    if routes is not None and not routes:
        raise ValueError(f"{source}: known_routes is empty; pass the agent registry's routes or None")

    frame = df.reset_index(drop=True)
    n = len(frame)
    present = set(frame.columns)
    check_routes = routes is not None and ROUTE_COLUMN in present

    specs: list[tuple[str, str, dict]] = [
        ("has_required_columns", "ExpectColumnToExist", {"column": c}) for c in REQUIRED_COLUMNS
    ]
    if "text" in present:
        specs += [
            ("text_not_empty", "ExpectColumnValuesToNotBeNull", {"column": "text"}),
            ("text_not_empty", "ExpectColumnValuesToNotMatchRegex", {"column": "text", "regex": BLANK_TEXT_REGEX}),
        ]
    if "label" in present:
        specs += [
            ("labels_known", "ExpectColumnValuesToNotBeNull", {"column": "label"}),
            ("labels_known", "ExpectColumnValuesToBeInSet", {"column": "label", "value_set": labels}),
        ]
    if "id" in present:
        specs += [
            ("ids_unique", "ExpectColumnValuesToNotBeNull", {"column": "id"}),
            ("ids_unique", "ExpectColumnValuesToBeUnique", {"column": "id"}),
        ]
    if check_routes:
        # Nulls are skipped by InSet and "" is allowed: empty routes are derived from the label later.
        specs.append(
            (
                "expected_routes_known",
                "ExpectColumnValuesToBeInSet",
                {"column": ROUTE_COLUMN, "value_set": routes + [""]},
            )
        )
    results = _run_suite(frame, specs, dataset=dataset, source=source)

    missing = [r["column"] for r in results["has_required_columns"] if not r["success"]]
    rules = [_columns_rule(source, missing, frame.columns)]
    rules.append(
        _skipped(source, "text_not_empty", "text")
        if "text" in missing
        else _value_rule(
            frame,
            source,
            "text_not_empty",
            results["text_not_empty"],
            null_phrase="have null text",
            bad_phrase="have empty or whitespace-only text",
        )
    )
    rules.append(
        _skipped(source, "labels_known", "label")
        if "label" in missing
        else _value_rule(
            frame,
            source,
            "labels_known",
            results["labels_known"],
            null_phrase="have no label",
            bad_phrase="have labels not in the agent registry",
            show_values=True,
        )
    )
    rules.append(
        _skipped(source, "ids_unique", "id")
        if "id" in missing
        else _value_rule(
            frame,
            source,
            "ids_unique",
            results["ids_unique"],
            null_phrase="have no id",
            bad_phrase="share an id with another row",
            show_values=True,
        )
    )
    rules.append(
        _skipped(source, "enough_examples_per_label", "label")
        if "label" in missing
        else _label_counts_rule(frame, source, labels, min_examples_per_label)
    )
    if min_labels > 1 and "label" not in missing:
        rules.append(_enough_labels_rule(frame, source, labels, min_labels))
    if check_routes:
        rules.append(
            _value_rule(
                frame,
                source,
                "expected_routes_known",
                results["expected_routes_known"],
                null_phrase="",
                bad_phrase=f"have an {ROUTE_COLUMN} not among the {len(routes)} known routes",
                show_values=True,
                extra_column=ROUTE_COLUMN,
            )
        )
    return ValidationReport(dataset=dataset, source=source, rules=rules, n_rows=n)


def check_no_overlap(
    eval_df: pd.DataFrame, train_df: pd.DataFrame, *, dataset: str, source: str, train_source: str
) -> ValidationReport:
    """Report ``no_text_shared_with_training``: evaluation texts must not appear in training.

    Texts are compared after lowercasing, stripping and collapsing whitespace; null texts are
    ignored. Examples carry the evaluation row and the first training row with the same text.
    """
    rule = "no_text_shared_with_training"
    frame = eval_df.reset_index(drop=True)
    n = len(frame)
    if "text" not in frame.columns:
        return ValidationReport(dataset, source, [_skipped(source, rule, "text")], n)
    if "text" not in train_df.columns:
        result = RuleResult(
            rule, False, f"{source}: {rule} failed: skipped: column 'text' missing in {train_source}", 0, []
        )
        return ValidationReport(dataset, source, [result], n)

    train_first: dict[str, int] = {}
    train_texts = train_df["text"].reset_index(drop=True)
    for pos, key in _normalized_texts(train_texts).items():
        if key is not None:
            train_first.setdefault(key, int(pos))
    keys = _normalized_texts(frame["text"])
    shared = [int(pos) for pos, key in keys.items() if key is not None and key in train_first]
    if not shared:
        message = f"{source}: {rule} passed: none of {n} texts appear in {train_source}"
        return ValidationReport(dataset, source, [RuleResult(rule, True, message, 0, [])], n)

    examples = []
    for pos in shared[:MAX_EXAMPLES]:
        train_pos = train_first[keys[pos]]
        examples.append(_example(frame, pos) | {"train_row": train_pos, "train_text": _plain(train_texts[train_pos])})
    shown = ", ".join(repr(_clip(str(frame["text"][p]))) for p in shared[:3])
    message = (
        f"{source}: {rule} failed: {len(shared)} of {n} rows have a text that also appears in "
        f"{train_source} (compared lowercased, whitespace collapsed), e.g. {shown}"
    )
    return ValidationReport(dataset, source, [RuleResult(rule, False, message, len(shared), examples)], n)


def _run_suite(
    frame: pd.DataFrame, specs: list[tuple[str, str, dict]], *, dataset: str, source: str
) -> dict[str, list[dict]]:
    """Run every expectation in one GX suite; return each rule's results in spec order.

    Each result is ``{"type", "column", "success", "result"}``. An expectation that raised
    inside GX is an error, not a failed rule, so it raises ``RuntimeError``.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("datasets")
        .add_dataframe_asset(dataset)
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    expectations = [
        getattr(gx.expectations, cls)(**kwargs, meta={"rule": rule, "order": i})
        for i, (rule, cls, kwargs) in enumerate(specs)
    ]
    validation = batch.validate(
        gx.ExpectationSuite(name=f"{dataset}_rules", expectations=expectations), result_format=_RESULT_FORMAT
    )

    by_order: dict[int, dict] = {}
    for res in validation.results:
        config = res.expectation_config
        error = _raised_message(res.exception_info or {})
        if error is not None:
            raise RuntimeError(
                f"{source}: GX {config.type} on column '{config.kwargs.get('column')}' "
                f"(rule {config.meta['rule']}) raised: {error}"
            )
        by_order[config.meta["order"]] = {
            "type": config.type,
            "column": config.kwargs.get("column"),
            "success": bool(res.success),
            "result": dict(res.result or {}),
        }
    out: dict[str, list[dict]] = {rule: [] for rule, _, _ in specs}
    for i, (rule, _, _) in enumerate(specs):
        out[rule].append(by_order[i])
    return out


def _raised_message(info: dict) -> str | None:
    """The exception message GX recorded for a result (flat or keyed by metric), if any."""
    if "raised_exception" in info:
        return (info.get("exception_message") or "unknown error") if info["raised_exception"] else None
    for value in info.values():
        if isinstance(value, dict):
            message = _raised_message(value)
            if message is not None:
                return message
    return None


def _columns_rule(source: str, missing: list[str], columns: Iterable[Any]) -> RuleResult:
    rule = "has_required_columns"
    if not missing:
        return RuleResult(rule, True, f"{source}: {rule} passed: {', '.join(REQUIRED_COLUMNS)} present", 0, [])
    from agent_pipeline.lib.data.datasets import OPTIONAL_COLUMNS
    from agent_pipeline.lib.data.datasets import REQUIRED_COLUMNS as USER_REQUIRED

    # ``id`` is derived from text and label when absent: name what the file itself must have.
    named = [c for c in missing if c in USER_REQUIRED] or missing
    listed = ", ".join(repr(c) for c in named)
    found = ", ".join(str(c) for c in columns) or "none"
    message = (
        f"{source}: {rule} failed: missing required column(s) {listed} (found: {found}; "
        f"required: {', '.join(USER_REQUIRED)}; optional: {', '.join(OPTIONAL_COLUMNS)})"
    )
    return RuleResult(rule, False, message, len(named), [])


def _skipped(source: str, rule: str, column: str) -> RuleResult:
    return RuleResult(rule, False, f"{source}: {rule} failed: skipped: column '{column}' missing", 0, [])


def _value_rule(
    frame: pd.DataFrame,
    source: str,
    rule: str,
    results: list[dict],
    *,
    null_phrase: str,
    bad_phrase: str,
    show_values: bool = False,
    extra_column: str | None = None,
) -> RuleResult:
    """Turn a rule's GX results (a NotBeNull check first, when present) into one RuleResult."""
    n = len(frame)
    parts: list[str] = []
    rows: set[int] = set()
    total = 0
    for res in results:
        count = int(res["result"].get("unexpected_count", 0))
        if res["success"] or count == 0:
            continue
        total += count
        rows.update(int(i) for i in res["result"].get("partial_unexpected_index_list", []))
        is_null_check = res["type"] == "expect_column_values_to_not_be_null"
        phrase = f"{count} of {n} rows {null_phrase if is_null_check else bad_phrase}"
        if show_values and not is_null_check:
            values = list(dict.fromkeys(_plain(v) for v in res["result"].get("partial_unexpected_list", [])))
            phrase += " (e.g. " + ", ".join(repr(v) for v in values[:3]) + ")"
        parts.append(phrase)
    if total == 0:
        return RuleResult(rule, True, f"{source}: {rule} passed on {n} rows", 0, [])
    examples = [_example(frame, i, extra_column) for i in sorted(rows)[:MAX_EXAMPLES]]
    return RuleResult(rule, False, f"{source}: {rule} failed: " + "; ".join(parts), total, examples)


def _label_counts_rule(frame: pd.DataFrame, source: str, known: list[str], minimum: int) -> RuleResult:
    rule = "enough_examples_per_label"
    labels = frame["label"]
    counts = labels[labels.isin(known)].value_counts()
    if counts.empty:
        return RuleResult(
            rule, False, f"{source}: {rule} failed: no rows with a known label among {len(frame)} rows", 0, []
        )
    thin = sorted((int(c), str(label)) for label, c in counts.items() if c < minimum)
    if not thin:
        return RuleResult(
            rule, True, f"{source}: {rule} passed: all {len(counts)} labels have >= {minimum} rows", 0, []
        )
    listed = ", ".join(f"{label!r} ({c})" for c, label in thin[:MAX_LISTED])
    if len(thin) > MAX_LISTED:
        listed += f" and {len(thin) - MAX_LISTED} more"
    thin_labels = {label for _, label in thin}
    rows = [i for i, label in enumerate(labels) if label in thin_labels]
    message = f"{source}: {rule} failed: {len(thin)} of {len(counts)} labels have fewer than {minimum} rows: {listed}"
    return RuleResult(rule, False, message, len(thin), [_example(frame, i) for i in rows[:MAX_EXAMPLES]])


def _enough_labels_rule(frame: pd.DataFrame, source: str, known: list[str], minimum: int) -> RuleResult:
    rule = "enough_labels"
    present = sorted({str(x) for x in frame["label"] if not _is_null(x) and str(x) in set(known)})
    if len(present) >= minimum:
        return RuleResult(rule, True, f"{source}: {rule} passed: {len(present)} distinct labels", 0, [])
    listed = ", ".join(repr(x) for x in present) or "none"
    message = (
        f"{source}: {rule} failed: {len(present)} distinct known label(s) ({listed}); "
        f"training a classifier needs at least {minimum}"
    )
    return RuleResult(rule, False, message, 1, [])


def _normalized_texts(texts: pd.Series) -> pd.Series:
    """Lowercased, stripped, whitespace-collapsed texts; ``None`` for null texts."""
    return texts.map(lambda t: None if _is_null(t) else " ".join(str(t).lower().split()))


def _example(frame: pd.DataFrame, row: int, extra_column: str | None = None) -> dict:
    columns = _EXAMPLE_COLUMNS + ((extra_column,) if extra_column else ())
    return {"row": row} | {c: _plain(frame[c].iloc[row]) if c in frame.columns else None for c in columns}


def _describe(example: dict) -> str:
    fields = ", ".join(
        f"{k}={_clip(v)!r}" if isinstance(v, str) else f"{k}={v!r}" for k, v in example.items() if k != "row"
    )
    return f"row {example['row']}: {fields}"


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _is_null(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _plain(value: Any) -> Any:
    """A JSON-able Python scalar: ``None`` for nulls, numpy scalars unwrapped."""
    if _is_null(value):
        return None
    return value.item() if hasattr(value, "item") else value
