"""The model server's drift monitor: queue on the request path, gauges from the last verdict."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest

from controller.drift import detect_drift_from_profile
from controller.drift.online_reference import OnlineReference
from controller.local.services import MlflowService
from controller.local.serving.monitor import (
    DriftMonitor,
    MonitoredVersion,
    find_monitored_version,
    prediction_scores,
    start_drift_monitor,
)
from controller.quality.data_profile import DataProfile, build_profile
from models.fraud_detector.data import (
    CATEGORICAL_FEATURES,
    FEATURES,
    NUMERIC_FEATURES,
    generate_transactions,
)

WAIT = 30.0


@pytest.fixture(scope="module")
def profile() -> DataProfile:
    frame = generate_transactions(week=0, rows=8000, seed=7)
    scores = np.random.default_rng(0).beta(1, 20, size=len(frame))
    return build_profile(
        frame, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES, predictions=scores
    )


def monitor_of(profile: DataProfile, **kwargs: float) -> tuple[DriftMonitor, CollectorRegistry]:
    monitor = DriftMonitor(
        MonitoredVersion("fraud-detector", "7", OnlineReference.from_profile(profile)),
        **kwargs,  # type: ignore[arg-type]
    )
    registry = CollectorRegistry()
    registry.register(monitor)
    return monitor, registry


def send(monitor: DriftMonitor, week: int, rows: int, *, per_request: int = 1) -> None:
    """Requests as the model server records them: the typed frame and predict_proba's output."""
    frame = generate_transactions(week=week, rows=rows, seed=week + 100)[FEATURES]
    rng = np.random.default_rng(week)
    positive = rng.beta(1, 20 if week == 0 else 4, size=rows)
    for start in range(0, rows, per_request):
        part = frame.iloc[start : start + per_request]
        score = positive[start : start + per_request]
        monitor.record(part, np.column_stack([1 - score, score]))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"model": "fraud-detector", "version": "7", **labels})


def test_recording_only_queues(profile: DataProfile) -> None:
    """A request adds nothing to the window until the monitor's own evaluation runs."""
    monitor, registry = monitor_of(profile)
    send(monitor, week=0, rows=50)
    assert value(registry, "sluice_drift_window_rows") == 0
    assert monitor.evaluate_now() is not None
    assert value(registry, "sluice_drift_window_rows") == 50


def test_gauges_of_a_shifted_stream(profile: DataProfile) -> None:
    """Shifted traffic: drifted=1 on the shifted features, a share >= 0.5, prediction drift."""
    monitor, registry = monitor_of(profile)
    send(monitor, week=6, rows=600)
    verdict = monitor.evaluate_now()
    assert verdict is not None
    assert value(registry, "sluice_drift_window_rows") == 600
    share = value(registry, "sluice_dataset_drift_share")
    assert share is not None
    assert share >= 0.5
    assert value(registry, "sluice_feature_drift", feature="amount", stat="drifted") == 1
    assert value(registry, "sluice_feature_drift", feature="country", stat="drifted") == 0
    amount = next(s for s in verdict.features if s.name == "amount")
    assert value(registry, "sluice_feature_drift", feature="amount", stat="score") == amount.value
    assert value(registry, "sluice_feature_drift", feature="amount", stat="threshold") == 0.1
    assert value(registry, "sluice_prediction_drift", stat="drifted") == 1
    cost = value(registry, "sluice_drift_evaluation_seconds")
    assert cost is not None
    assert 0 < cost < 1


def test_gauges_of_a_stream_like_training(profile: DataProfile) -> None:
    """A full window of traffic like the training week: every drifted gauge is 0, and the share.

    (On 600 rows, noise alone moves a Poisson count past 0.1 now and then: the alert also
    wants half the features drifting, for ten minutes.)"""
    monitor, registry = monitor_of(profile)
    send(monitor, week=0, rows=1000, per_request=10)
    monitor.evaluate_now()
    assert value(registry, "sluice_dataset_drift_share") == 0
    for feature in FEATURES:
        assert value(registry, "sluice_feature_drift", feature=feature, stat="drifted") == 0
    assert value(registry, "sluice_prediction_drift", stat="drifted") == 0


