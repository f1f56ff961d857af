"""The recommender's own part of the training step's MLflow session.

Each version is a pyfunc logged as code (:mod:`models.recommender.served_model`, stored with
it) around its fitted scikit-learn pipeline (MLflow's sklearn format, cloudpickle), with an
input example: servable from its artifacts alone, and loaded back the same way, through the
pyfunc loader, to score the champion. The rest (the champion's alias, the run's documents,
registering, aliases, one-line registry errors) is
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
from models.recommender.served_model import click_frame
from models.registry_session import RegistrySession

__all__ = ["MODEL_CODE", "RecommenderTraining", "pyfunc_arguments"]

MODEL_CODE = Path(__file__).with_name("served_model.py")


def pyfunc_arguments(
    workdir: Path, *, estimator: Any, input_example: pd.DataFrame
) -> dict[str, Any]:
    """The arguments of ``mlflow.pyfunc.log_model`` for one version
    (:func:`models.code_model.code_model_arguments`), its signature from the candidate's own
    answers on ``input_example``."""
    return code_model_arguments(
        workdir, model_code=MODEL_CODE, estimator=estimator, input_example=input_example,
        output_example=click_frame(estimator, input_example),
    )  # fmt: skip


class RecommenderTraining(RegistrySession):
    """One training run's MLflow session for the recommender."""

    def log_run(
        self,
        *,
        estimator: Any,
        input_example: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        champion: tuple[int, dict[str, float]] | None,
        profile: dict[str, Any],
        slice_profiles: dict[str, Any],
        verdict: dict[str, Any],
    ) -> tuple[str, str]:
        """Log params, metrics, the model and the reports (the training profile, one profile
        per user segment, the gate's verdict); returns the run id and the logged model's URI
        (MLflow 3: ``models:/m-<id>``)."""
        mlflow.set_experiment(self.model_name)
        with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            if champion is not None:
                version, champion_metrics = champion
                mlflow.log_param("champion_version", version)
                mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items()})
            arguments = pyfunc_arguments(
                Path(tmp), estimator=estimator, input_example=input_example
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
