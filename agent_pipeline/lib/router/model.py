"""The agent router: declared rules, a scikit-learn intent classifier, the agent map, a threshold.

A decision is made in this order, and the same text always gets the same decision:

1. **Rules** (``config/router.yaml``) are tried first, in order. A rule fires when all of its
   regular expressions match; it sets the label, and the agent registry gives the route.
2. The **classifier** predicts a fine-grained label (a CLINC150 intent, or ``oos``) with a
   confidence (the top softmax probability).
3. The **fallback** general agent takes the request when the confidence is below the threshold
   (``low_confidence``), when the label is ``oos`` (``out_of_scope``) or when the label has no
   agent in the registry (``no_agent``). Otherwise the **agent map** gives the route.

The classifier is TF-IDF (word 1-2 grams + char_wb 2-5 grams, sublinear tf) into a multinomial
LogisticRegression (``classifier.fast_model: svm_nb``, opt-in: a LinearSVC + MultinomialNB blend
over the same features plus raw char_wb counts, ``lib/router/svm_nb.py``; also one linear model).
``FastLinearTextClassifier`` holds both prediction paths: batches build the fitted union's exact
feature matrix with ``lib/router/textfeatures.py`` (bit for bit, 2.5x faster than the vectorizers' own
``transform``) for the linear model; a single request takes a
hand-written path (vocabulary indices from the same per-word memo, a sparse dot with the
coefficients, a softmax) that gives the same probabilities as ``predict_proba`` at a fraction of
the per-call overhead. A positive (opt-in)
``classifier.static_embedding_weight`` appends a static token-embedding block
(``lib/router/static_embedding.py``) to the features.

No Dagster import here: the router is trained and used by the Dagster assets, the CLI and the
MLflow pyfunc wrapper alike.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from agent_pipeline.lib.router.agents import FALLBACK_ROUTE, OOS_LABEL, AgentRegistry, ConfigError
from agent_pipeline.lib.router.textfeatures import TfidfBlock, union_blocks, union_transform
from agent_pipeline.lib.serving.bundle import linear_proba

DECISION_COLUMNS = (
    "route",
    "agent",
    "pred_label",
    "decided_label",
    "confidence",
    "fallback",
    "fallback_reason",
    "rule",
)
N_PROJECTION = 8
_WORD_RE = re.compile(r"(?u)\b\w\w+\b")


@dataclass(frozen=True)
class Rule:
    """A declared rule: fires when every pattern matches (case-insensitive search)."""

    name: str
    patterns: tuple[str, ...]
    label: str
    _compiled: tuple[re.Pattern, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def create(cls, name: str, patterns: Sequence[str], label: str) -> Rule:
        try:
            compiled = tuple(re.compile(p, re.IGNORECASE) for p in patterns)
        except re.error as exc:
            raise ConfigError(f"rule '{name}': invalid regular expression: {exc}") from exc
        if not compiled:
            raise ConfigError(f"rule '{name}': needs at least one pattern in 'all'")
        return cls(name, tuple(patterns), label, compiled)

    def matches(self, text: str) -> bool:
        return all(p.search(text) for p in self._compiled)


def rules_from_config(raw: dict, registry: AgentRegistry, source: str = "router config") -> list[Rule]:
    rules = []
    for spec in raw.get("rules") or []:
        if not isinstance(spec, dict) or not {"name", "all", "label"} <= set(spec):
            raise ConfigError(f"{source}: each rule needs 'name', 'all' and 'label', got {spec!r}")
        if spec["label"] not in registry.known_labels:
            raise ConfigError(
                f"{source}: rule '{spec['name']}' sets label '{spec['label']}', unknown to the agent registry"
            )
        rules.append(Rule.create(str(spec["name"]), [str(p) for p in spec["all"]], str(spec["label"])))
    return rules


@dataclass(frozen=True)
class Decision:
    route: str
    agent: str
    pred_label: str
    decided_label: str
    confidence: float
    fallback: bool
    fallback_reason: str
    rule: str

    def to_dict(self) -> dict:
        return asdict(self)


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
    def fit(cls, texts: Sequence[str], labels: Sequence[str], settings: TrainSettings) -> TextClassifier:
        """Fit the features and ``settings.fast_model``; ``settings.static_embedding_weight`` > 0
        appends the opt-in static token-embedding block (``lib/router/static_embedding.py``)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        from agent_pipeline.lib.router.svm_nb import SvmNbBlend

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