def test_window_is_bounded(profile: DataProfile) -> None:
    """More requests than the window holds keep only the newest rows."""
    monitor, registry = monitor_of(profile, window_rows=200)
    send(monitor, week=6, rows=300)
    send(monitor, week=0, rows=250)
    monitor.evaluate_now()
    assert value(registry, "sluice_drift_window_rows") == 200
    newest = generate_transactions(week=0, rows=250, seed=100)[FEATURES].tail(200)
    expected = detect_drift_from_profile(profile, newest).drifted_share
    assert value(registry, "sluice_dataset_drift_share") == expected < 0.5


def test_background_thread_evaluates(profile: DataProfile) -> None:
    """Started, the monitor picks up queued requests on its own within an interval or two."""
    monitor, registry = monitor_of(profile, interval_seconds=0.05)
    monitor.start()
    try:
        send(monitor, week=6, rows=100, per_request=5)
        deadline = time.monotonic() + WAIT
        # The rows gauge reads the window before its first verdict is stored: wait for both.
        while (
            value(registry, "sluice_drift_window_rows") != 100
            or value(registry, "sluice_feature_drift", feature="amount", stat="drifted") is None
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert value(registry, "sluice_feature_drift", feature="amount", stat="drifted") == 1
    finally:
        monitor.stop()


def test_requests_without_a_usable_score_still_count_inputs(profile: DataProfile) -> None:
    """An output with three columns has no single score: inputs are scored, predictions not."""
    monitor, registry = monitor_of(profile)
    frame = generate_transactions(week=0, rows=30, seed=1)[FEATURES]
    monitor.record(frame, np.zeros((30, 3)))
    monitor.evaluate_now()
    assert value(registry, "sluice_drift_window_rows") == 30
    assert value(registry, "sluice_prediction_drift", stat="score") is None
    assert value(registry, "sluice_feature_drift", feature="amount", stat="score") is not None


def test_prediction_scores_of_common_outputs() -> None:
    """A vector, one column, predict_proba's two columns (positive class), a frame; else None."""
    assert prediction_scores(np.array([0.1, 0.2]), 2).tolist() == [0.1, 0.2]
    assert prediction_scores(np.array([[0.1], [0.2]]), 2).tolist() == [0.1, 0.2]
    assert prediction_scores(np.array([[0.9, 0.1], [0.8, 0.2]]), 2).tolist() == [0.1, 0.2]
    assert prediction_scores(pd.DataFrame({"p": [0.3]}), 1).tolist() == [0.3]
    assert prediction_scores(np.zeros((2, 3)), 2) is None
    assert prediction_scores(np.array(["a", "b"]), 2) is None
    assert prediction_scores(np.array([0.1]), 2) is None


def test_model_without_a_run_exports_no_drift_series(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose MLmodel names no run is served without a monitor and without series."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    registry = CollectorRegistry()
    assert start_drift_monitor(None, "fraud", registry=registry) is None
    assert b"sluice_" not in generate_latest(registry)


def log_run_with_profile(tracking_uri: str, profile: DataProfile | None, tmp_path: Path) -> str:
    """A run (with or without reference_profile.json) registered as version 1 of a new model."""
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(f"monitor-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    if profile is not None:
        path = tmp_path / "reference_profile.json"
        path.write_text(json.dumps(profile.model_dump(mode="json")))
        client.log_artifact(run_id, str(path))
    name = f"monitored-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    return run_id


@pytest.mark.slow
def test_profile_and_version_come_from_the_run(
    mlflow_tracking_uri: str, mlflow_server: MlflowService, profile: DataProfile, tmp_path: Path
) -> None:
    """The run's profile is loaded and the series are labelled with its registered version."""
    run_id = log_run_with_profile(mlflow_tracking_uri, profile, tmp_path)
    found = find_monitored_version(run_id, "fraud")
    assert found is not None
    assert found.model.startswith("monitored-")
    assert found.version == "1"
    assert [f.name for f in found.reference.features] == list(profile.features)


@pytest.mark.slow
def test_run_without_a_profile_exports_no_drift_series(
    mlflow_tracking_uri: str, mlflow_server: MlflowService, tmp_path: Path
) -> None:
    """A registered run that logged no profile serves without drift series."""
    run_id = log_run_with_profile(mlflow_tracking_uri, None, tmp_path)
    registry = CollectorRegistry()
    assert start_drift_monitor(run_id, "fraud", registry=registry) is None
    assert b"sluice_" not in generate_latest(registry)
