"""The training step's conversation with MLflow: find the champion, log the run, register.

Everything here runs inside :func:`controller.backends.mlflow_registry.registry_errors`, so an
unreachable server or an unknown model becomes one line and an exit code, not a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature

from controller.backends.mlflow_registry import (
    MlflowRegistry,
    ModelVersionRef,
    configure_mlflow_http,
    registry_errors,
)
from controller.settings import Settings
from models.pinned_requirements import pinned

__all__ = ["MlflowTraining"]


class MlflowTraining:
    """One training run's MLflow session for one registered model."""

    def __init__(self, settings: Settings, *, model_name: str) -> None:
        configure_mlflow_http(
            retries=settings.registry_request_retries,
            timeout_seconds=settings.registry_request_timeout_seconds,
        )
        # The run link goes into Sluice's own report; MLflow would print it into --json output.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # MLflow logs its pickle caution as a log record, not a warning: cloudpickle is chosen.
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
        # Both are deliberate: integer features carry no nulls (the data contract checks that),
        # and cloudpickle is chosen for servability (see log_run).
        warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent")
        warnings.filterwarnings("ignore", message=".*pickle or cloudpickle format")
        self.tracking_uri = settings.mlflow_tracking_uri
        self.model_name = model_name
        self.registry = MlflowRegistry(self.tracking_uri)
        self._errors = registry_errors(self.tracking_uri, f"model {model_name!r}")

    def __enter__(self) -> MlflowTraining:
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        self._errors.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if mlflow.active_run() is not None:
            mlflow.end_run("FAILED" if exc is not None else "FINISHED")
        return self._errors.__exit__(exc_type, exc, tb)

    def champion(self, alias: str) -> ModelVersionRef | None:
        """The version the alias points at, or None before the first promotion."""
        return self.registry.version_by_alias(self.model_name, alias)

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
            with tempfile.TemporaryDirectory() as tmp:
                for name, document in (
                    ("reference_profile.json", profile),
                    ("quality_gate.json", verdict),
                ):
                    path = Path(tmp) / name
                    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
                    mlflow.log_artifact(str(path))
            return str(run.info.run_id), str(info.model_uri)

    def run_url(self, run_id: str) -> str:
        """Link to the run in the MLflow UI."""
        run = mlflow.get_run(run_id)
        return (
            f"{self.tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
        )

    def register(self, run_id: str, model_uri: str, *, tags: dict[str, str]) -> int:
        """Register the logged model as a new version of the model; returns its number."""
        return self.registry.register(self.model_name, model_uri, run_id, tags).version

    def set_alias(self, alias: str, version: int) -> None:
        """Point an alias at a version."""
        self.registry.set_alias(self.model_name, alias, version)
