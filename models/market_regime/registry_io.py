"""The market-regime models' own part of the training step's MLflow session.

Each version is logged as a pyfunc from code (:mod:`models.market_regime.served_model`, stored
with it) around its fitted scikit-learn estimator (MLflow's sklearn format, cloudpickle), with
a ``model_config`` naming its kind: servable from its artifacts alone, and loaded back the same
way, through the pyfunc loader, to score the champion. The rest (the champion's alias, the
run's documents, registering, aliases, one-line registry errors) is
:class:`models.registry_session.RegistrySession`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd

from controller.backends.mlflow_registry import PROFILE_ARTIFACT, SLICE_PROFILES_ARTIFACT
from models.code_model import code_model_arguments
from models.registry_session import RegistrySession

__all__ = ["MODEL_CODE", "RegimeTraining", "pyfunc_arguments"]

MODEL_CODE = Path(__file__).with_name("served_model.py")


def pyfunc_arguments(
    workdir: Path,
    *,
    estimator: Any,
    model_config: dict[str, Any],
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
) -> dict[str, Any]:
    """The arguments of ``mlflow.pyfunc.log_model`` for one version
    (:func:`models.code_model.code_model_arguments`), with the kind's config."""
    return code_model_arguments(
        workdir, model_code=MODEL_CODE, estimator=estimator, input_example=input_example,
        output_example=output_example, model_config=model_config,
    )  # fmt: skip


class RegimeTraining(RegistrySession):
    """One training run's MLflow session for one market-regime model."""

    def log_run(
        self,
        *,
        estimator: Any,
        model_config: dict[str, Any],
        input_example: pd.DataFrame,
        output_example: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        champion: tuple[int, dict[str, float]] | None,
        profile: dict[str, Any],
        slice_profiles: dict[str, Any],
        verdict: dict[str, Any],
    ) -> tuple[str, str]:
        """Log params, metrics, the model and the reports (the pooled training profile, one
        profile per regime, the gate's verdict); returns the run id and the logged model's URI
        (MLflow 3: ``models:/m-<id>``)."""
        mlflow.set_experiment(self.model_name)
        with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            if champion is not None:
                version, champion_metrics = champion
                mlflow.log_param("champion_version", version)
                mlflow.log_metrics({f"champion/{k}": v for k, v in champion_metrics.items()})
            arguments = pyfunc_arguments(
                Path(tmp),
                estimator=estimator,
                model_config=model_config,
                input_example=input_example,
                output_example=output_example,
            )
            info = mlflow.pyfunc.log_model(name="model", **arguments)
            self.log_documents(
                {
                    PROFILE_ARTIFACT: profile,
                    SLICE_PROFILES_ARTIFACT: slice_profiles,
                    "quality_gate.json": verdict,
                }
            )
            return str(run.info.run_id), str(info.model_uri)
