"""The example fraud detector, trained and registered as CI does, and served as a revision.

``tests/conftest.py``'s ``fraud_model`` fixture registers one version per module with
:func:`register_fraud_model`; ``tests/test_local_serving.py`` and ``tests/test_locust_load.py``
serve it with :func:`serve`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from controller.local.services import MlflowService
from controller.local.serving.launcher import ModelServerHandle, start_model_server
from support.gitops_repo import ROOT

__all__ = ["Registered", "register", "register_fraud_model", "serve"]


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    uri: str  # mlflow-artifacts:/...
    tracking_uri: str


def register(mlflow_server: MlflowService, *command: str) -> str:
    """Run a registering entry point as CI does; returns its stdout."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode in (0, 1), result.stderr  # 1: registered, gate failed
    return result.stdout


def register_fraud_model(mlflow_server: MlflowService) -> Registered:
    """A fraud-detector version registered in the session's MLflow."""
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    register(mlflow_server, "models.fraud_detector.train", "--rows", "4000", "--model-name", name)
    client = MlflowClient(mlflow_server.tracking_uri)
    uri = str(client.get_model_version_download_uri(name, "1"))
    assert uri.startswith("mlflow-artifacts:/")
    return Registered(name, 1, uri, mlflow_server.tracking_uri)


def serve(
    model: Registered, log_dir: Path, env: Mapping[str, str] | None = None
) -> ModelServerHandle:
    return start_model_server(
        name="fraud",
        storage_uri=model.uri,
        log_dir=log_dir,
        env={"MLFLOW_TRACKING_URI": model.tracking_uri, **(env or {})},
    )
