"""The market-regime models as MLflow pyfuncs, logged as "model from code": this file is
stored with every version, so a model loads and serves wherever MLflow and scikit-learn do
(Sluice's model server image has no ``models`` package), with no import of this repository.

One class serves the three kinds; ``model_config["kind"]`` says which, and the artifact
``estimator`` is the fitted scikit-learn estimator (MLflow's sklearn format, cloudpickle).
Each kind answers with a DataFrame, so Sluice's model server sends V1 ``predictions`` as one
JSON object per row and V2 outputs as one tensor per column:

- ``classifier``: ``{"regime": "volatile", "p_calm": .., "p_volatile": .., "p_black_swan":
  .., <the request's features>}``. The decision and the probabilities sit at the top of the
  object, for a router to switch on (``regime``); the features come along, so the next step
  of a graph can be sent this response as its request.
- ``specialist``: ``{"p_up": ..}``, the probability that the next period's return is positive.
- ``blend``: ``{"p_up": ..}`` too, from the classifier's probabilities and the specialists'
  ``p_up`` (inputs ``classifier_p_<regime>`` and ``<specialist>_p_up``): a weighted ensemble
  whose weight on each specialist depends on the regime probabilities (:func:`blend_features`).
  The names are those of an InferenceGraph Ensemble's answer with steps named ``classifier``,
  ``calm`` and ``volatile``, as Sluice's model server joins it into rows (``<step>_<field>``),
  so the graph can feed the blend the Ensemble's answer as its request.

The training step (:mod:`models.market_regime.pipeline`) calls the same functions on its
candidate, so a version is judged on exactly what it will serve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel

__all__ = [
    "CLASSIFIER_STEP",
    "RegimeModel",
    "blend_features",
    "gate_column",
    "predict_frame",
    "specialist_column",
]

#: Bounds on a specialist's ``p_up`` before its log-odds are taken.
_CLIP = 1e-6


#: The name of the classifier's step in the Ensemble that feeds the blend.
CLASSIFIER_STEP = "classifier"


def gate_column(regime: str) -> str:
    """The blend's input column that carries the classifier's probability of ``regime``."""
    return f"{CLASSIFIER_STEP}_p_{regime}"


def specialist_column(specialist: str) -> str:
    """The blend's input column that carries ``specialist``'s ``p_up``."""
    return f"{specialist}_p_up"


def blend_features(frame: pd.DataFrame, regimes: list[str], specialists: list[str]) -> np.ndarray:
    """The blend's design matrix: per regime ``r`` the gate ``p_r`` (:func:`gate_column`, an
    intercept that holds in that regime) and ``p_r * logit(p_up of s)`` for each specialist ``s``.

    A linear model over these gives the log-odds ``sum_r p_r * (b_r + sum_s w_rs * logit_s)``:
    each specialist's weight is ``sum_r p_r * w_rs``, set by the classifier's probabilities,
    with one learned weight per regime and specialist. A confident calm row takes the calm
    weights, an uncertain one a mixture.
    """
    gates = frame[[gate_column(regime) for regime in regimes]].to_numpy(dtype=np.float64)
    columns = [gates]
    for specialist in specialists:
        p_up = np.clip(frame[specialist_column(specialist)].to_numpy(dtype=np.float64), _CLIP, 1.0)
        p_up = np.minimum(p_up, 1.0 - _CLIP)
        columns.append(gates * np.log(p_up / (1.0 - p_up))[:, None])
    return np.hstack(columns)


def predict_frame(kind: str, estimator: Any, frame: pd.DataFrame, config: dict[str, Any]) -> Any:
    """What a model of ``kind`` answers for the rows of ``frame`` (see the module docstring)."""
    regimes = list(config["regimes"])
    if kind == "classifier":
        features = frame[list(estimator.feature_names_in_)]
        known = np.asarray(estimator.predict_proba(features), dtype=np.float64)
        classes = [str(c) for c in estimator.classes_]
        # A regime the estimator never saw in training has probability 0.
        probabilities = np.zeros((len(frame), len(regimes)))
        for i, regime in enumerate(regimes):
            if regime in classes:
                probabilities[:, i] = known[:, classes.index(regime)]
        out = pd.DataFrame(
            {"regime": np.asarray(regimes, dtype=object)[probabilities.argmax(axis=1)]},
            index=frame.index,
        )
        for i, regime in enumerate(regimes):
            out[f"p_{regime}"] = probabilities[:, i]
        return pd.concat([out, features], axis=1).reset_index(drop=True)
    if kind == "specialist":
        features = frame[list(estimator.feature_names_in_)]
        return pd.DataFrame({"p_up": np.asarray(estimator.predict_proba(features))[:, 1]})
    if kind == "blend":
        design = blend_features(frame, regimes, list(config["specialists"]))
        return pd.DataFrame({"p_up": np.asarray(estimator.predict_proba(design))[:, 1]})
    raise ValueError(f"unknown model kind {kind!r}: classifier, specialist or blend")


class RegimeModel(PythonModel):
    """A classifier, specialist or blend, by ``model_config["kind"]``."""

    def load_context(self, context: Any) -> None:
        import mlflow.sklearn

        self.config = dict(context.model_config or {})
        self.kind = str(self.config["kind"])
        self.estimator = mlflow.sklearn.load_model(context.artifacts["estimator"])

    # A DataFrame type hint: MLflow 3 infers no signature from it (the logged one, from the
    # candidate's own answers, stands) and asks for no other.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        result: pd.DataFrame = predict_frame(
            self.kind, self.estimator, pd.DataFrame(model_input), self.config
        )
        return result


set_model(RegimeModel())
