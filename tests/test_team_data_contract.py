"""A team's own pandera suite in Sluice's place: the diabetes example checks its data with
its own ``DataFrameModel`` against a real MLflow server. A failure stops training in the
suite's words before MLflow sees anything; a pass is what the signed-for statement records."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_diabetes

from controller import training
from controller.errors import DataValidationError
from models.diabetes_regressor import train as diabetes
from models.diabetes_regressor.data_schema import DiabetesData


def _name() -> str:
    return f"diabetes-{uuid.uuid4().hex[:8]}"


def _statement(client: MlflowClient, run_id: str, tmp_path: Path) -> dict[str, object]:
    path = Path(client.download_artifacts(run_id, "provenance.intoto.jsonl", str(tmp_path)))
    envelope = json.loads(path.read_text(encoding="utf-8"))
    return dict(json.loads(base64.b64decode(envelope["payload"])))


def test_a_team_suite_failure_stops_training_in_its_words(
    mlflow_tracking_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Progression scores off by 400 fail the suite's own check: exit 2, one line naming the
    check by its error text and the rows, and no experiment, run or version exists."""
    data = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True).frame.eval("target = target - 400").to_csv(data, index=False)
    name = _name()

    assert diabetes.main(["--model-name", name, "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"error: {data} fails the data contract 'diabetes training data': column 'target' fails"
        " 'disease progression is a score from 25 to 346' in 442 rows (e.g. "
    )
    assert "\n" not in err
    client = MlflowClient(mlflow_tracking_uri)
    assert client.get_experiment_by_name(name) is None
    assert client.search_model_versions(f"name = '{name}'") == []


def test_a_team_suite_pass_is_recorded_in_the_provenance_statement(
    mlflow_tracking_uri: str, tmp_path: Path
) -> None:
    """The suite's name, its checks (its own error texts among them) and the rows it covered
    are the datasets' dataContract in the version's statement."""
    name = _name()
    assert diabetes.main(["--model-name", name]) == 0

    client = MlflowClient(mlflow_tracking_uri)
    version = client.get_model_version(name, "1")
    statement = _statement(client, str(version.run_id), tmp_path)
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    datasets = {
        entry["name"]: entry["annotations"]
        for entry in predicate["buildDefinition"]["resolvedDependencies"]
        if entry["name"].startswith("dataset:")
    }
    assert set(datasets) == {"dataset:train", "dataset:holdout"}
    contract = datasets["dataset:train"]["dataContract"]
    assert contract["passed"] is True
    assert contract["schema"] == "diabetes training data"
    assert contract["rows"] == 442
    assert "column target: disease progression is a score from 25 to 346" in contract["checks"]
    assert "at least 100 patients" in contract["checks"]
    assert datasets["dataset:holdout"]["dataContract"] == contract


def test_training_dataset_checks_rows_against_a_suite_it_is_given() -> None:
    """Given the suite rather than its result, training.dataset checks these rows itself:
    a pass is recorded, a failure raises before anything is recorded."""
    frame = load_diabetes(as_frame=True).frame
    record = training.dataset(frame, name="train", source="sklearn", contract=DiabetesData)
    assert record.contract["schema"] == "diabetes training data"
    assert record.contract["rows"] == len(frame)
    short: pd.DataFrame = frame.head(20)
    with pytest.raises(DataValidationError, match="fails 'at least 100 patients'"):
        training.dataset(short, name="holdout", contract=DiabetesData)
