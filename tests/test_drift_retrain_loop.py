"""The drift → retrain loop with the defaults, as the README's "Retraining on recent data" runs it.

A fraud-detector version trained on week 0 is the champion; its model server gets 700 rows of
week 6. Prometheus (the drift rules, `for:` cut to 1 s) fires both drift alerts, Alertmanager
posts them to the Alertmanager hook composed as `sluice serve --forge local` composes it, with
every retraining setting at its default: the alerts of the 30 s window are one retraining that
names the drifted features, the default `retrain_command` trains the example on its newest
week, the new version passes the quality gate against the week-0 champion, and `sluice status`
shows the outcome from the registry's tags.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.drift_stack import DriftAlertPath, count, drift_of_version_1
from support.gitops_repo import ROOT, seed_manifests
from support.gitrepo import GitRemote

from controller.backends.mlflow_registry import MlflowRegistry
from controller.commands.retrain import build_alertmanager_hook
from controller.local.services import AlertmanagerService, MlflowService, PrometheusService
from controller.null_ports import NoForge
from controller.retrain.record import RetrainRecord, cooldown_tag, last_retrain_tag
from controller.serve.server import ServeMetrics
from controller.settings import Settings
from models.fraud_detector.data import FEATURES, NEWEST_WEEK, generate_transactions

TOKEN = "alertmanager-loop-token-0123456789"
WAIT = 240.0  # an upper bound for alerts, the 30 s window and a training run on 2 cores


def training_module(root: Path, name: str) -> Path:
    """``models.<name with - as _>.train`` under ``root``, as the default ``{module}`` names it:
    the example's training (tests name each model uniquely, so each needs its module)."""
    package = root / "models"
    (package / name.replace("-", "_")).mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"__path__ = [{str(package)!r}, {str(ROOT / 'models')!r}]\n"
    )
    (package / name.replace("-", "_") / "__init__.py").write_text("")
    (package / name.replace("-", "_") / "train.py").write_text(
        "import sys\n\nfrom models.fraud_detector.train import main\n\nsys.exit(main())\n"
    )
    return root


@pytest.mark.slow
def test_drifted_traffic_retrains_once_on_recent_data_and_status_shows_it(
    mlflow_server: MlflowService,
    prometheus_server: Callable[..., PrometheusService],
    alertmanager_server: Callable[..., AlertmanagerService],
    git_remote: GitRemote,
    tmp_path: Path,
) -> None:
    name = f"fraud-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=name)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri}
    trained = subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--week", "0", "--model-name", name],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    client = MlflowClient(mlflow_server.tracking_uri)
    client.set_registered_model_alias(name, "champion", "1")  # the champion knows only week 0
    uri = str(client.get_model_version_download_uri(name, "1"))
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    traffic = generate_transactions(week=NEWEST_WEEK, rows=700, seed=21)[FEATURES]
    drifted = drift_of_version_1(registry, name, traffic).drifted_features
    assert len(drifted) >= 3

    # Every retraining setting at its default: group window, cool-down, command.
    settings = Settings(
        mlflow_tracking_uri=mlflow_server.tracking_uri,
        alertmanager_token=TOKEN,
        state_dir=tmp_path / "state",
    )
    metrics = ServeMetrics()
    hook = build_alertmanager_hook(
        settings,
        forge=NoForge(),
        registry=registry,
        metrics=metrics,
        models=registry,
        cwd=training_module(tmp_path / "checkout", name),
    )
    labels = {"model": name, "environment": "staging"}
    path = DriftAlertPath(mlflow_server, prometheus_server, alertmanager_server, tmp_path)
    with path.shifted_traffic(name, uri, traffic, metrics=metrics, hook=hook, token=TOKEN):
        started = time.monotonic()
        record: RetrainRecord | None = None
        while record is None or record.outcome in ("grouping", "started"):
            assert time.monotonic() - started < WAIT, record
            time.sleep(0.5)
            tags = registry.registered_model_tags(name)
            record = RetrainRecord.decode(tags.get(last_retrain_tag("staging")))

    # Both alerts, one retraining naming the drifted features, none turned away.
    assert count(metrics, "sluice_retrains_total", **labels, result="started") == 1
    assert count(metrics, "sluice_retrains_total", **labels, result="cooldown") == 0
    assert count(metrics, "sluice_retrains_total", **labels, result="grouped") >= 2
    assert set(record.alerts) == {"SluiceFeatureDrift", "SluicePredictionDrift"}
    assert set(record.features) == set(drifted)
    assert record.since
    assert cooldown_tag("staging") in registry.registered_model_tags(name)
    # It trained on recent data, and so beat the week-0 champion at its own gate.
    assert (record.outcome, record.new_version) == ("succeeded", 2), record
    version = client.get_model_version(name, "2")
    assert version.tags["sluice.gate"] == "passed"
    assert version.tags["sluice.data"].startswith(f"synthetic week {NEWEST_WEEK} ")
    assert set(version.tags["sluice.retrain.features"].split(",")) == set(drifted)
    assert client.get_model_version_by_alias(name, "challenger").version == "2"

    # `sluice status` reads the outcome back from the registry.
    status_env = {**env, "SLUICE_STATE_DIR": str(tmp_path / "status")}
    for flags, key in ((["--json"], "json"), ([], "table")):
        shown = subprocess.run(
            [sys.executable, "-m", "controller", "status", "--env", "staging",
             "--repo", str(git_remote.path), *flags],
            cwd=tmp_path, env=status_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        if key == "json":
            (release,) = json.loads(shown.stdout)["releases"]
            retraining = release["retraining"]
            assert (retraining["outcome"], retraining["newVersion"]) == ("succeeded", 2)
            assert set(retraining["features"]) == set(drifted)
        else:
            assert f"{name} in staging: last retraining succeeded → v2 (" in shown.stdout
