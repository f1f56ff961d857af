"""The recommender as an MLflow pyfunc, logged as "model from code": this file is stored with
every version, so a version loads and serves wherever MLflow and scikit-learn do (Sluice's
model server image has no ``models`` package), with no import of this repository.

The artifact ``estimator`` is the fitted scikit-learn pipeline (MLflow's sklearn format,
cloudpickle). Each request row is one candidate item shown to one user in one context; the
answer is a DataFrame with one column, ``p_click``, so Sluice's model server answers a V1
request with ``{"predictions": [{"p_click": 0.27}, ...]}``, one object per instance. A caller
ranks a slate by it; Sluice's late outcomes score a 0/1 ``click`` against ``p_click`` by name.

The estimator reads the columns it was fitted on and ignores the others, so every variant
takes the same requests (the popularity variant looks at the item's columns only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

__all__ = ["P_CLICK", "ClickModel", "click_frame"]

#: The answer's field: the probability that the item shown is clicked.
P_CLICK = "p_click"


def click_frame(estimator: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """``p_click`` for each row of ``frame``."""
    features = frame[list(estimator.feature_names_in_)]
    probabilities = np.asarray(estimator.predict_proba(features), dtype=np.float64)[:, 1]
    return pd.DataFrame({P_CLICK: probabilities})


class ClickModel(PythonModel):
    """A click-through model: ``p_click`` per candidate item."""

    def load_context(self, context: Any) -> None:
        import mlflow.sklearn

        self.estimator = mlflow.sklearn.load_model(context.artifacts["estimator"])

    # A DataFrame type hint: MLflow 3 infers no signature from it (the logged one, from the
    # candidate's own answers, stands) and asks for no other.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return click_frame(self.estimator, pd.DataFrame(model_input))


set_model(ClickModel())
