"""The routing decision, written once: rules -> classifier -> threshold -> agent map -> fallback reason.

Every path that routes text calls this module: ``Router.route`` (one request),
``Router.route_batch`` (many), the serving bundle (``lib/serving/bundle.py``) and, through the
router, the MLflow pyfunc. A decision is made in this order:

1. **Pre-classifier stages** (the declared rules, ``agents.<agent>.rules`` in
   ``config/agents.yaml``) are tried in order; the first that matches decides the label
   (confidence 1.0) and the classifier is not asked.
2. The **classifier** gives its top label and that label's probability (the confidence).
3. Below the **threshold** the request goes to the fallback (``low_confidence``).
4. The **agent map** turns the label into a route; ``oos`` goes to the fallback
   (``out_of_scope``), a label without an agent too (``no_agent``).

The logic is table-driven: every outcome a decision can have (one per class label, one per rule,
and the low-confidence outcome) is computed once when the policy is built, and a decision is
only the choice of a row of that table (``DecisionPolicy.select``, numpy, the same function for
one request and for a batch). The names a decision uses (``FALLBACK_ROUTE``, ``OOS_LABEL``, the
fallback reasons, the columns) are defined here and nowhere else.

Only the standard library and numpy are imported: the serving bundle runs this without pandas
or scikit-learn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from agent_pipeline.lib.core.errors import ConfigError

FALLBACK_ROUTE = "fallback"  # the route of every request the general agent takes
OOS_LABEL = "oos"  # the label meaning "out of scope": never has an agent

# Why a request went to the fallback ("" when it did not).
LOW_CONFIDENCE = "low_confidence"
OUT_OF_SCOPE = "out_of_scope"
NO_AGENT = "no_agent"
FALLBACK_REASONS = (LOW_CONFIDENCE, OUT_OF_SCOPE, NO_AGENT)

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


@dataclass(frozen=True)
class Decision:
    """One routing decision (the contract every router honours, see ``DECISION_COLUMNS``)."""

    route: str
    agent: str
    pred_label: str
    decided_label: str
    confidence: float
    fallback: bool
    fallback_reason: str
    rule: str

    def to_dict(self) -> dict:
        # Not dataclasses.asdict: it deep-copies field by field, costing more than a decision.
        return {name: getattr(self, name) for name in DECISION_COLUMNS}


class Stage(Protocol):
    """A pre-classifier stage: a named matcher that decides a label when it fires.

    ``reason`` is "" for an ordinary rule (the label's route decides, as for the classifier);
    a non-empty ``reason`` sends the request to the fallback with that reason whatever the
    label's route (the shape of a guard stage).
    """

    name: str
    label: str
    reason: str

    def matches(self, text: str) -> bool: ...


@dataclass(frozen=True)
class Rule:
    """A declared rule: fires when every pattern matches (case-insensitive search)."""

    name: str
    patterns: tuple[str, ...]
    label: str
    reason: str = ""
    _compiled: tuple[re.Pattern, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def create(cls, name: str, patterns: Sequence[str], label: str, reason: str = "") -> Rule:
        try:
            compiled = tuple(re.compile(p, re.IGNORECASE) for p in patterns)
        except re.error as exc:
            raise ConfigError(f"rule '{name}': invalid regular expression: {exc}") from exc
        if not compiled:
            raise ConfigError(f"rule '{name}': needs at least one pattern in 'all'")
        return cls(name, tuple(patterns), label, reason, compiled)

    def matches(self, text: str) -> bool:
        return all(p.search(text) for p in self._compiled)

    def to_dict(self) -> dict:
        """Plain data (the serving bundle stores rules this way; ``Rule.create(**d)`` reads it back)."""
        return {"name": self.name, "patterns": list(self.patterns), "label": self.label, "reason": self.reason}


# One row of the outcome table: what a decision says besides the predicted label and confidence.
_Outcome = tuple[str, str, str, bool, str, str]  # route, agent, decided_label, fallback, reason, rule


class DecisionPolicy:
    """Everything a decision needs except the classifier: stages, labels, threshold, agent map.

    ``classes``: the classifier's labels, in its probability columns' order; ``label_to_agent``:
    the agent map (a label missing from it has no agent); ``fallback_agent``: the agent behind
    the fallback route.
    """

    def __init__(
        self,
        classes: Sequence[str],
        threshold: float,
        label_to_agent: Mapping[str, str],
        fallback_agent: str,
        stages: Sequence[Stage] = (),
    ) -> None:
        self.classes = [str(c) for c in classes]
        self.threshold = float(threshold)
        self.label_to_agent = dict(label_to_agent)
        self.fallback_agent = str(fallback_agent)
        self.stages = list(stages)
        n = len(self.classes)
        # The outcome table: rows 0..n-1 a confident class label, n the low-confidence outcome,
        # n+1.. one per stage.
        table: list[_Outcome] = [self._outcome(c, "", "") for c in self.classes]
        table.append(self._fallback(OOS_LABEL, LOW_CONFIDENCE, ""))
        table += [self._outcome(s.label, s.reason, s.name) for s in self.stages]
        self._table = table
        self._n = n
        self._columns = [np.asarray([row[i] for row in table], dtype=object) for i in range(6)]
        self._columns[3] = self._columns[3].astype(bool)
        self._classes_arr = np.asarray(self.classes + [s.label for s in self.stages], dtype=object)

    # -- the outcome table ------------------------------------------------------------------
    def route_for_label(self, label: str) -> str:
        return self.label_to_agent.get(label, FALLBACK_ROUTE)

    def _fallback(self, decided: str, reason: str, rule: str) -> _Outcome:
        return (FALLBACK_ROUTE, self.fallback_agent, decided, True, reason, rule)

    def _outcome(self, label: str, forced_reason: str, rule: str) -> _Outcome:
        """The outcome of a label decided by the classifier (rule "") or by a stage."""
        if forced_reason:
            return self._fallback(OOS_LABEL, forced_reason, rule)
        if label == OOS_LABEL and not rule:
            return self._fallback(OOS_LABEL, OUT_OF_SCOPE, rule)
        route = self.route_for_label(label)
        if route == FALLBACK_ROUTE:
            return self._fallback(label, NO_AGENT, rule)
        return (route, route, label, False, "", rule)

    def select(self, stage_index, top, confidence):
        """The outcome row of each decision (scalars or arrays alike).

        ``stage_index``: the first matching stage, -1 for none; ``top``: the classifier's top
        class; ``confidence``: its probability. A stage wins; else a confidence below the
        threshold falls back; else the class's own outcome.
        """
        return np.where(
            stage_index >= 0, self._n + 1 + stage_index, np.where(confidence < self.threshold, self._n, top)
        )

    # -- decisions --------------------------------------------------------------------------
    def stage_index(self, text: str) -> int:
        """The index of the first stage that matches ``text``, -1 when none does."""
        for i, stage in enumerate(self.stages):
            if stage.matches(text):
                return i
        return -1

    def decide(self, text: str, predict_proba_one: Callable[[str], np.ndarray]) -> Decision:
        """The decision for one text; the classifier is asked only when no stage fired."""
        text = "" if text is None else str(text)
        s = self.stage_index(text)
        if s >= 0:
            k, confidence, pred = 0, 1.0, self.stages[s].label
        else:
            proba = predict_proba_one(text)
            k = int(proba.argmax())
            confidence = float(proba[k])
            pred = self.classes[k]
        row = self._table[int(self.select(s, k, confidence))]
        return Decision(row[0], row[1], pred, row[2], confidence, row[3], row[4], row[5])

    def decide_batch(
        self, texts: Sequence[str], predict_proba: Callable[[list[str]], np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The decisions for many texts as columns (``DECISION_COLUMNS``); the classifier sees
        only the texts no stage decided, in one call."""
        texts = ["" if t is None else str(t) for t in texts]
        stage = np.fromiter((self.stage_index(t) for t in texts), dtype=np.intp, count=len(texts))
        top = np.zeros(len(texts), dtype=np.intp)
        confidence = np.ones(len(texts), dtype=np.float64)
        need = np.flatnonzero(stage < 0)
        if len(need):
            proba = predict_proba([texts[i] for i in need])
            top[need] = proba.argmax(axis=1)
            confidence[need] = proba[np.arange(len(need)), top[need]]
        row = self.select(stage, top, confidence)
        pred = self._classes_arr[np.where(stage >= 0, self._n + stage, top)]
        route, agent, decided, fallback, reason, rule = (col[row] for col in self._columns)
        return {
            "route": route,
            "agent": agent,
            "pred_label": pred,
            "decided_label": decided,
            "confidence": confidence,
            "fallback": fallback,
            "fallback_reason": reason,
            "rule": rule,
        }
