"""The ``accurate`` and ``cascade`` classifier tiers, behind the ``fast`` tier's interface.

Every tier offers what the router uses: ``classes_``, ``predict_proba(texts)``,
``predict_proba_one(text)`` (the single-request path, equal to ``predict_proba``), ``tier``,
``word_vectorizer`` and ``word_block`` (for the drift features).

``accurate``: one multinomial LogisticRegression over ``[TF-IDF features of the fast tier,
embedding_weight * all-MiniLM-L6-v2 sentence embedding]`` (``lib/router/onnx_encoder.py``: int8 or,
with ``encoder_precision: float32``, float32 weights on onnxruntime, built from the installed
package's weights; no download, no torch).
Its single-request path is the fast tier's hand-written sparse path (with the accurate model's
coefficients) plus one embedding. The pickled classifier holds no encoder weights: it records
the encoder's provenance and fingerprint (weights, tokenizer, graph, precision) and builds the
installed encoder on first use, refusing to run if the fingerprint differs.

``cascade``: the fast tier answers when its top probability reaches ``cascade_threshold``; the
accurate tier answers the rest. ``predict_proba`` returns the probabilities of whichever model
answered, so the confidence scale differs between the two kinds of answer; the router's
threshold is tuned on the cascade's own outputs, which is what it is compared against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent_pipeline.lib.router.embeddings import EmbeddingModelError, embed_cached
from agent_pipeline.lib.router.fast import FastLinearTextClassifier, TextClassifier
from agent_pipeline.lib.router.onnx_encoder import OnnxMiniLMEncoder, get_encoder
from agent_pipeline.lib.router.textfeatures import union_blocks, union_transform


class _LinearPart:
    """The ``classes_ / coef_ / intercept_`` view that ``FastLinearTextClassifier`` reads."""

    def __init__(self, classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.classes_, self.coef_, self.intercept_ = classes, coef, intercept


class AccurateClassifier:
    """The ``accurate`` tier: LogisticRegression over [TF-IDF, weighted sentence embedding]."""

    tier = "accurate"

    def __init__(self, features, clf, embedding_weight: float, encoder: OnnxMiniLMEncoder) -> None:
        self.features = features
        self.clf = clf
        self.classes_ = np.asarray(clf.classes_)
        self.embedding_weight = float(embedding_weight)
        self.embedding = encoder.describe()
        self._encoder: OnnxMiniLMEncoder | None = encoder
        self._build_single_path()

    def _build_single_path(self) -> None:
        dim = int(self.embedding["dim"])
        coef = self.clf.coef_
        self._sparse_one = FastLinearTextClassifier(
            self.features, _LinearPart(self.classes_, coef[:, :-dim], self.clf.intercept_)
        )
        self._embedding_coef_t = np.ascontiguousarray(coef[:, -dim:].T * self.embedding_weight, dtype=np.float64)

    def __getstate__(self) -> dict:
        """Pickle without the encoder (~90 MB of weights) and without the single-path copy of the coefficients."""
        state = dict(self.__dict__)
        state.update(_encoder=None, _sparse_one=None, _embedding_coef_t=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._build_single_path()

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        features,
        embedding_weight: float,
        c: float,
        max_iter: int,
        tol: float,
        seed: int,
        cache_dir: Path | None = None,
        precision: str = "int8",
    ) -> AccurateClassifier:
        """Fit on ``texts``; ``features`` is the fast tier's fitted TF-IDF FeatureUnion
        (``TextClassifier.tfidf_features``, reused as is).

        With ``cache_dir``, embeddings go through ``embed_cached`` so unchanged texts are not
        embedded again on retraining. ``precision``: the encoder's weights, ``int8`` or ``float32``.
        """
        from sklearn.linear_model import LogisticRegression

        texts = [str(t) for t in texts]
        encoder = get_encoder(precision)
        embeddings = encoder.encode(texts) if cache_dir is None else embed_cached(texts, cache_dir, encoder)[0]
        clf = LogisticRegression(C=c, max_iter=max_iter, tol=tol, random_state=seed)
        sparse = union_transform(union_blocks(features), texts)  # = features.transform(texts), bit for bit
        clf.fit(_stack(sparse, embeddings, embedding_weight), list(labels))
        return cls(features, clf, embedding_weight, encoder)

    @classmethod
    def fit_with(
        cls, texts: Sequence[str], labels: Sequence[str], fast, settings, cache_dir: Path | None = None
    ) -> AccurateClassifier:
        """``fit`` with the training settings (``model.TrainSettings``) on ``fast``'s TF-IDF features."""
        return cls.fit(
            texts,
            labels,
            features=fast.tfidf_features,
            embedding_weight=settings.embedding_weight,
            c=settings.c,
            max_iter=settings.max_iter,
            tol=settings.accurate_tol,
            seed=settings.seed,
            cache_dir=cache_dir,
            precision=settings.encoder_precision,
        )

    @property
    def encoder(self) -> OnnxMiniLMEncoder:
        """The installed encoder, loaded on first use and checked against the one trained with."""
        if self._encoder is None:
            encoder = get_encoder(self.embedding.get("precision", "int8"))
            if encoder.fingerprint != self.embedding["fingerprint"]:
                raise EmbeddingModelError(
                    f"accurate tier was trained with {self.embedding['distribution']} {self.embedding['version']} "
                    f"(weights sha256 {self.embedding['weights_sha256'][:16]}, int8 graph "
                    f"{self.embedding.get('graph_sha256', '?')[:16]}), but the installed {encoder.version} gives "
                    f"weights sha256 {encoder.weights_sha256[:16]} (tokenizer {encoder.tokenizer_sha256[:16]}, "
                    f"graph {encoder.graph_sha256[:16]}): install {self.embedding['distribution']}=="
                    f"{self.embedding['version']} and this project's encoder, or retrain the router"
                )
            self._encoder = encoder
        return self._encoder

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        x = _stack(self._sparse_one.transform(texts), self.encoder.encode(texts), self.embedding_weight)
        return self.clf.predict_proba(x)

    def predict_proba_one(self, text: str) -> np.ndarray:
        """``predict_proba([text])[0]`` without sparse matrices or batching.

        The fast path gives softmax(s) of the sparse scores s (intercept included); since
        softmax(log softmax(s) + e) = softmax(s + e), adding the embedding scores e in log space
        gives the full model's probabilities.
        """
        scores = np.log(np.maximum(self._sparse_one.predict_proba_one(text), np.finfo(np.float64).tiny))
        scores += self.encoder.encode_one(text) @ self._embedding_coef_t
        scores -= scores.max()
        np.exp(scores, out=scores)
        scores /= scores.sum()
        return scores

    @property
    def word_vectorizer(self):
        return self.features.transformer_list[0][1]

    @property
    def word_block(self):
        """The word TF-IDF block as ``lib/textfeatures.TfidfBlock`` (``transform`` = the vectorizer's)."""
        return self._sparse_one.blocks[0]


