"""A training step's conversation with MLflow, shared by the example models.

One registered model per session: find the version an alias points at, log the run's JSON
documents (the reference profile, the gate's verdict), register the logged model as a new
version, point an alias at it. What a model logs as its model (a scikit-learn flavour, a pyfunc
from code) stays with the model's own training code, which subclasses :class:`RegistrySession`.

Everything inside ``with`` runs inside
:func:`controller.backends.mlflow_registry.registry_errors`, so an unreachable server or an
unknown model becomes one line and an exit code, not a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import mlflow
import mlflow.pyfunc

from controller.backends.mlflow_registry import (
    MlflowRegistry,
    ModelVersionRef,
    configure_mlflow_http,
    registry_errors,
)
from controller.provenance.signing import load_signer
from controller.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

    from controller.quality.data_contract import ContractResult
    from controller.quality.quality_gate import GateVerdict

__all__ = ["CHALLENGER_ALIAS", "CHAMPION_ALIAS", "RegistrySession"]

#: The alias a version gets when its quality gate passed: what ``sluice propose`` follows.
CHALLENGER_ALIAS = "challenger"
#: The alias of the version that serves: what a candidate is compared with.
CHAMPION_ALIAS = "champion"


class RegistrySession:
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
        # Both are deliberate: integer features carry no nulls (the data contracts check that),
        # and cloudpickle is chosen for servability (model.pkl, which any pyfunc loader reads).
        warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent")
        warnings.filterwarnings("ignore", message=".*pickle or cloudpickle format")
        self.tracking_uri = settings.mlflow_tracking_uri
        self.model_name = model_name
        self.registry = MlflowRegistry(self.tracking_uri)
        self._errors = registry_errors(self.tracking_uri, f"model {model_name!r}")

    def __enter__(self) -> Self:
        # A signing key that cannot be read stops training here, before any run or version.
        load_signer(os.environ)
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

    def load_pyfunc(self, version: int) -> Any:
        """Load a registered version as it is served (through the pyfunc loader)."""
        return mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}")

    def champion(self, alias: str = CHAMPION_ALIAS) -> ModelVersionRef | None:
        """The version the alias points at, or None before the first promotion."""
        return self.registry.version_by_alias(self.model_name, alias)

    @staticmethod
    def log_documents(documents: Mapping[str, Mapping[str, Any]]) -> None:
        """Log each document as a JSON artifact of the active run, under its name."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, document in documents.items():
                path = Path(tmp) / name
                path.write_text(json.dumps(document, indent=1), encoding="utf-8")
                mlflow.log_artifact(str(path))

    def run_url(self, run_id: str) -> str:
        """Link to the run in the MLflow UI."""
        run = mlflow.get_run(run_id)
        return (
            f"{self.tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
        )

    def register(self, run_id: str, model_uri: str, *, tags: dict[str, str]) -> int:
        """Register the logged model as a new version of the model; returns its number."""
        return self.registry.register(self.model_name, model_uri, run_id, tags).version

    def attest(
        self,
        version: int,
        *,
        frames: Mapping[str, pd.DataFrame],
        source: str,
        verdict: GateVerdict,
        params: Mapping[str, Any],
        path: Path | None = None,
        contract: ContractResult | None = None,
    ) -> str:
        """Record the version's signed provenance (:func:`controller.training.
        record_provenance`): ``frames`` are the rows it was trained and validated on by role
        (train, holdout), read from ``path`` (a file DVC may track); ``contract`` is
        the data contract's result on them (what ``validate_frame`` returned before training).
        Returns the version's ``sluice.provenance`` tag (the envelope's digest, or
        ``unsigned``)."""
        from controller import training

        datasets = [
            training.dataset(frame, name=role, source=source, path=path, contract=contract)
            for role, frame in frames.items()
        ]
        return training.record_provenance(
            (self.model_name, version), datasets=datasets, gate=verdict, parameters=params
        ).tag

    def set_alias(self, alias: str, version: int) -> None:
        """Point an alias at a version."""
        self.registry.set_alias(self.model_name, alias, version)
