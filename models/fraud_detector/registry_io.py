"""The fraud detector's own part of the training step's MLflow session: its model is a
scikit-learn pipeline, logged with ``predict_proba`` as the pyfunc and loaded back as one.

The rest (the champion, the run's documents, registering, aliases, and turning registry
failures into one line and an exit code) is :class:`models.registry_session.RegistrySession`,
shared with the other example models.
"""

from __future__ import annotations

from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature

from models.pinned_requirements import pinned
from models.registry_session import RegistrySession

__all__ = ["MlflowTraining"]


class MlflowTraining(RegistrySession):
    """One training run's MLflow session for the fraud detector."""

    def load_sklearn(self, version: int) -> Any:
        """Load a registered version as the scikit-learn pipeline it was logged as."""
        return mlflow.sklearn.load_model(f"models:/{self.model_name}/{version}")

    def log_run(
        self,
        *,
        model: Any,
        input_example: pd.DataFrame,
        params: dict[str, Any],
        metrics: dict[str, float],
        champion: tuple[int, dict[str, float]] | None,
        profile: dict[str, Any],
        verdict: dict[str, Any],
    ) -> tuple[str, str]:
        """Log params, metrics, the model (servable from its artifact alone) and the reports.

        Returns the run id and the logged model's URI (MLflow 3: ``models:/m-<id>``).
        """
        mlflow.set_experiment(self.model_name)
        with mlflow.start_run() as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            if champion is not None:
                version, champion_metrics = champion
                mlflow.log_param("champion_version", version)
                mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items()})
            signature = infer_signature(input_example, model.predict_proba(input_example))
            info = mlflow.sklearn.log_model(
                sk_model=model,
                name="model",
                signature=signature,
                input_example=input_example,
                # cloudpickle writes model.pkl, which any MLflow pyfunc loader (and the KServe
                # wrapper) reads; MLflow 3's default (skops) needs a trusted-types list.
                serialization_format="cloudpickle",
                # Serve fraud probabilities, not hard labels.
                pyfunc_predict_fn="predict_proba",
                # Declared, not inferred: inferring loads the model in a subprocess (~4 s).
                pip_requirements=pinned(),
            )
            self.log_documents({"reference_profile.json": profile, "quality_gate.json": verdict})
            return str(run.info.run_id), str(info.model_uri)