class Router:
    """Rules, classifier, agent map and threshold: one deterministic decision per text."""

    def __init__(
        self,
        classifier: TextClassifier,
        registry: AgentRegistry,
        rules: Sequence[Rule],
        threshold: float,
        projection=None,
        info: dict | None = None,
    ) -> None:
        self.classifier = classifier
        self.registry = registry
        self.rules = list(rules)
        self.threshold = float(threshold)
        self.projection = projection
        self.info = dict(info or {})
        self._classes = [str(c) for c in classifier.classes_]
        self._class_routes = [self._route_for(c) for c in self._classes]

    # -- decisions -------------------------------------------------------------------------
    def _route_for(self, label: str) -> tuple[str, str]:
        """(route, fallback_reason) for a confident classifier label."""
        if label == OOS_LABEL:
            return FALLBACK_ROUTE, "out_of_scope"
        route = self.registry.route_for_label(label)
        return route, ("no_agent" if route == FALLBACK_ROUTE else "")

    def _rule_for(self, text: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(text):
                return rule
        return None

    def _decide(self, rule: Rule | None, k: int, confidence: float) -> Decision:
        if rule is not None:
            route = self.registry.route_for_label(rule.label)
            reason = "no_agent" if route == FALLBACK_ROUTE else ""
            return Decision(
                route,
                self.registry.agent_for_route(route),
                rule.label,
                rule.label,
                1.0,
                bool(reason),
                reason,
                rule.name,
            )
        label = self._classes[k]
        if confidence < self.threshold:
            route, reason, decided = FALLBACK_ROUTE, "low_confidence", OOS_LABEL
        else:
            route, reason = self._class_routes[k]
            decided = OOS_LABEL if reason == "out_of_scope" else label
        return Decision(
            route, self.registry.agent_for_route(route), label, decided, confidence, route == FALLBACK_ROUTE, reason, ""
        )

    def route(self, text: str) -> Decision:
        """Route one request (the latency-critical path)."""
        text = "" if text is None else str(text)
        rule = self._rule_for(text)
        if rule is not None:
            return self._decide(rule, -1, 1.0)
        proba = self.classifier.predict_proba_one(text)
        k = int(proba.argmax())
        return self._decide(None, k, float(proba[k]))

    def route_batch(self, texts: Iterable[str]) -> pd.DataFrame:
        """Route many requests at once (vectorised features and decisions); one row per text."""
        texts = ["" if t is None else str(t) for t in texts]
        if not texts:
            return pd.DataFrame(columns=list(DECISION_COLUMNS))
        rules = [self._rule_for(t) for t in texts]
        need = [i for i, r in enumerate(rules) if r is None]
        top = np.zeros(len(texts), dtype=np.intp)
        conf = np.ones(len(texts), dtype=np.float64)
        if need:
            proba = self.classifier.predict_proba([texts[i] for i in need])
            top[need] = proba.argmax(axis=1)
            conf[need] = proba[np.arange(len(need)), top[need]]
        # Decisions as columns (the same rules as _decide, vectorised: per-row objects cost more
        # than the classifier on large batches).
        classes = np.asarray(self._classes, dtype=object)
        pred = classes[top]
        route = np.asarray([r for r, _ in self._class_routes], dtype=object)[top]
        reason = np.asarray([x for _, x in self._class_routes], dtype=object)[top]
        decided = np.where(reason == "out_of_scope", OOS_LABEL, pred).astype(object)
        low = conf < self.threshold
        route[low], reason[low], decided[low] = FALLBACK_ROUTE, "low_confidence", OOS_LABEL
        rule_names = np.full(len(texts), "", dtype=object)
        for i, rule in enumerate(rules):
            if rule is not None:
                d = self._decide(rule, -1, 1.0)
                route[i], reason[i], pred[i], decided[i], rule_names[i] = (
                    d.route,
                    d.fallback_reason,
                    d.pred_label,
                    d.decided_label,
                    d.rule,
                )
        is_fallback = route == FALLBACK_ROUTE
        return pd.DataFrame(
            {
                "route": route,
                "agent": np.where(is_fallback, self.registry.fallback_agent, route).astype(object),
                "pred_label": pred,
                "decided_label": decided,
                "confidence": conf,
                "fallback": is_fallback,
                "fallback_reason": reason,
                "rule": rule_names,
            },
            columns=list(DECISION_COLUMNS),
        )

    # -- monitoring features ---------------------------------------------------------------
    def text_features(self, texts: Sequence[str]) -> pd.DataFrame:
        """Numeric features of raw text for drift monitoring.

        ``text_length`` and ``word_count``; ``oov_rate``: the share of words the router never
        saw in training; ``proj_0..proj_7``: a TruncatedSVD projection of the word TF-IDF
        features fitted on the training texts, so a new topic shows even when the route mix
        does not move.
        """
        texts = ["" if t is None else str(t) for t in texts]
        vocab = self.classifier.word_vectorizer.vocabulary_
        words = [_WORD_RE.findall(t.lower()) for t in texts]
        out = pd.DataFrame(
            {
                "text_length": np.fromiter((len(t) for t in texts), dtype=np.float64, count=len(texts)),
                "word_count": np.fromiter((len(w) for w in words), dtype=np.float64, count=len(texts)),
                "oov_rate": np.fromiter(
                    (sum(x not in vocab for x in w) / len(w) if w else 0.0 for w in words),
                    dtype=np.float64,
                    count=len(texts),
                ),
            }
        )
        if self.projection is not None and texts:
            proj = self.projection.transform(self.classifier.word_block.transform(texts))
            for i in range(proj.shape[1]):
                out[f"proj_{i}"] = proj[:, i]
        return out

    def describe(self) -> dict:
        """What the router is (logged as ``router.json`` with every registered version).

        For the ``accurate`` and ``cascade`` tiers ``embedding_model`` records the sentence
        encoder's provenance: model, package and version, licence, weight/tokenizer/graph sha256.
        """
        accurate = getattr(self.classifier, "accurate", self.classifier)
        embedding = getattr(accurate, "embedding", None)
        return {
            "tier": self.classifier.tier,
            "threshold": self.threshold,
            "n_labels": len(self._classes),
            "rules": [r.name for r in self.rules],
            "agents": self.registry.agents,
            **({"embedding_model": embedding} if embedding else {}),
            **self.info,
        }


TIERS = ("fast", "accurate", "cascade")
ENCODER_PRECISIONS = ("int8", "float32")  # lib/onnx_encoder.PRECISIONS, without importing it here
FAST_MODELS = ("svm_nb", "logistic_regression")


@dataclass(frozen=True)
class TrainSettings:
    c: float = 10.0
    max_iter: int = 300
    tol: float = 1e-3
    seed: int = 20261125
    threshold_grid: tuple[float, float, float] = (0.05, 0.95, 0.01)
    threshold_objective: str = "label_accuracy"
    fallback_weight: float = 1.0
    # Tiers (lib/router/tiers.py); the accurate and cascade defaults were tuned on the validation split.
    tier: str = "fast"
    embedding_weight: float = 1.75
    accurate_tol: float = 1e-4
    cascade_threshold: float = 0.75
    encoder_precision: str = "int8"  # the accurate tier's encoder weights: int8 (faster) or float32 (= the reference)
    static_embedding_weight: float = 0.0  # > 0: the fast tier appends static MiniLM token embeddings (opt-in)
    # The fast tier's classifier; svm_nb (lib/router/svm_nb.py, settings chosen by 5-fold
    # cross-validation on train) is opt-in (config/router.yaml says why).
    fast_model: str = "logistic_regression"
    svm_c: float = 3.0
    svm_temperature: float = 5.0
    nb_alpha: float = 0.03
    nb_weight: float = 0.2
    nb_temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ConfigError(f"router config: classifier.tier '{self.tier}' is not one of {', '.join(TIERS)}")
        if self.encoder_precision not in ENCODER_PRECISIONS:
            raise ConfigError(
                f"router config: classifier.encoder_precision '{self.encoder_precision}' is not one of "
                f"{', '.join(ENCODER_PRECISIONS)}"
            )
        if self.fast_model not in FAST_MODELS:
            raise ConfigError(
                f"router config: classifier.fast_model '{self.fast_model}' is not one of {', '.join(FAST_MODELS)}"
            )
        for name, key in (
            ("svm_c", "svm_C"),
            ("svm_temperature", "svm_temperature"),
            ("nb_alpha", "nb_alpha"),
            ("nb_temperature", "nb_temperature"),
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"router config: classifier.{key} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.nb_weight <= 1:
            raise ConfigError(f"router config: classifier.nb_weight must be in [0, 1], got {self.nb_weight}")
        if self.static_embedding_weight < 0:
            raise ConfigError(
                f"router config: classifier.static_embedding_weight must be >= 0, got {self.static_embedding_weight}"
            )

    @classmethod
    def from_config(cls, raw: dict) -> TrainSettings:
        th = raw.get("threshold") or {}
        clf = raw.get("classifier") or {}
        return cls(
            c=float(clf.get("C", cls.c)),
            max_iter=int(clf.get("max_iter", cls.max_iter)),
            tol=float(clf.get("tol", cls.tol)),
            seed=int(raw.get("random_seed", cls.seed)),
            threshold_grid=(
                float(th.get("grid_start", 0.05)),
                float(th.get("grid_stop", 0.95)),
                float(th.get("grid_step", 0.01)),
            ),
            threshold_objective=str(th.get("objective", cls.threshold_objective)),
            fallback_weight=float(th.get("fallback_weight", cls.fallback_weight)),
            tier=str(clf.get("tier", cls.tier)),
            embedding_weight=float(clf.get("embedding_weight", cls.embedding_weight)),
            accurate_tol=float(clf.get("accurate_tol", cls.accurate_tol)),
            cascade_threshold=float(clf.get("cascade_threshold", cls.cascade_threshold)),
            encoder_precision=str(clf.get("encoder_precision", cls.encoder_precision)),
            static_embedding_weight=float(clf.get("static_embedding_weight", cls.static_embedding_weight)),
            fast_model=str(clf.get("fast_model", cls.fast_model)),
            svm_c=float(clf.get("svm_C", cls.svm_c)),
            svm_temperature=float(clf.get("svm_temperature", cls.svm_temperature)),
            nb_alpha=float(clf.get("nb_alpha", cls.nb_alpha)),
            nb_weight=float(clf.get("nb_weight", cls.nb_weight)),
            nb_temperature=float(clf.get("nb_temperature", cls.nb_temperature)),
        )


def fit_classifier(texts: Sequence[str], labels: Sequence[str], settings: TrainSettings, cache_dir: Path | None = None):
    """The classifier of ``settings.tier``: ``fast``, ``accurate`` or ``cascade`` (``lib/router/tiers.py``).

    The fast tier is always fitted: ``accurate`` reuses its TF-IDF features and ``cascade``
    asks it first. ``cache_dir`` caches sentence embeddings of the training texts.
    """
    texts, labels = [str(t) for t in texts], [str(y) for y in labels]
    fast = TextClassifier.fit(texts, labels, settings)
    if settings.tier == "fast":
        return fast
    from agent_pipeline.lib.router.tiers import AccurateClassifier, CascadeClassifier

    accurate = AccurateClassifier.fit(
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
    return accurate if settings.tier == "accurate" else CascadeClassifier(fast, accurate, settings.cascade_threshold)


def tune_threshold(curve: pd.DataFrame, objective: str, fallback_weight: float) -> float:
    """Pick the threshold that maximises the objective on the validation curve (ties: lowest)."""
    if objective == "label_accuracy":
        score = curve["label_accuracy"]
    elif objective == "in_scope_plus_fallback":
        score = curve["in_scope_accuracy"] + fallback_weight * curve["fallback_recall"]
    else:
        raise ConfigError(f"threshold objective '{objective}' is not one of label_accuracy, in_scope_plus_fallback")
    return float(curve["threshold"].iloc[int(np.argmax(score.to_numpy()))])


def train_router(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    registry: AgentRegistry,
    rules: Sequence[Rule],
    settings: TrainSettings = TrainSettings(),
    cache_dir: Path | None = None,
) -> tuple[Router, dict]:
    """Fit the classifier on ``train``, tune the threshold on ``validation``; return router and report.

    The report holds the validation numbers at the tuned threshold and the whole threshold
    curve, so the choice can be read and reproduced. ``settings.tier`` chooses the classifier;
    ``cache_dir`` caches the sentence embeddings of the ``accurate`` and ``cascade`` tiers.
    """
    from sklearn.decomposition import TruncatedSVD

    from agent_pipeline.lib.evaluation.metrics import threshold_curve

    if train.empty:
        raise ValueError("training data is empty")
    t0 = time.perf_counter()
    clf = fit_classifier(train["text"].astype(str), train["label"].astype(str), settings, cache_dir)
    fit_s = time.perf_counter() - t0
    projection = TruncatedSVD(n_components=N_PROJECTION, random_state=settings.seed)
    projection.fit(clf.word_vectorizer.transform(train["text"].astype(str)))

    proba = clf.predict_proba(validation["text"].astype(str))
    top = proba.argmax(axis=1)
    start, stop, step = settings.threshold_grid
    grid = np.round(np.arange(start, stop + step / 2, step), 6)
    curve = threshold_curve(
        validation["label"].astype(str).to_numpy(), clf.classes_[top], proba[np.arange(len(top)), top], grid
    )
    threshold = tune_threshold(curve, settings.threshold_objective, settings.fallback_weight)
    at = curve.loc[curve["threshold"] == threshold].iloc[0]
    report = {
        "fit_seconds": fit_s,
        "threshold": threshold,
        "n_train": int(len(train)),
        "n_validation": int(len(validation)),
        "n_labels": int(len(clf.classes_)),
        "val_in_scope_accuracy": float(at["in_scope_accuracy"]),
        "val_fallback_recall": float(at["fallback_recall"]),
        "val_fallback_precision": float(at["fallback_precision"]),
        "val_label_accuracy": float(at["label_accuracy"]),
        "threshold_curve": curve,
    }
    info = {"n_train": int(len(train)), "seed": settings.seed, "C": settings.c, "fast_model": settings.fast_model}
    return Router(clf, registry, rules, threshold, projection, info), report
