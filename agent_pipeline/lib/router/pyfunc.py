"""The router as one MLflow model (pyfunc flavour).

``predict`` takes a DataFrame with a ``text`` column and returns one row per request with the
decision columns (route, agent, pred_label, decided_label, confidence, fallback,
fallback_reason, rule). Any model that honours this contract - a team's own LLM-based router,
say - can be registered under the same name and evaluated, gated and promoted unchanged.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd


class RouterModel(mlflow.pyfunc.PythonModel):
    """Wraps a trained ``agent_pipeline.lib.router.Router`` stored as a joblib artifact."""

    def load_context(self, context) -> None:
        import joblib

        self.router = joblib.load(context.artifacts["router"])

    # The pd.DataFrame hint tells MLflow the input needs no schema conversion (without a hint,
    # every load prints a "add type hints" UserWarning to the console). Lists still work.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002 - MLflow signature
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError(f"input needs a 'text' column, got columns {list(model_input.columns)}")
            texts = model_input["text"].tolist()
        else:
            texts = list(model_input)
        return self.router.route_batch(texts)
