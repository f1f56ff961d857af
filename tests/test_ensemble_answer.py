"""A model behind an InferenceGraph Ensemble takes the Ensemble's answer as its request.

KServe's router keys an Ensemble's answer by step name and a Sequence step with
``data: $response`` sends it on as is; Sluice's model server joins the steps' predictions into
rows (``<step>_<field>``), which the model's signature then picks from.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import mlflow.sklearn
import pandas as pd
import pytest
from kserve.errors import InvalidInput

from controller.local.serving.ensemble_answer import is_ensemble_answer, rows_from_ensemble_answer
from controller.local.serving.pyfunc_model import PyfuncServable
from controller.local.serving.server import build_kserve_model
from models.pinned_requirements import pinned

CLASSIFIED = [{"regime": "black_swan", "p_calm": 0.2}, {"regime": "calm", "p_calm": 0.9}]
ANSWER = {
    "classifier": {"predictions": CLASSIFIED},
    "calm": {"predictions": [{"p_up": 0.7}, {"p_up": 0.6}]},
    "volatile": {"predictions": [{"p_up": 0.3}, {"p_up": 0.4}]},
}  # fmt: skip


def test_the_steps_predictions_join_into_rows_named_step_field() -> None:
    assert rows_from_ensemble_answer(ANSWER) == [
        {"classifier_regime": "black_swan", "classifier_p_calm": 0.2, "calm_p_up": 0.7,
         "volatile_p_up": 0.3},
        {"classifier_regime": "calm", "classifier_p_calm": 0.9, "calm_p_up": 0.6,
         "volatile_p_up": 0.4},
    ]  # fmt: skip


def test_scalar_and_list_predictions_and_unnamed_steps_get_columns_too() -> None:
    """An unnamed step is keyed by its index, as KServe's router keys it."""
    answer = {"0": {"predictions": [0.25]}, "proba": {"predictions": [[0.1, 0.9]]}}
    assert rows_from_ensemble_answer(answer) == [{"0": 0.25, "proba_0": 0.1, "proba_1": 0.9}]


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": [{"a": 1}]},
        {"inputs": []},
        {},
        {"calm": {"outputs": []}},
        {"calm": {"predictions": [1]}, "note": "x"},
        [{"predictions": [1]}],
    ],
)
def test_only_an_ensembles_shape_is_taken_for_one(payload: Any) -> None:
    assert not is_ensemble_answer(payload)


def test_steps_that_answered_different_row_counts_are_named() -> None:
    answer = {"calm": {"predictions": [{"p_up": 0.7}]}, "volatile": {"predictions": []}}
    with pytest.raises(ValueError, match=r"calm 1, volatile 0"):
        rows_from_ensemble_answer(answer)


@pytest.fixture(scope="module")
def blend(tmp_path_factory: pytest.TempPathFactory) -> PyfuncServable:
    """A tiny MLflow model over two of an Ensemble's joined columns."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"calm_p_up": [0.9, 0.2, 0.8, 0.1], "volatile_p_up": [0.7, 0.3, 0.6, 0.2]})
    model = LogisticRegression().fit(frame, [1, 0, 1, 0])
    path = tmp_path_factory.mktemp("blend") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=pinned())
    loaded = PyfuncServable(str(path))
    loaded.load()
    return loaded


def test_the_model_server_answers_an_ensembles_answer_as_rows(blend: PyfuncServable) -> None:
    """The kserve model the server builds answers the Ensemble's answer as it would the same
    rows sent as ``instances``: one prediction per row, extra columns ignored."""
    model = build_kserve_model("blend", blend)
    rows = [{"calm_p_up": 0.7, "volatile_p_up": 0.3}, {"calm_p_up": 0.6, "volatile_p_up": 0.4}]
    as_answer = asyncio.run(model.predict(ANSWER, headers={}))
    as_instances = asyncio.run(model.predict({"instances": rows}, headers={}))
    assert as_answer == as_instances
    assert len(as_answer["predictions"]) == 2


def test_an_ensemble_answer_of_uneven_steps_is_a_bad_request(blend: PyfuncServable) -> None:
    model = build_kserve_model("blend", blend)
    uneven = {"calm": {"predictions": [{"p_up": 0.7}]}, "volatile": {"predictions": []}}
    with pytest.raises(InvalidInput, match="different numbers of rows"):
        asyncio.run(model.predict(uneven, headers={}))
