"""The serving bundle holds data only: it is checked before use, and nothing in it runs code."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from agent_pipeline.lib.core import settings
from agent_pipeline.lib.core.secrets import redact_uri
from agent_pipeline.lib.data.datasets import load_dataset
from agent_pipeline.lib.router.agents import load_agent_registry, load_yaml
from agent_pipeline.lib.router.model import rules_from_config, train_router
from agent_pipeline.lib.serving import bundle as serving
from agent_pipeline_tests.conftest import quick_train_settings


class _Payload:
    """Unpickling this creates a file: proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    agents = load_agent_registry(settings.DEFAULT_AGENTS_CONFIG)
    raw = load_yaml(settings.DEFAULT_ROUTER_CONFIG, "router config")
    train = load_dataset(settings.DEFAULT_TRAIN_DATA, agents).groupby("label", group_keys=False).head(25)
    val = load_dataset(settings.DEFAULT_VALIDATION_DATA, agents)
    router, _ = train_router(
        train,
        val.groupby("label", group_keys=False).head(5),
        agents,
        rules_from_config(raw, agents),
        quick_train_settings(raw),
    )
    path = tmp_path_factory.mktemp("serving") / "champion.npz"
    serving.export(router, "agent-router", "4", path, tracking_uri="postgresql://app:s3cret@db:5432/mlflow")
    return router, val, path


def test_bundle_routes_the_full_validation_split_like_the_router(exported):
    router, val, path = exported
    fast = serving.load(path)
    texts = val["text"].tolist()
    assert len(texts) > 2000  # the validation split (2,222 rows since the holdout was carved from it)
    for text in texts:
        want, got = router.route(text).to_dict(), fast.route(text)
        assert abs(want.pop("confidence") - got.pop("confidence")) < 1e-12, text
        assert got == want, text


def test_bundle_is_a_zip_of_plain_arrays_with_credentials_redacted(exported):
    _, _, path = exported
    with zipfile.ZipFile(path) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())
    with np.load(path, allow_pickle=False) as npz:  # no object arrays anywhere
        assert all(npz[k].dtype != object for k in npz.files)
    assert b"s3cret" not in path.read_bytes()
    assert serving.load(path).tracking_uri == "postgresql://app:***@db:5432/mlflow"


def test_a_pickle_at_the_bundle_path_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "champion.npz"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(serving.BundleError, match=r"champion.npz: not a data-only serving bundle"):
        serving.load(path)
    assert not marker.exists()


def test_a_tampered_bundle_is_refused_by_its_hash(exported, tmp_path):
    _, _, path = exported
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    key = next(k for k in data if k != serving.HEADER_KEY and data[k].dtype == np.float64 and data[k].size > 1)
    data[key] = data[key].copy()
    data[key].flat[0] += 1.0
    bad = tmp_path / "champion.npz"
    np.savez(bad, **data)
    with pytest.raises(serving.BundleError, match="does not match its SHA-256"):
        serving.load(bad)


@pytest.mark.parametrize(
    "payload,message",
    [
        ({"x": np.zeros(2)}, "has no header"),
        ({serving.HEADER_KEY: np.frombuffer(b"not json", dtype=np.uint8)}, "header is not JSON"),
        ({serving.HEADER_KEY: np.frombuffer(b'{"file_format": "other"}', dtype=np.uint8)}, "file format 'other'"),
    ],
)
def test_foreign_npz_files_are_refused_in_one_line(tmp_path, payload, message):
    path = tmp_path / "champion.npz"
    np.savez(path, **payload)
    with pytest.raises(serving.BundleError, match=message) as err:
        serving.load(path)
    assert "\n" not in str(err.value)


def test_an_incomplete_bundle_is_refused(tmp_path):
    path = serving.write_bundle({"format": 1, "model_name": "m"}, tmp_path / "champion.npz")
    with pytest.raises(serving.BundleError, match="serving bundle is incomplete"):
        serving.load(path)
    with pytest.raises(serving.BundleError, match="cannot store a set"):
        serving.write_bundle({"x": {1, 2}}, tmp_path / "other.npz")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("postgresql://app:s3cret@db:5432/mlflow", "postgresql://app:***@db:5432/mlflow"),
        ("https://bob@mlflow.internal", "https://***@mlflow.internal"),
        ("https://h/x?token=abc&y=1", "https://h/x?token=***&y=1"),
        ("error reaching https://u:p@h:5000/api (timeout)", "error reaching https://u:***@h:5000/api (timeout)"),
        ("https://ghp_abc123@github.com/x", "https://***@github.com/x"),
        ("sqlite:////tmp/state/mlflow.db", "sqlite:////tmp/state/mlflow.db"),
        ("", ""),
    ],
)
def test_redact_uri(text, expected):
    assert redact_uri(text) == expected
