"""What any training script calls to give Sluice a model's drift reference and gate verdict.

Two calls, inside the MLflow run that logged the model::

    from controller import training

    training.log_reference_profile(X_train, predictions=model.predict(X_train))
    training.record_gate(info, {"r2": r2}, minimum={"r2": 0.3})

:func:`log_reference_profile` logs ``reference_profile.json`` (the training data profile the
drift monitor and ``sluice drift`` compare live inputs with); without it a model still rolls
out, with drift monitoring off. :func:`record_gate` evaluates a quality gate on the holdout
metrics, logs ``quality_gate.json``, tags the registered version ``sluice.gate`` /
``sluice.gate_summary`` (shown in the proposal's model card), and points the ``challenger``
alias at it when it passed, which is what ``sluice propose`` follows.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from controller.quality.data_profile import build_profile
from controller.quality.quality_gate import GateVerdict, QualityGate, evaluate_gate

__all__ = ["CHALLENGER_ALIAS", "log_reference_profile", "record_gate"]

#: The alias ``sluice propose`` follows by default (a release's ``alias``).
CHALLENGER_ALIAS = "challenger"


def _log_json(name: str, document: Mapping[str, Any]) -> None:
    if mlflow.active_run() is None:
        raise RuntimeError(f"log {name} inside the MLflow run that logged the model")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(document, indent=1), encoding="utf-8")
        mlflow.log_artifact(str(path))


def log_reference_profile(
    features: pd.DataFrame,
    *,
    predictions: Sequence[float] | Any = None,
    categorical: Sequence[str] | None = None,
    label: str | None = None,
) -> None:
    """Log ``reference_profile.json`` of the training features to the active run.

    Numeric columns are profiled as numbers and the others (or ``categorical``) as
    categories; ``predictions`` (the model's scores on the same rows) lets the monitor watch
    prediction drift too.
    """
    names = [c for c in features.columns if c != label]
    cats = (
        list(categorical)
        if categorical is not None
        else [c for c in names if not pd.api.types.is_numeric_dtype(features[c])]
    )
    numeric = [c for c in names if c not in cats]
    scores = None if predictions is None else np.asarray(_flat(predictions))
    profile = build_profile(
        features, numeric=numeric, categorical=cats, predictions=scores, label=label
    )
    _log_json("reference_profile.json", profile.model_dump(mode="json"))


def _flat(values: Any) -> list[float]:
    array = np.asarray(values, dtype=float)
    if array.ndim == 2:  # class probabilities: the last class's score
        array = array[:, -1]
    return [float(v) for v in array.reshape(-1)]


def record_gate(
    model: Any,
    metrics: Mapping[str, float],
    *,
    minimum: Mapping[str, float] | None = None,
    maximum: Mapping[str, float] | None = None,
    champion_metrics: Mapping[str, float] | None = None,
    max_regression: Mapping[str, float] | None = None,
) -> GateVerdict:
    """Judge ``metrics`` against the gate, log ``quality_gate.json`` to the active run, tag the
    registered version, and set ``challenger`` on it when it passed.

    ``model`` is what ``mlflow.<flavour>.log_model(..., registered_model_name=NAME)`` returned
    (its ``registered_model_version``), or a ``(name, version)`` pair.
    """
    if isinstance(model, tuple):
        name, version = str(model[0]), int(model[1])
    else:
        version_value = getattr(model, "registered_model_version", None)
        if version_value is None:
            raise ValueError(
                "the model was not registered: pass registered_model_name= to log_model, "
                "or give (name, version)"
            )
        version = int(version_value)
        name = str(_registered_name(model, version))
    gate = QualityGate.model_validate(
        {
            "minimum": dict(minimum or {}),
            "maximum": dict(maximum or {}),
            "max_regression": dict(max_regression or {}),
        }
    )
    verdict = evaluate_gate(
        dict(metrics), dict(champion_metrics) if champion_metrics else None, gate
    )
    _log_json("quality_gate.json", verdict.model_dump(mode="json"))
    client = MlflowClient()
    client.set_model_version_tag(
        name, str(version), "sluice.gate", "passed" if verdict.passed else "failed"
    )
    client.set_model_version_tag(name, str(version), "sluice.gate_summary", verdict.summary()[:500])
    if verdict.passed:
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, str(version))
    return verdict


def _registered_name(info: Any, version: int) -> str:
    """The registered model name of a ModelInfo (MLflow 3 keeps it on the logged model)."""
    client = MlflowClient()
    run_id = getattr(info, "run_id", None)
    found = client.search_model_versions(filter_string=f"run_id = '{run_id}'")
    for candidate in found:
        if int(candidate.version) == version:
            return str(candidate.name)
    raise ValueError(f"no registered version {version} of run {run_id}: give (name, version)")
