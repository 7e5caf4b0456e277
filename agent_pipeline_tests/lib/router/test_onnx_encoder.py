"""The int8 onnxruntime encoder the accurate tier serves with, against the NumPy reference.

The graph is checked in two steps: with float32 MatMuls it must equal the NumPy encoder (so the
graph is the same network), and with int8 weights it must stay close to sentence-transformers'
own vectors (so quantization kept the meaning). Then what the router's gates rely on: one text
alone equals the same text in a batch, bit for bit, and the same weights give the same graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent_pipeline.lib.router.embeddings import MiniLMEncoder, embed_cached
from agent_pipeline.lib.router.onnx_encoder import OnnxMiniLMEncoder, build_model

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "minilm_reference.npz"
TEXTS = [
    "book a flight to paris",
    "reserve a plane ticket to paris",
    "what is my bank balance",
    "Can you summarise this contract for me?",
    "hi",
    "  leading and trailing spaces  ",
    "a much longer request that goes on and on about the transfer of funds between two of my accounts " * 3,
]


@pytest.fixture(scope="module")
def reference():
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def int8(reference):
    return OnnxMiniLMEncoder(reference)


def test_float32_graph_is_the_numpy_network(reference):
    f32 = OnnxMiniLMEncoder(reference, quantize=False)
    got = np.vstack([f32.encode_one(t) for t in TEXTS])
    want = np.vstack([reference.encode_one(t) for t in TEXTS])
    assert np.abs(got - want).max() < 1e-5


def test_int8_graph_stays_close_to_sentence_transformers(int8):
    with np.load(FIXTURE) as data:
        sentences, want = [str(s) for s in data["sentences"]], data["embeddings"]
    got = int8.encode(sentences)
    assert got.dtype == np.float32 and got.shape == want.shape
    cosine = (got * want).sum(axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.97, cosine
    assert cosine.mean() > 0.985, cosine
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_batch_equals_single_bit_for_bit(int8):
    batch = int8.encode(TEXTS * 3)  # enough texts to go through the thread pool
    single = np.vstack([int8.encode_one(t) for t in TEXTS * 3])
    np.testing.assert_array_equal(batch, single)
    assert int8.encode([]).shape == (0, int8.dim)


def test_graph_is_deterministic_and_fingerprinted(reference, int8):
    again = build_model(reference).SerializeToString()
    import hashlib

    assert hashlib.sha256(again).hexdigest() == int8.graph_sha256
    info = int8.describe()
    assert info["runtime"] == "onnxruntime" and info["weights"].startswith("int8")
    assert info["license"] == "Apache-2.0" and info["weights_sha256"] == reference.weights_sha256
    assert int8.fingerprint != reference.fingerprint  # cached vectors of the two never mix


def test_int8_weights_are_a_quarter_of_float32(reference):
    def weight_bytes(model):
        return sum(len(t.raw_data) for t in model.graph.initializer if t.name.startswith("l"))

    ratio = weight_bytes(build_model(reference)) / weight_bytes(build_model(reference, quantize=False))
    assert 0.25 <= ratio < 0.27  # int8 weights plus per-column scales and float32 biases


def test_meaning_survives_quantization(int8):
    v = int8.encode(TEXTS[:3])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_cache_keys_follow_the_encoder(int8, tmp_path):
    texts = ["cancel my reservation", "play some jazz"]
    first, n_first = embed_cached(texts, tmp_path, int8)
    again, n_again = embed_cached(texts, tmp_path, int8)
    assert (n_first, n_again) == (2, 0)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, int8.encode(texts))
    assert [p.name for p in tmp_path.iterdir()] == [int8.fingerprint[:16]]
