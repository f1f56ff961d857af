"""An example model logged as code: a pyfunc whose served code is a file stored with it, around
its fitted scikit-learn estimator (MLflow's sklearn format, cloudpickle), with an input example
and the signature of the candidate's own answers. Servable from its artifacts alone, and loaded
back the same way, through the pyfunc loader, to score the champion. The market-regime models
and the recommender are logged so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature

from models.pinned_requirements import pinned

__all__ = ["code_model_arguments"]


def code_model_arguments(
    workdir: Path,
    *,
    model_code: Path,
    estimator: Any,
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
    model_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The arguments of ``mlflow.pyfunc.log_model`` (or ``save_model``) for one version: the
    served code ``model_code``, the estimator saved under ``workdir`` (which must outlive the
    call), the model's config if any, and the signature of ``output_example`` (its answers on
    ``input_example``)."""
    estimator_dir = workdir / "estimator"
    mlflow.sklearn.save_model(
        estimator,
        str(estimator_dir),
        # cloudpickle writes model.pkl, which any MLflow loader reads; MLflow 3's default
        # (skops) needs a trusted-types list.
        serialization_format="cloudpickle",
        # Declared, not inferred: inferring loads the model in a subprocess (~4 s).
        pip_requirements=pinned(),
    )
    config = {} if model_config is None else {"model_config": model_config}
    return {
        "python_model": str(model_code),
        "artifacts": {"estimator": str(estimator_dir)},
        **config,
        "signature": infer_signature(input_example, output_example),
        "input_example": input_example,
        "pip_requirements": pinned(),
    }
