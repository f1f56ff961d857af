"""The fraud detector's training step against a real MLflow server, run as CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
from mlflow import MlflowClient

from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.quality.classification_metrics import binary_classification_metrics
from models.fraud_detector.data import LABEL, generate_transactions
from models.fraud_detector.pipeline import score, split_holdout

ROOT = Path(__file__).resolve().parent.parent
# Small and fast, yet enough positives for stable metrics.
ROWS = "8000"


def run_train(tracking_uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    return subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--rows", ROWS, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture
def model_name() -> str:
    return f"fraud-{uuid.uuid4().hex[:8]}"


def registry_state(client: MlflowClient, name: str) -> tuple[list[str], int]:
    versions = [v.version for v in client.search_model_versions(f"name = '{name}'")]
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return sorted(versions), len(runs)


@pytest.mark.slow
def test_valid_week_registers_a_challenger(mlflow_server: MlflowService, model_name: str) -> None:
    """A model that passes the gate is registered and aliased challenger, with its profile."""
    result = run_train(mlflow_server.tracking_uri, "--model-name", model_name, "--json")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["version"] == 1
    assert output["alias"] == "challenger"
    assert output["gate"]["passed"] is True

    client = MlflowClient(mlflow_server.tracking_uri)
    version = client.get_model_version_by_alias(model_name, "challenger")
    assert version.version == "1"
    assert version.tags["sluice.gate"] == "passed"
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"reference_profile.json", "quality_gate.json"} <= artifacts
    profile_path = client.download_artifacts(version.run_id, "reference_profile.json")
    profile = json.loads(Path(profile_path).read_text())
    assert profile["schema_version"] == 1
    assert set(profile["features"]) >= {"amount", "merchant_category"}


@pytest.mark.slow
@pytest.mark.parametrize("weakening", [["--train-fraction", "0.02"], ["--shuffle-labels"]])
def test_weak_model_is_registered_without_alias_and_says_why(
    mlflow_server: MlflowService, model_name: str, weakening: list[str]
) -> None:
    """A model below the gate is kept, not aliased, and the output names the failed check."""
    result = run_train(mlflow_server.tracking_uri, "--model-name", model_name, *weakening)
    assert result.returncode == 1, result.stderr
    assert "without alias" in result.stdout
    assert "FAIL" in result.stdout
    assert "< minimum" in result.stdout

    client = MlflowClient(mlflow_server.tracking_uri)
    (version,) = client.search_model_versions(f"name = '{model_name}'")
    assert version.tags["sluice.gate"] == "failed"
    assert "minimum" in version.tags["sluice.gate_summary"]
    assert client.get_registered_model(model_name).aliases == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda f: f.drop(columns=["country"]), "missing columns ['country']"),
        (lambda f: f.assign(amount=-f["amount"]), "'amount' has 8000 values below 0"),
        (lambda f: f.assign(card_age_days=np.nan), "'card_age_days' is entirely null"),
    ],
)
def test_corrupt_data_fails_validation_and_registers_nothing(
    mlflow_server: MlflowService, model_name: str, tmp_path: Path, corrupt, message: str
) -> None:
    """Corrupt data exits 2 with one line, and leaves no run and no version behind."""
    path = tmp_path / "transactions.csv"
    corrupt(generate_transactions(week=0, rows=int(ROWS))).to_csv(path, index=False)
    client = MlflowClient(mlflow_server.tracking_uri)
    before = registry_state(client, model_name)

    result = run_train(mlflow_server.tracking_uri, "--model-name", model_name, "--data", str(path))

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert str(path) in line
    assert registry_state(client, model_name) == before


@pytest.mark.slow
def test_champion_is_scored_on_the_same_holdout_rows(
    mlflow_server: MlflowService, model_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion's reported metrics are the champion's own on the candidate's holdout."""
    first = run_train(mlflow_server.tracking_uri, "--model-name", model_name, "--week", "0")
    assert first.returncode == 0, first.stderr
    client = MlflowClient(mlflow_server.tracking_uri)
    client.set_registered_model_alias(model_name, "champion", "1")

    second = run_train(
        mlflow_server.tracking_uri, "--model-name", model_name, "--week", "1", "--json"
    )
    # Pass or fail, the gate compared against the champion: that comparison is under test.
    assert second.returncode in (0, 1), second.stderr
    output = json.loads(second.stdout)
    assert output["champion_version"] == 1

    # Recompute independently: week 1's holdout, scored by version 1.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    champion = mlflow.sklearn.load_model(f"models:/{model_name}/1")
    _, holdout = split_holdout(generate_transactions(week=1, rows=int(ROWS)), seed=7)
    expected = binary_classification_metrics(holdout[LABEL], score(champion, holdout))
    assert output["champion_metrics"] == pytest.approx(expected, abs=1e-12)
    run = client.get_run(output["run_id"])
    assert run.data.params["holdout_digest"] == output["holdout_digest"]
    assert run.data.metrics["champion_roc_auc"] == pytest.approx(expected["roc_auc"])


@pytest.mark.slow
def test_unreachable_registry_exits_3_with_one_line(model_name: str) -> None:
    """With no server at the tracking URI, training says so in one line and exits 3."""
    result = run_train(f"http://127.0.0.1:{free_port()}", "--model-name", model_name)
    assert result.returncode == 3
    (line,) = result.stderr.strip().splitlines()
    assert "unreachable" in line
    assert "MLFLOW_TRACKING_URI" in line


@pytest.mark.slow
@pytest.mark.postgres
def test_registers_on_the_postgresql_backend(
    mlflow_postgres_server: MlflowService, model_name: str
) -> None:
    """PostgreSQL, the production backend, stores versions and aliases the same way."""
    result = run_train(mlflow_postgres_server.tracking_uri, "--model-name", model_name, "--json")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(mlflow_postgres_server.tracking_uri)
    assert client.get_model_version_by_alias(model_name, "challenger").version == "1"
