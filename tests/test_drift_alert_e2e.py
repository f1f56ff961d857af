"""Drift end to end: a model server's monitor, Prometheus, Alertmanager, `sluice serve`, GitHub.

Everything is the real thing except GitHub (the local REST server): a fraud-detector version is
trained and registered, served by the model server that a revision runs, sent a shifted week
of traffic; Prometheus scrapes its drift gauges, labelled as `sluice local up` labels a
revision's server, and evaluates the rules of manifests/monitoring/prometheus-rules.yaml as
`sluice local up` writes them (with `for:` shortened from 10 minutes to 1 s); Alertmanager,
configured as `sluice local up` configures it, posts the drift alert with its bearer token to
`sluice serve`'s /hooks/alertmanager, and exactly one repository_dispatch reaches GitHub
although Alertmanager repeats the alert.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.drift_stack import DriftAlertPath, count, drift_of_version_1
from support.github_api import GitHubApiServer
from support.github_state import Dispatch
from support.gitops_repo import ROOT
from support.gitrepo import GitRemote

from controller.backends.mlflow_registry import MlflowRegistry
from controller.commands.propose import build_forge
from controller.commands.retrain import build_alertmanager_hook
from controller.local.services import AlertmanagerService, MlflowService, PrometheusService
from controller.retrain.record import RetrainRecord, last_retrain_tag
from controller.serve.server import ServeMetrics
from controller.settings import Settings
from models.fraud_detector.data import FEATURES, generate_transactions

TOKEN = "alertmanager-e2e-token-0123456789"
GITHUB_TOKEN = "ghp_driftE2eToken0123456789abcdefABCDEF"
REPO = "acme/gitops"
WAIT = 45.0  # an upper bound for the alert's path, never a duration being asserted


def train(mlflow_server: MlflowService, name: str) -> str:
    """Register a fraud-detector version trained on week 0, as CI does; its storage URI."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}
    command = [sys.executable, "-m", "models.fraud_detector.train", "--rows", "4000"]
    result = subprocess.run(
        [*command, "--model-name", name], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    client = MlflowClient(mlflow_server.tracking_uri)
    return str(client.get_model_version_download_uri(name, "1"))


@pytest.mark.slow
def test_shifted_traffic_starts_exactly_one_retraining(
    mlflow_server: MlflowService,
    prometheus_server: Callable[..., PrometheusService],
    alertmanager_server: Callable[..., AlertmanagerService],
    git_remote: GitRemote,
    tmp_path: Path,
) -> None:
    """Week 6's traffic fires SluiceFeatureDrift; one dispatch, however often it is repeated."""
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    uri = train(mlflow_server, name)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    traffic = generate_transactions(week=6, rows=600, seed=21)[FEATURES]
    expected = drift_of_version_1(registry, name, traffic)
    assert expected.drifted  # the scenario: at least half of the features move

    with GitHubApiServer(token=GITHUB_TOKEN, repositories={REPO: git_remote.path}) as github:
        settings = Settings(
            mlflow_tracking_uri=mlflow_server.tracking_uri,
            alertmanager_token=TOKEN,
            github_token=GITHUB_TOKEN,
            github_api_url=github.api_url,
            github_repository=REPO,
            retrain_alerts=["SluiceFeatureDrift"],  # its features make the payload
            retrain_group_seconds=2,  # the default's 30 s is the README's loop test's
        )
        metrics = ServeMetrics()
        hook = build_alertmanager_hook(
            settings, forge=build_forge(settings, "github"), registry=registry, metrics=metrics
        )
        path = DriftAlertPath(mlflow_server, prometheus_server, alertmanager_server, tmp_path)
        with path.shifted_traffic(
            name, uri, traffic, metrics=metrics, hook=hook, token=TOKEN, repeat_interval="2s"
        ):
            started = time.monotonic()
            labels = {"model": name, "environment": "staging"}
            # Done once Alertmanager has repeated the alert into the cool-down.
            while count(metrics, "sluice_retrains_total", **labels, result="cooldown") < 1:
                assert time.monotonic() - started < WAIT, github.dispatches
                time.sleep(0.2)

    assert count(metrics, "sluice_retrains_total", **labels, result="started") == 1
    (dispatch,) = github.dispatches
    since = str(dispatch.client_payload["since"])
    # When the retrainer recorded the start: the train workflow reports back to that record.
    last = RetrainRecord.decode(
        MlflowRegistry(mlflow_server.tracking_uri)
        .registered_model_tags(name)
        .get(last_retrain_tag("staging"))
    )
    assert last is not None
    assert last.outcome == "started"
    payload = {
        "model": name,
        "environment": "staging",
        "features": sorted(expected.drifted_features),
        "since": since,
        "requested_at": last.at,
    }
    assert dispatch == Dispatch(REPO, "retrain", payload)
    # When Alertmanager says the alert started firing: after the traffic, before the dispatch.
    assert time.time() - 120 < datetime.fromisoformat(since).timestamp() <= time.time()
