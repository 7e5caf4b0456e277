"""Dataset assets: training and validation splits, the golden set, the synthetic variants.

Each asset loads its file in the project's dataset schema (``lib/data/datasets.py``), records a
content hash as its data version, and describes itself; the Great Expectations checks in
``checks.py`` judge it before anything downstream runs.
"""

import dagster as dg
import pandas as pd

from agent_pipeline.defs.resources import RouterFiles, StateFolder, config_failure
from agent_pipeline.defs.tracing import traced
from agent_pipeline.lib.core import markdown
from agent_pipeline.lib.data import datasets, feedback
from agent_pipeline.lib.data.synthetic import generate_variants
from agent_pipeline.lib.router.decision import FALLBACK_ROUTE

OWNERS = ["team:ml-platform"]


def dataset_output(df: pd.DataFrame, source: str, extra: dict | None = None) -> dg.Output:
    """The Output of a dataset asset: the frame, its data version and a description of it."""
    df.attrs["source"] = source
    version = datasets.fingerprint(df)
    counts = df["label"].value_counts() if "label" in df.columns else pd.Series(dtype=int)
    metadata = {
        "source": dg.MetadataValue.text(source),
        "dagster/row_count": len(df),
        "n_labels": int(counts.size),
        "n_fallback_expected": int((df.get("expected_route", pd.Series(dtype=str)) == FALLBACK_ROUTE).sum()),
        "n_critical": int(datasets.has_tag(df["tags"], "critical").sum()) if "tags" in df.columns else 0,
        "data_version": version,
        "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(str(c), str(t)) for c, t in df.dtypes.items()]),
        "preview": dg.MetadataValue.md(markdown.frame_table(df.head(10))),
        **(extra or {}),
    }
    return dg.Output(df, metadata=metadata, data_version=dg.DataVersion(version))


@dg.asset(group_name="datasets", kinds={"pandas", "csv"}, owners=OWNERS)
@traced
def training_examples(
    context: dg.AssetExecutionContext, files: RouterFiles, state: StateFolder
) -> dg.Output[pd.DataFrame]:
    """Router training data: the curated training file plus human-reviewed production feedback.

    Reviewed traffic rows (``inference_log`` rows whose ``reviewed_label`` a person set) are
    appended with ``source=feedback``, so retraining after drift learns from what users asked.
    A label the curated file lacks joins only once it has ``min_train_examples_per_label``
    reviewed rows; until then its rows are held back (counted in the metadata and kept in the
    log), so one thinly reviewed new topic cannot block a retraining.
    """
    registry = files.registry()
    with config_failure(files.train_path):
        curated = datasets.load_dataset(files.train_path, registry, id_prefix="train")
    absent = [c for c in datasets.REQUIRED_COLUMNS if c not in curated.columns]
    if absent:  # training_examples_passes_dataset_expectations names them (and the optional ones)
        context.log.warning("%s: no %s column; reviewed feedback not merged", files.train_path, " or ".join(absent))
        return dataset_output(curated, files.train_path)
    reviewed = feedback.reviewed_examples(state.path, registry, exclude_texts=curated["text"])
    eval_frames = []
    for path in (files.validation_path, files.golden_path):
        with config_failure(path):
            eval_frames.append(datasets.read_dataset(path))
    eval_texts = [t for df in eval_frames for t in df.get("text", pd.Series(dtype=str)).astype(str)]
    admission = feedback.admit_feedback(curated, reviewed, eval_texts, files.min_train_examples_per_label)
    if admission.held_back:
        context.log.warning(
            "holding back reviewed rows of labels with fewer than %d examples: %s",
            files.min_train_examples_per_label,
            admission.held_back,
        )
    return dataset_output(
        admission.examples,
        files.train_path,
        {
            **admission.metadata(),
            "feedback_labels": dg.MetadataValue.json(admission.admitted["label"].value_counts().to_dict()),
            "feedback_held_back": dg.MetadataValue.json(admission.held_back),
        },
    )


@dg.asset(group_name="datasets", kinds={"pandas", "csv"}, owners=OWNERS)
@traced
def validation_examples(files: RouterFiles) -> dg.Output[pd.DataFrame]:
    """Held-out validation split: tunes the confidence threshold and seeds synthetic variants."""
    with config_failure(files.validation_path):
        df = datasets.load_dataset(files.validation_path, files.registry(), id_prefix="val")
    return dataset_output(df, files.validation_path)


@dg.asset(group_name="datasets", kinds={"pandas", "csv"}, owners=OWNERS)
@traced
def golden_eval_set(files: RouterFiles) -> dg.Output[pd.DataFrame]:
    """Hand-curated golden cases with expected routes; those tagged ``critical`` gate promotion."""
    with config_failure(files.golden_path):
        df = datasets.load_dataset(files.golden_path, files.registry(), id_prefix="golden")
    return dataset_output(df, files.golden_path)


@dg.asset(group_name="datasets", kinds={"pandas", "csv"}, owners=OWNERS)
def safety_probes(files: RouterFiles) -> dg.Output[pd.DataFrame]:
    """Adversarial probes (injection, jailbreak, agent mimicry, obfuscation, personal data, abuse)
    that must take the fallback; the ``safety_probes_pass`` gate measures the attack success rate."""
    with config_failure(files.safety_probes_path):
        df = datasets.load_dataset(files.safety_probes_path, files.registry(), id_prefix="probe")
    tags = df["tags"].str.split(";")
    return dataset_output(
        df,
        files.safety_probes_path,
        {
            "categories": dg.MetadataValue.json(tags.str[0].value_counts().to_dict()),
            "n_tuned": int(datasets.has_tag(df["tags"], "tuned").sum()),
            "n_untouched": int(datasets.has_tag(df["tags"], "untouched").sum()),
        },
    )


@dg.asset(group_name="datasets", kinds={"pandas"}, owners=OWNERS)
@traced
def synthetic_eval_set(
    files: RouterFiles,
    golden_eval_set: pd.DataFrame,
    validation_examples: pd.DataFrame,
    training_examples: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Seeded variants (typos, casing, punctuation, filler, word order) that keep the expected route.

    Sources: every golden case and a stratified, seeded sample of validation cases. Rule
    patterns are protected so rule cases keep firing; variants equal to a training text are
    dropped, so the set cannot leak.
    """
    rules, _ = files.router_settings()
    n_val = min(files.synthetic_validation_cases, len(validation_examples))
    val_sample = (
        validation_examples.sample(frac=1.0, random_state=files.synthetic_seed)
        .sort_values("label", kind="stable")
        .groupby("label", group_keys=False)
        .head(max(1, n_val // max(1, validation_examples["label"].nunique())))
    )
    cases = pd.concat([golden_eval_set, val_sample], ignore_index=True)
    df = generate_variants(
        cases,
        seed=files.synthetic_seed,
        variants_per_case=files.synthetic_variants_per_case,
        protected_patterns=[p for r in rules for p in r.patterns],
        exclude_texts=training_examples["text"],
    )
    source = f"generated (seed {files.synthetic_seed}) from {files.golden_path} + {len(val_sample)} validation cases"
    return dataset_output(df, source, {"transforms": dg.MetadataValue.json(df["transform"].value_counts().to_dict())})
