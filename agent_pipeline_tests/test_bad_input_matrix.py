"""Bad input over every file the pipeline reads, as a table: what the user sees, what is left.

Each row names a file kind (landing file, dataset, agents config, router config, baseline,
serving bundle), the fault, and the outcome a user would see: the exit status and the one-line
message of the CLI (naming the file and the row, line or key), the description of the Dagster
``Failure`` or check, and the state afterwards (inference-log and quarantine counts, nothing
written where nothing should be). The policy file's rows live with its loader
(``lib/registry/policy.py``). Everything runs on small inputs: the suite takes well under a minute.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml

from agent_pipeline import cli
from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.errors import StateError
from agent_pipeline.lib.data import expectations
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.evaluation import runs as evaluation
from agent_pipeline.lib.monitoring.ingest import IngestLimits, ingest_partition, load_log
from agent_pipeline.lib.router.agents import load_agent_registry
from agent_pipeline.lib.serving import bundle as serving

DAY = "2026-03-02"
AGENTS = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)


# -- landing files ---------------------------------------------------------------------------------
def rec(i: int, **changes) -> dict:
    r = {
        "timestamp": f"{DAY}T10:00:{i % 60:02d}+00:00",
        "request_id": f"r{i}",
        "text": f"what is my balance {i}",
        "route": "banking",
        "agent": "banking",
        "label": "balance",
        "confidence": 0.9,
        "fallback": False,
        "latency_ms": 0.4,
        "model_version": "1",
        "reviewed_label": None,
    }
    r.update(changes)
    return r


def line(r: dict) -> bytes:
    return json.dumps(r, ensure_ascii=False).encode("utf-8")


GOOD = line(rec(0)) + b"\n" + line(rec(1)) + b"\n"


@dataclass(frozen=True)
class Landing:
    """One landing fault: files to write (name -> bytes, or a callable(landing) that creates it)."""

    files: dict
    valid: int
    quarantined: int
    reasons: dict = field(default_factory=dict)
    rejected: dict = field(default_factory=dict)  # file name -> reason prefix
    unmatched: tuple = ()
    limits: IngestLimits | None = None
    log_texts: tuple | None = None


def _symlink(target):
    return lambda path: path.symlink_to(target)


LANDING = {
    "u2028-inside-a-string": Landing({f"{DAY}-a.jsonl": line(rec(5, text="one\u2028two")) + b"\n" + GOOD}, 3, 0),
    "u0085-inside-a-string": Landing({f"{DAY}-a.jsonl": line(rec(0, text="one\u0085two")) + b"\n"}, 1, 0),
    "bom-one-line-file": Landing({f"{DAY}-a.jsonl": b"\xef\xbb\xbf" + line(rec(0))}, 1, 0),
    "crlf-line-ends": Landing({f"{DAY}-a.jsonl": GOOD.replace(b"\n", b"\r\n")}, 2, 0),
    "garbage-file-beside-a-good-one": Landing(
        {f"{DAY}-a.jsonl": GOOD, f"{DAY}-b.jsonl": b"id,text,label\n1,hi,greeting\n"},
        2,
        1,
        rejected={f"{DAY}-b.jsonl": "cannot be parsed: line 1: Expecting value"},
    ),
    "binary-file": Landing(
        {f"{DAY}-a.jsonl": GOOD, f"{DAY}-b.jsonl": b"\x89PNG\r\n\x1a\n\x00\x00"},
        2,
        1,
        rejected={f"{DAY}-b.jsonl": "cannot be parsed: line 1: not UTF-8"},
    ),
    "one-line-not-utf8": Landing({f"{DAY}-a.jsonl": GOOD + b'{"text": "caf\xe9"}\n'}, 2, 1, reasons={"not UTF-8": 1}),
    "symlink-to-a-system-file": Landing(
        {f"{DAY}-a.jsonl": GOOD, f"{DAY}-b.jsonl": _symlink("/etc/passwd")},
        2,
        1,
        rejected={f"{DAY}-b.jsonl": "refused: a symlink"},
    ),
    "dangling-symlink": Landing(
        {f"{DAY}-b.jsonl": _symlink("/nonexistent/x.jsonl")}, 0, 1, rejected={f"{DAY}-b.jsonl": "refused: a symlink"}
    ),
    "directory-named-like-a-file": Landing(
        {f"{DAY}-a.jsonl": GOOD, f"{DAY}-d.jsonl": lambda p: p.mkdir()},
        2,
        1,
        rejected={f"{DAY}-d.jsonl": "refused: not a regular file"},
    ),
    "misnamed-files": Landing(
        {f"{DAY}-a.jsonl": GOOD, "traffic.jsonl": GOOD, "2026-3-2.jsonl": GOOD},
        2,
        0,
        unmatched=("2026-3-2.jsonl", "traffic.jsonl"),
    ),
    "text-over-the-limit": Landing(
        {f"{DAY}-a.jsonl": GOOD + line(rec(2, text="x" * 5000)) + b"\n"},
        2,
        1,
        reasons={"text: longer than 1000 characters": 1},
        limits=IngestLimits(max_text_chars=1000),
    ),
    "file-over-the-limit": Landing(
        {f"{DAY}-a.jsonl": GOOD + GOOD.replace(b'"r0"', b'"r2"').replace(b'"r1"', b'"r3"')},
        2,
        2,
        reasons={f"file larger than {len(GOOD)} bytes": 2},
        limits=IngestLimits(max_file_bytes=len(GOOD)),
    ),
    "truncated-last-line": Landing({f"{DAY}-a.jsonl": GOOD + line(rec(2))[:40]}, 2, 1, reasons={"invalid JSON": 1}),
    "deeply-nested-json": Landing(
        {f"{DAY}-a.jsonl": GOOD + b'{"a": ' + b"[" * 100_000 + b"\n"}, 2, 1, reasons={"invalid JSON": 1}
    ),
    "raw-nul-in-a-line": Landing(
        {f"{DAY}-a.jsonl": GOOD + line(rec(2)).replace(b"balance 2", b"bal\x00ance") + b"\n"},
        2,
        1,
        reasons={"invalid JSON": 1},
    ),
    "escaped-nul-in-text": Landing(
        {f"{DAY}-a.jsonl": GOOD + line(rec(2, text="bal\x00ance")) + b"\n"},
        2,
        1,
        reasons={"text: contains the control character U+0000": 1},
    ),
    "duplicate-request-id": Landing({f"{DAY}-a.jsonl": GOOD + line(rec(0)) + b"\n"}, 2, 1),
    "record-of-another-day": Landing(
        {f"{DAY}-a.jsonl": GOOD + line(rec(2, timestamp="2026-03-03T00:00:00+00:00")) + b"\n"},
        2,
        1,
        reasons={"timestamp: not on the partition's UTC date": 1},
    ),
    "empty-file": Landing({f"{DAY}-a.jsonl": b""}, 0, 0),
    "personal-data-in-texts": Landing(
        {f"{DAY}-a.jsonl": line(rec(0, text="card 4111 1111 1111 1111, mail me at a.b@example.org")) + b"\n"},
        1,
        0,
        log_texts=("card [CARD], mail me at [EMAIL]",),
    ),
}


@pytest.mark.parametrize("case", list(LANDING), ids=list(LANDING))
def test_landing_file(case, tmp_path):
    spec = LANDING[case]
    landing = tmp_path / "landing"
    landing.mkdir()
    for name, content in spec.files.items():
        if callable(content):
            content(landing / name)
        else:
            (landing / name).write_bytes(content)
    result = ingest_partition(
        landing,
        DAY,
        known_labels=AGENTS.known_labels,
        known_routes=AGENTS.routes,
        out_dir=tmp_path / "log",
        quarantine_dir=tmp_path / "quarantine",
        limits=spec.limits,
    )
    assert (result.n_valid, result.n_quarantined) == (spec.valid, spec.quarantined), result.reasons
    for reason, n in spec.reasons.items():
        assert result.reasons.get(reason) == n, result.reasons
    rejected = {Path(p).name: r for p, r in result.rejected_files.items()}
    assert set(rejected) == set(spec.rejected)
    for name, prefix in spec.rejected.items():
        assert rejected[name].startswith(prefix), rejected[name]
    assert tuple(result.unmatched_files) == spec.unmatched
    # state afterwards: the log holds the valid rows, the quarantine every other one, once
    log = load_log(tmp_path / "log", DAY)
    assert len(log) == spec.valid
    stored = Path(result.quarantine_path).read_text().splitlines() if result.quarantine_path else []
    assert len(stored) == spec.quarantined
    assert "root:" not in "".join(stored)  # a refused symlink is never opened
    if spec.log_texts is not None:
        assert tuple(log["text"]) == spec.log_texts


def test_the_inference_log_asset_reports_rejected_and_misnamed_files(tmp_path):
    from agent_pipeline.defs.monitoring.assets import inference_log
    from agent_pipeline.defs.resources import IngestSettings, RouterFiles, StateFolder

    landing = settings.landing_dir(tmp_path)
    landing.mkdir(parents=True)
    (landing / f"{DAY}-a.jsonl").write_bytes(GOOD)
    (landing / f"{DAY}-b.jsonl").write_bytes(b"not json at all\n")
    (landing / f"{DAY}-c.jsonl").symlink_to("/etc/passwd")
    (landing / "notes.txt").write_text("hello")
    result = dg.materialize(
        [inference_log],
        partition_key=DAY,
        resources={
            "files": RouterFiles(),
            "state": StateFolder(home=str(tmp_path)),
            "ingest_settings": IngestSettings(),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success  # the good file landed
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    parsed, named = checks["landing_files_parsed"], checks["landing_files_named"]
    assert not parsed.passed and parsed.severity == dg.AssetCheckSeverity.ERROR
    assert f"{DAY}-b.jsonl: cannot be parsed: line 1" in parsed.description
    assert f"{DAY}-c.jsonl: refused: a symlink" in parsed.description
    assert not named.passed and "notes.txt" in named.description
    assert checks["traffic_received"].passed
    md = result.asset_materializations_for_node("inference_log")[0].metadata
    assert md["n_valid"].value == 2 and md["n_quarantined"].value == 2 and md["n_rejected_files"].value == 2


# -- datasets: `agent-pipeline evaluate FILE` --------------------------------------------------------
HEADER = "id,text,label\n"
DATASETS = {
    # name: (file name, bytes, what the one-line error names)
    "nul-byte": ("d.csv", (HEADER + "1,hi,greeting\n2,what is my bal\x00ance,balance\n").encode(), "line 3: contains the control character U+0000"),
    "bell-escaped-in-json": ("d.jsonl", b'{"text": "ok", "label": "balance"}\n{"text": "a\\u0007b", "label": "balance"}\n', "row 1 (0-based), column 'text': contains the control character U+0007"),
    "not-utf8": ("d.csv", (HEADER + "1,caf").encode() + b"\xe9,greeting\n", "cannot parse dataset"),
    "missing-label-column": ("d.csv", b"id,text\n1,hi\n", "has_required_columns failed"),
    "unknown-label": ("d.csv", (HEADER + "1,hi,no_such_label\n").encode(), "labels_known failed"),
    "empty-text": ("d.csv", (HEADER + "1,   ,greeting\n").encode(), "text_not_empty failed"),
    "duplicate-ids": ("d.csv", (HEADER + "1,hi,greeting\n1,hello,greeting\n").encode(), "ids_unique failed"),
    "empty-file": ("d.csv", b"", "cannot parse dataset"),
    "not-a-file": ("dir.csv", None, "dataset file not found"),
    "missing-file": ("nope.csv", False, "dataset file not found"),
}  # fmt: skip


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("AGENT_PIPELINE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AGENT_PIPELINE_AGENTS_CONFIG", raising=False)
    return home


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("case", list(DATASETS), ids=list(DATASETS))
def test_dataset_file(case, tmp_path, empty_home, capsys):
    name, content, names = DATASETS[case]
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content is not False:
        path.write_bytes(content)
    code, err = run_cli(capsys, "evaluate", "--dataset", str(path))
    assert code == cli.EXIT_USAGE
    assert err.startswith("error: ") and "\n" not in err, err
    assert str(path) in err and names in err, err
    assert not empty_home.exists()  # refused before any state (MLflow, evaluations) is touched


def test_training_data_with_one_class_fails_before_training(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(HEADER + "".join(f"{i},what is my balance {i},balance\n" for i in range(30)))
    report = expectations.validate_dataset(
        load_dataset(path, AGENTS),
        dataset="training_examples",
        source=str(path),
        known_labels=AGENTS.known_labels,
        min_examples_per_label=20,
        min_labels=2,
    )
    (failure,) = report.failures()
    assert failure.rule == "enough_labels"
    assert failure.message == (
        f"{path}: enough_labels failed: 1 distinct known label(s) ('balance'); training a classifier needs at least 2"
    )


# -- config/agents.yaml and config/router.yaml ------------------------------------------------------
def _agents(edit):
    raw = yaml.safe_load(settings.DEFAULT_AGENTS_CONFIG.read_text())
    edit(raw)
    return raw


def _router(edit):
    raw = yaml.safe_load(settings.DEFAULT_ROUTER_CONFIG.read_text())
    edit(raw)
    return raw


def _set(path: str, value):
    def edit(raw):
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


CONFIGS = {
    # name: (which file, content (dict or raw text), expected one line after "<file>: ")
    "router-C-ten": ("router", _router(_set("classifier.C", "ten")), "classifier.C: Input should be a valid number (got 'ten')"),
    "router-unknown-key": ("router", _router(_set("classifier.Cc", 1.0)), "classifier.Cc: unknown key; did you mean 'C'?"),
    "router-top-level-typo": ("router", _router(_set("rulez", [])), "rulez: unknown key; did you mean 'rules'?"),
    "agents-rule-unknown-label": ("agents", _agents(_set("agents.contracts.rules.0.label", "contract_sumary")), "agents.contracts.rules.0.label: 'contract_sumary' is not one of agent 'contracts''s labels; did you mean 'contract_summary'?"),
    "agents-rule-bad-regex": ("agents", _agents(_set("agents.contracts.rules.1.all.0", "(unclosed")), "agents.contracts.rules.1.all.0: invalid regular expression: missing ), unterminated subpattern at position 0"),
    "agents-rule-without-patterns": ("agents", _agents(_set("agents.contracts.rules.0.all", [])), "agents.contracts.rules.0.all: List should have at least 1 item after validation, not 0 (got [])"),
    "router-rules-left-in-router-config": ("router", _router(_set("rules", [{"name": "x", "all": ["a"], "label": "balance"}])), "rules: moved to the agent map"),
    "router-max-iter-float": ("router", _router(_set("classifier.max_iter", 3.5)), "classifier.max_iter: Input should be a valid integer (got 3.5)"),
    "router-negative-C": ("router", _router(_set("classifier.C", -1)), "classifier.C: Input should be greater than 0 (got -1)"),
    "router-unknown-tier": ("router", _router(_set("classifier.tier", "turbo")), "classifier.tier 'turbo' is not one of fast, accurate, cascade"),
    "router-grid-inverted": ("router", _router(_set("threshold.grid_start", 0.9) and _set("threshold.grid_stop", 0.1)), None),
    "router-not-yaml": ("router", "rules: [\n  - name: x\n classifier: {", "not valid YAML at line"),
    "router-a-list": ("router", "- 1\n- 2\n", "expected a mapping at the top level"),
    "agents-fallback-undeclared": ("agents", _agents(_set("fallback_agent", "no_such_agent")), "fallback_agent: 'no_such_agent' is not declared under agents"),
    "agents-unquoted-no": ("agents", None, "YAML read false as a boolean; quote it ('no') to mean the text"),
    "agents-label-twice": ("agents", _agents(lambda r: r["agents"]["travel"]["labels"].append("balance")), "agents.travel.labels.15: label 'balance' is already listed under agent 'banking'"),
    "agents-oos-assigned": ("agents", _agents(lambda r: r["agents"]["travel"]["labels"].append("oos")), "agents.travel.labels.15: 'oos' means out of scope and cannot have an agent"),
    "agents-endpoint-typo": ("agents", _agents(_set("agents.banking.endpint", "http://x")), "agents.banking.endpint: unknown key; did you mean 'endpoint'?"),
    "agents-negative-timeout": ("agents", _agents(_set("agents.banking.timeout_ms", -5)), "agents.banking.timeout_ms: Input should be greater than 0 (got -5)"),
    "agents-labels-not-a-list": ("agents", _agents(_set("agents.banking.labels", "balance")), "agents.banking.labels: Input should be a valid list (got 'balance')"),
    "agents-empty-file": ("agents", "", "expected a mapping at the top level, got NoneType"),
    "agents-fallback-with-labels": ("agents", _agents(lambda r: r["agents"]["general"]["labels"].append("weather") or r["unassigned"].remove("weather")), "agents.general.labels: the fallback agent takes no labels"),
}  # fmt: skip
CONFIGS["router-grid-inverted"] = (
    "router",
    _router(lambda r: r["threshold"].update(grid_start=0.9, grid_stop=0.1)),
    "threshold.grid_start: 0.9 is above grid_stop 0.1",
)


def _write_config(tmp_path: Path, which: str, content) -> tuple[Path, Path]:
    agents = tmp_path / "agents.yaml"
    router = tmp_path / "router.yaml"
    shutil.copy(settings.DEFAULT_AGENTS_CONFIG, agents)
    shutil.copy(settings.DEFAULT_ROUTER_CONFIG, router)
    target = agents if which == "agents" else router
    if content is None:  # the unquoted `no` case edits the text itself
        target.write_text(settings.DEFAULT_AGENTS_CONFIG.read_text().replace('"no"', "no"))
    elif isinstance(content, str):
        target.write_text(content)
    else:
        target.write_text(yaml.safe_dump(content, sort_keys=False))
    return agents, router


@pytest.mark.parametrize("case", list(CONFIGS), ids=list(CONFIGS))
def test_config_file_is_refused_before_training_in_one_line(case, tmp_path):
    from agent_pipeline.defs.resources import RouterFiles

    which, content, expected = CONFIGS[case]
    agents, router = _write_config(tmp_path, which, content)
    files = RouterFiles(agents_config=str(agents), router_config=str(router))
    with pytest.raises(dg.Failure) as err:
        files.router_settings()  # what router_candidate calls first, before any training
    target = agents if which == "agents" else router
    description = err.value.description
    assert "\n" not in description, description
    assert description.startswith(f"{target}: "), description
    assert expected in description, description
    assert description.endswith("; fix the file before anything is trained")
    assert err.value.metadata["file"].value == str(target)


def test_cli_refuses_a_bad_agents_config_in_one_line(tmp_path, empty_home, capsys, monkeypatch):
    agents, _ = _write_config(tmp_path, "agents", _agents(_set("fallback_agent", "no_such_agent")))
    monkeypatch.setenv("AGENT_PIPELINE_AGENTS_CONFIG", str(agents))
    code, err = run_cli(capsys, "evaluate", "--dataset", str(settings.DEFAULT_GOLDEN_DATA))
    assert code == cli.EXIT_USAGE
    assert err == (
        f"error: {agents}: fallback_agent: 'no_such_agent' is not declared under agents (declared: "
        + ", ".join(sorted(AGENTS.descriptions))
        + "); declare it with `labels: []`"
    )
    assert not empty_home.exists()


def test_training_run_stops_at_a_bad_router_config_with_its_line(tmp_path, small_inputs):
    """The train job fails at router_candidate's first line: nothing trained, registered or promoted."""
    from agent_pipeline.defs.datasets.assets import training_examples, validation_examples
    from agent_pipeline.defs.resources import MlflowRegistry, PolicySettings, RouterFiles, StateFolder
    from agent_pipeline.defs.training.assets import router_candidate

    _, router = _write_config(tmp_path, "router", _router(_set("classifier.C", "ten")))
    files = RouterFiles(
        train_path=str(small_inputs.train),
        validation_path=str(small_inputs.validation),
        golden_path=str(small_inputs.golden),
        agents_config=str(small_inputs.agents_config),
        router_config=str(router),
    )
    home = tmp_path / "home"
    result = dg.materialize(
        [training_examples, validation_examples, router_candidate],
        resources={
            "files": files,
            "state": StateFolder(home=str(home)),
            "mlflow": MlflowRegistry(),
            "policy": PolicySettings(),
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "router_candidate"
    info = failure.event_specific_data.error
    assert info.cls_name == "Failure"
    assert "\n" not in info.message.strip()
    assert info.message.strip().endswith(
        f"{router}: classifier.C: Input should be a valid number (got 'ten'); fix the file before anything is trained"
    )
    assert not settings.mlflow_dir(home).exists()  # no model was logged or registered
    assert not settings.audit_log_path(home).exists()


# -- the baseline pointer ----------------------------------------------------------------------------
BASELINES = {
    "not-json": (b"{not json", "baseline pointer is not JSON"),
    "no-path": (b'{"version": "3"}', "baseline pointer has no 'path'"),
    "path-gone": (b'{"path": "/nonexistent/evaluation"}', "the baseline evaluation is missing"),
    "binary": (b"\xff\xfe\x00", "baseline pointer is not JSON"),
}


@pytest.mark.parametrize("case", list(BASELINES), ids=list(BASELINES))
def test_baseline_pointer(case, tmp_path):
    content, expected = BASELINES[case]
    pointer = settings.baseline_dir(tmp_path) / "current.json"
    pointer.parent.mkdir(parents=True)
    pointer.write_bytes(content)
    with pytest.raises(StateError) as err:
        evaluation.load_baseline(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{pointer}: ") and expected in message and "\n" not in message
    assert message.endswith("bless a baseline again (agent-pipeline bless)")


# -- the serving bundle ------------------------------------------------------------------------------
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _npz(payload: dict) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **payload)
    return buf.getvalue()


BUNDLES = {
    "a-pickle-that-runs-code": (lambda marker: pickle.dumps(_RunsCode(marker)), "not a data-only serving bundle"),
    "random-bytes": (lambda _: os.urandom(256), "not a data-only serving bundle"),
    "empty-file": (lambda _: b"", "not a data-only serving bundle"),
    "npz-without-header": (lambda _: _npz({"coef_t": np.zeros(3)}), "has no header"),
    "object-array": (lambda _: _npz({"x": np.array([{"a": 1}], dtype=object)}), "not a data-only serving bundle"),
    "truncated-zip": (lambda _: _npz({"x": np.zeros(1000)})[:300], "not a data-only serving bundle"),
}


@pytest.mark.parametrize("case", list(BUNDLES), ids=list(BUNDLES))
def test_serving_bundle(case, tmp_path):
    make, expected = BUNDLES[case]
    marker = tmp_path / "code-ran"
    path = serving.bundle_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(make(marker))
    with pytest.raises(serving.BundleError) as err:
        serving.load(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()  # nothing in the file ran


def test_route_never_runs_a_planted_pickle(tmp_path, empty_home):
    """`route`'s first step with a pickle planted at the bundle path: refused unread (the CLI then
    asks the registry, which answers "no alias 'champion'" in an empty home)."""
    import argparse

    marker = tmp_path / "code-ran"
    path = serving.bundle_path(empty_home)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    (path.parent / "champion.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))  # the old name too
    args = argparse.Namespace(text="what is my balance", version=None, alias=None, model_name=None, json=True)
    assert cli._serving_router(args) is None
    assert not marker.exists()