def _stack(sparse, embeddings: np.ndarray, weight: float):
    """[sparse TF-IDF | weight * embeddings] as one CSR matrix, float64."""
    from scipy import sparse as sp

    return sp.hstack([sparse, sp.csr_matrix(embeddings.astype(np.float64) * weight)], format="csr")


class CascadeClassifier:
    """The ``cascade`` tier: ``fast`` when it is sure (top probability >= threshold), else ``accurate``."""

    tier = "cascade"

    def __init__(self, fast: TextClassifier, accurate: AccurateClassifier, threshold: float) -> None:
        if list(fast.classes_) != list(accurate.classes_):
            raise ValueError("cascade: the fast and accurate tiers were trained on different label sets")
        self.fast = fast
        self.accurate = accurate
        self.threshold = float(threshold)
        self.classes_ = fast.classes_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Fast probabilities where fast is sure, accurate probabilities elsewhere."""
        texts = [str(t) for t in texts]
        proba = self.fast.predict_proba(texts)
        unsure = np.flatnonzero(proba.max(axis=1) < self.threshold)
        if len(unsure):
            proba[unsure] = self.accurate.predict_proba([texts[i] for i in unsure])
        return proba

    def predict_proba_one(self, text: str) -> np.ndarray:
        proba = self.fast.predict_proba_one(text)
        return proba if proba.max() >= self.threshold else self.accurate.predict_proba_one(text)

    @property
    def word_vectorizer(self):
        return self.fast.word_vectorizer

    @property
    def word_block(self):
        return self.fast.word_block
