"""An InferenceGraph Ensemble's answer, taken as a V1 request's rows.

KServe's router answers an ``Ensemble`` node with one object keyed by step name (the step's
index when it has none), each value the step's own answer, and a Sequence step with
``data: $response`` sends that object on unchanged as the next step's request::

    {"classifier": {"predictions": [{"regime": "black_swan", "p_calm": 0.1, ...}]},
     "calm": {"predictions": [{"p_up": 0.61}]},
     "volatile": {"predictions": [{"p_up": 0.44}]}}

A model that combines the members (a blend, a stacker) is then sent no ``instances``. Sluice's
model server reads such a body as rows instead: row ``i`` joins every step's ``i``-th
prediction, a field ``f`` of step ``s`` becoming column ``s_f`` (a scalar prediction is
column ``s``; a list, columns ``s_0``, ``s_1``, ...). The model's signature then picks and
orders the columns it takes, as for any V1 request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["is_ensemble_answer", "rows_from_ensemble_answer"]


def is_ensemble_answer(payload: object) -> bool:
    """Whether ``payload`` has the shape of an Ensemble's answer: a non-empty object with no
    ``instances`` or ``inputs``, whose every value is an object with a ``predictions`` list."""
    if not isinstance(payload, Mapping) or not payload:
        return False
    if "instances" in payload or "inputs" in payload:
        return False
    return all(
        isinstance(answer, Mapping) and isinstance(answer.get("predictions"), list)
        for answer in payload.values()
    )


def rows_from_ensemble_answer(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of an Ensemble's answer (see the module docstring). Raises ``ValueError``
    naming the step when the steps answered different numbers of rows."""
    counts = {str(step): len(answer["predictions"]) for step, answer in payload.items()}
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{step} {n}" for step, n in counts.items())
        raise ValueError(
            f"the Ensemble's steps answered different numbers of rows ({listed}); "
            "each must answer one prediction per row of the request"
        )
    rows: list[dict[str, Any]] = [{} for _ in range(next(iter(counts.values())))]
    for step, answer in payload.items():
        for row, prediction in zip(rows, answer["predictions"], strict=True):
            row.update(_columns(str(step), prediction))
    return rows


def _columns(step: str, prediction: Any) -> dict[str, Any]:
    if isinstance(prediction, Mapping):
        return {f"{step}_{field}": value for field, value in prediction.items()}
    if isinstance(prediction, list):
        return {f"{step}_{i}": value for i, value in enumerate(prediction)}
    return {step: prediction}
