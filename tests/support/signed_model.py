"""A fraud-detector version trained as CI trains it, with a signing key: the signed case.

``tests/conftest.py``'s ``signed`` fixture trains one per test session (each run costs about
5 CPU-seconds) for the modules that verify provenance (``tests/test_provenance_training.py``)
and enforce it (``tests/test_provenance_enforce.py``). Two keypairs are written: ``ci`` signs,
``other`` is the wrong key. :func:`sign_version` signs a version registered already (a small
one of ``support.registry``) as the training step would, without training: the local-stack
rollout of ``tests/test_rollout_local.py`` needs two signed versions, not good models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from controller import training
from controller.cli import main
from controller.local.services import MlflowService
from support.gitops_repo import ROOT

__all__ = ["BUILDERS", "CI_ENV", "Signed", "sign_version", "train_signed"]

CI_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/models",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
}
#: The builder pattern that accepts CI_ENV's workflow run.
BUILDERS = "https://github.com/acme/models/actions/runs/*"


@dataclass(frozen=True)
class Signed:
    name: str
    keys: Path
    tracking_uri: str


def train_signed(mlflow_server: MlflowService, keys: Path) -> Signed:
    """Write the ``ci`` and ``other`` keypairs into ``keys`` and train version 1 of a new
    model in a GitHub Actions-shaped environment with ``SLUICE_SIGNING_KEY`` set."""
    uri = mlflow_server.tracking_uri
    for name in ("ci", "other"):
        assert main(["provenance", "keygen", "--out", str(keys), "--name", name]) == 0
    model = f"fraud-prov-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **CI_ENV,
        "MLFLOW_TRACKING_URI": uri,
        "SLUICE_SIGNING_KEY": (keys / "ci.key").read_text(),
    }
    trained = subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--rows", "4000",
         "--model-name", model],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "BEGIN PRIVATE KEY" not in trained.stdout + trained.stderr
    return Signed(model, keys, uri)


def sign_version(tracking_uri: str, model: str, version: int, key: Path) -> str:
    """Record the version's provenance, signed with the private ``key`` in the CI-shaped
    environment (``training.record_provenance``, as the training step calls it); its
    ``sluice.provenance`` tag."""
    mlflow.set_tracking_uri(tracking_uri)
    rows = pd.DataFrame({"amount": [12.5, 80.0], "hour": [3, 14]})
    recorded = training.record_provenance(
        (model, version),
        datasets=[training.dataset(rows, name="train")],
        gate={"passed": True},
        env={**CI_ENV, "SLUICE_SIGNING_KEY": key.read_text()},
    )
    assert recorded.keyid is not None
    return recorded.tag
