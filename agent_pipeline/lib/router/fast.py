"""The ``fast`` tier: TF-IDF (+ n-gram counts) into one linear model, and its single-request path.

``FastLinearTextClassifier`` holds both prediction paths of a fitted ``FeatureUnion -> linear
model``: batches build the union's exact feature matrix with ``lib/router/textfeatures.py`` (bit
for bit, 2.5x faster than the vectorizers' own ``transform``); a single request takes
``linear_proba`` (vocabulary indices from the same per-word memo, a sparse dot with the
coefficients, a softmax), which the serving bundle runs too. ``TextClassifier`` is the fast tier
itself (``classifier.fast_model``: LogisticRegression by default, or the opt-in ``svm_nb``
blend). The other tiers (``lib/router/tiers.py``) build on these; nothing here imports them.

Only numpy and ``textfeatures`` at import time (scikit-learn is imported when fitting), so the
serving bundle can import ``linear_proba`` without scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent_pipeline.lib.router.textfeatures import TfidfBlock, union_blocks, union_transform


def linear_proba(text: str, parts, intercept: np.ndarray) -> np.ndarray:
    """Softmax of a linear model over concatenated TF-IDF blocks, for one text, without sparse matrices.

    ``parts``: per block ``(textfeatures.TfidfBlock, coef rows)``; each block's non-zero
    weights (``TfidfBlock.weights_one``) add ``weights @ coef[rows]`` to the scores. The
    single-request path of both the ``fast`` router (``FastLinearTextClassifier``) and the
    serving bundle.
    """
    scores = intercept.copy()
    for block, coef in parts:
        idx, w = block.weights_one(text)
        if len(idx):
            scores += w @ coef[idx]
    scores -= scores.max()
    np.exp(scores, out=scores)
    scores /= scores.sum()
    return scores


class FastLinearTextClassifier:
    """Both fast paths of a fitted ``FeatureUnion(TfidfVectorizer...) -> linear model`` (``coef_``, ``intercept_``, softmax).

    ``transform(texts)`` is the union's ``transform`` through ``lib/router/textfeatures.py`` (the same
    matrix, bit for bit, about 2.5x faster on a batch). ``predict_proba_one(text)`` is the
    single-request path: it looks the text's n-grams up in the vocabulary (the same per-word
    memo), applies sublinear tf, idf and the norm per block, gathers the matching coefficient
    rows and takes a softmax, without sparse matrices; it equals the pipeline's
    ``predict_proba`` to floating-point rounding (tested).
    """

    def __init__(self, features, clf) -> None:
        self.classes_ = np.asarray(clf.classes_)
        coef_t = np.ascontiguousarray(clf.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(clf.intercept_, dtype=np.float64)
        self.blocks = union_blocks(features)
        self._parts = []
        self._dense = []  # opt-in dense blocks (lib/router/static_embedding.py): (transformer, coef rows)
        offset = 0
        for block in self.blocks:
            if isinstance(block, TfidfBlock):
                self._parts.append((block, coef_t[offset : offset + block.n_features]))
                offset += block.n_features
            else:
                n = int(block.n_features_out_)
                self._dense.append((block, coef_t[offset : offset + n]))
                offset += n

    def transform(self, texts: Sequence[str]):
        """The fitted ``FeatureUnion.transform(texts)``, equal bit for bit."""
        return union_transform(self.blocks, texts)

    def predict_proba_one(self, text: str) -> np.ndarray:
        intercept = self._intercept
        for vec, coef in self._dense:
            intercept = intercept + vec.vector(text) @ coef
        return linear_proba(text, self._parts, intercept)


COUNTS_BLOCK = "char_counts"  # the fast tier's raw char_wb counts, read by MultinomialNB only


class TextClassifier:
    """The ``fast`` tier: TF-IDF (+ n-gram counts) into one linear model, with a single-request fast path.

    ``fast_model: logistic_regression`` (default): a LogisticRegression over the TF-IDF blocks (C,
    max_iter, tol); ``svm_nb`` (opt-in, ``lib/router/svm_nb.py``): LinearSVC over the TF-IDF blocks
    blended with MultinomialNB over raw char_wb counts (an extra counts block).
    """

    tier = "fast"

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.classes_ = np.asarray(pipeline.classes_)
        self._fast = FastLinearTextClassifier(pipeline.named_steps["features"], pipeline.named_steps["clf"])

    def __getstate__(self) -> dict:
        # The fast path is a re-arranged copy of the fitted coefficients: rebuilt on load, not
        # stored, which halves every registered model's artifact.
        return {"pipeline": self.pipeline}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["pipeline"])

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], settings) -> TextClassifier:
        """Fit the features and ``settings.fast_model`` (``settings``: ``model.TrainSettings``);
        ``settings.static_embedding_weight`` > 0
        appends the opt-in static token-embedding block (``lib/router/static_embedding.py``)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        blocks = [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float64)),
            (
                "char",
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, dtype=np.float64),
            ),
        ]
        if settings.static_embedding_weight > 0:
            from agent_pipeline.lib.router.static_embedding import StaticTokenEmbedding

            blocks.append(("static", StaticTokenEmbedding(weight=settings.static_embedding_weight)))
        if settings.fast_model == "logistic_regression":
            clf = LogisticRegression(
                C=settings.c, max_iter=settings.max_iter, tol=settings.tol, random_state=settings.seed
            )
            pipeline = Pipeline([("features", FeatureUnion(blocks)), ("clf", clf)]).fit(texts, labels)
            return cls(pipeline)
        from agent_pipeline.lib.router.svm_nb import SvmNbBlend  # opt-in: loaded only when configured

        counts = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), min_df=2, use_idf=False, norm=None, dtype=np.float64
        )  # raw counts: the same n-grams as the char block, for MultinomialNB
        features = FeatureUnion(blocks + [(COUNTS_BLOCK, counts)])
        x = features.fit_transform(texts)
        clf = SvmNbBlend(
            nb_features=len(counts.vocabulary_),
            C=settings.svm_c,
            temperature=settings.svm_temperature,
            alpha=settings.nb_alpha,
            nb_weight=settings.nb_weight,
            nb_temperature=settings.nb_temperature,
            random_state=settings.seed,
        ).fit(x, labels)
        return cls(Pipeline([("features", features), ("clf", clf)]))

    @property
    def tfidf_features(self):
        """The fitted FeatureUnion without the counts block: what the ``accurate`` tier builds on."""
        from sklearn.pipeline import FeatureUnion

        union = self.pipeline.named_steps["features"]
        return FeatureUnion([(name, t) for name, t in union.transformer_list if name != COUNTS_BLOCK])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """``pipeline.predict_proba(texts)``, equal bit for bit, with the features built by
        ``lib/router/textfeatures.py`` (the pipeline's own ``transform`` costs 2.5x as much)."""
        return self.pipeline.named_steps["clf"].predict_proba(self._fast.transform(list(texts)))

    def predict_proba_one(self, text: str) -> np.ndarray:
        return self._fast.predict_proba_one(text)

    @property
    def word_vectorizer(self):
        return self.pipeline.named_steps["features"].transformer_list[0][1]

    @property
    def word_block(self):
        """The word TF-IDF block as ``lib/textfeatures.TfidfBlock`` (``transform`` = the vectorizer's)."""
        return self._fast.blocks[0]
