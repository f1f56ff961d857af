"""The KServe model server for MLflow models, started as the local target starts it."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.artifacts
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient
from support.fraud_model import Registered, register, serve

from controller.drift.online_reference import OnlineReference
from controller.local.services import MlflowService
from controller.local.serving.launcher import ModelLoadFailed, start_model_server
from controller.local.serving.monitor import DriftMonitor, MonitoredVersion
from controller.local.serving.pyfunc_model import PayloadError, PyfuncServable, Tensor
from controller.local.serving.server import build_kserve_model
from controller.quality.data_profile import build_profile
from controller.synthetic_traffic import LOAD_TEST, SYNTHETIC_HEADER
from models.fraud_detector.data import FEATURES, generate_transactions
from models.pinned_requirements import pinned

V2_TYPES = {"amount": "FP64", "hour": "INT64", "card_age_days": "INT64", "tx_velocity_24h": "INT64"}
V2_TYPES |= {"merchant_category": "BYTES", "country": "BYTES"}
KNATIVE_REVISION = "fraud-predictor-00002"


@pytest.fixture(scope="module")
def server(fraud_model: Registered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The fraud model served from its mlflow-artifacts:/ URI, in a Knative revision's
    environment (``K_REVISION``)."""
    revision = {"K_REVISION": KNATIVE_REVISION}
    with serve(fraud_model, tmp_path_factory.mktemp("model-server"), revision) as handle:
        yield handle


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return generate_transactions(week=1, rows=25, seed=11)[FEATURES]


def reference(model: Registered, rows: pd.DataFrame) -> np.ndarray:
    """What MLflow itself predicts for the rows."""
    path = mlflow.artifacts.download_artifacts(model.uri, tracking_uri=model.tracking_uri)
    return np.asarray(mlflow.pyfunc.load_model(path).predict(rows))


def post(url: str, document: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
        url, json.dumps(document).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def values(frame: pd.DataFrame | pd.Series) -> list[Any]:
    """Plain JSON values, as a client would send them."""
    return list(json.loads(frame.to_json(orient="values")))


@pytest.mark.slow
def test_v1_predictions_match_mlflow(server: Any, fraud_model: Registered, rows: Any) -> None:
    """V1 `instances` get the probabilities MLflow's own pyfunc gives for the same rows."""
    status, answer = post(f"{server.url}/v1/models/fraud:predict", {"instances": values(rows)})
    assert status == 200
    np.testing.assert_allclose(answer["predictions"], reference(fraud_model, rows), rtol=1e-12)


@pytest.mark.slow
def test_v2_predictions_match_mlflow(server: Any, fraud_model: Registered, rows: Any) -> None:
    """V2 inputs, one tensor per column, get MLflow's probabilities as one output tensor."""
    inputs = [
        {"name": c, "datatype": V2_TYPES[c], "shape": [len(rows)], "data": values(rows[c])}
        for c in FEATURES
    ]
    status, answer = post(f"{server.url}/v2/models/fraud/infer", {"inputs": inputs})
    assert status == 200
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output-0", "FP64", [25, 2])
    predicted = np.asarray(output["data"]).reshape(output["shape"])
    np.testing.assert_allclose(predicted, reference(fraud_model, rows), rtol=1e-12)


@pytest.mark.slow
def test_v2_metadata_lists_the_signature(server: Any) -> None:
    """GET /v2/models/NAME names the signature's inputs and outputs with V2 types and shapes."""
    with urllib.request.urlopen(f"{server.url}/v2/models/fraud", timeout=10) as response:  # noqa: S310
        metadata = json.loads(response.read())
    assert metadata["inputs"] == [
        {"name": c, "datatype": V2_TYPES[c], "shape": [-1]} for c in FEATURES
    ]
    assert metadata["outputs"] == [{"name": "output-0", "datatype": "FP64", "shape": [-1, 2]}]


@pytest.mark.slow
def test_request_that_misses_the_signature_is_a_bad_request(server: Any) -> None:
    """Instances with too few values answer 400, naming the expected columns."""
    status, answer = post(f"{server.url}/v1/models/fraud:predict", {"instances": [[1.0, 2]]})
    assert status == 400
    assert "amount" in answer["error"]


@pytest.mark.slow
def test_server_listens_on_loopback_only(server: Any) -> None:
    """The model server listens on 127.0.0.1:PORT and nowhere else (no gRPC, no 0.0.0.0)."""
    process = psutil.Process(server.pid)
    sockets = getattr(process, "net_connections", process.connections)(kind="inet")
    listening = {(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", server.port)}


def request_counts(url: str) -> dict[str, float]:
    """``sluice_request_duration_seconds_count`` by code, from the server's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    prefix = 'sluice_request_duration_seconds_count{code="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


@pytest.mark.slow
def test_ready_only_after_warming_up_over_http(fraud_model: Registered, tmp_path: Path) -> None:
    """A fresh server reports ready only once its own warm-up requests went through kserve's
    HTTP stack (as a readiness probe with a warm-up request would): a canary's first client
    requests are then not its slowest. The warm-up is counted as no client request."""
    with serve(fraud_model, tmp_path) as fresh:
        log = (tmp_path / "model-server.log").read_text()
        assert "warm-up over HTTP: 3 of 3 requests answered; ready" in log
        assert request_counts(fresh.url) == {}


@pytest.mark.slow
def test_the_log_has_no_deprecation_warning_per_request(
    fraud_model: Registered, rows: Any, tmp_path: Path
) -> None:
    """kserve answers through FastAPI's deprecated ORJSONResponse, and the model's own
    ``catch_warnings`` reset Python's once-per-place record, so every request wrote the same
    two-line warning to the revision's log (19,000 lines for the recommender demo's canary);
    it says nothing a user can act on."""
    with serve(fraud_model, tmp_path) as fresh:
        for _ in range(5):
            status, _ = post(f"{fresh.url}/v1/models/fraud:predict", {"instances": values(rows)})
            assert status == 200
        log = (tmp_path / "model-server.log").read_text()
    assert "ORJSONResponse is deprecated" not in log


def test_every_answer_names_the_knative_revision(server: Any, rows: Any) -> None:
    """With K_REVISION set (Knative sets it in every revision's pod), predictions, kserve's
    errors and probes name the revision in X-Sluice-Revision: a graph's router labels its step
    series with it on a cluster."""
    named = []
    for path, document in (
        ("/v1/models/fraud:predict", {"instances": values(rows.head(1))}),
        ("/v1/models/fraud:predict", {"instances": [[1.0]]}),
        ("/v1/models/other:predict", {"instances": values(rows.head(1))}),
        ("/v2/health/ready", None),
    ):
        body = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
            f"{server.url}{path}", body, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                named.append((response.status, response.headers.get_all("X-Sluice-Revision")))
        except urllib.error.HTTPError as exc:
            named.append((exc.code, exc.headers.get_all("X-Sluice-Revision")))
    assert named == [
        (200, [KNATIVE_REVISION]),
        (400, [KNATIVE_REVISION]),
        (404, [KNATIVE_REVISION]),
        (200, [KNATIVE_REVISION]),
    ]


def test_server_counts_its_inference_requests_by_code(server: Any, rows: Any) -> None:
    """/metrics counts each V1 and V2 inference request by its status code, answers of
    kserve's error handlers included, and not the readiness and metadata calls."""
    before = request_counts(server.url)
    instance = {"instances": values(rows.head(1))}
    assert post(f"{server.url}/v1/models/fraud:predict", instance)[0] == 200
    assert post(f"{server.url}/v1/models/fraud:predict", {"instances": [[1.0]]})[0] == 400
    assert post(f"{server.url}/v1/models/other:predict", instance)[0] == 404
    for path in ("/v2/models/fraud/ready", "/v2/models/fraud", "/v2/health/live"):
        with urllib.request.urlopen(f"{server.url}{path}", timeout=10):  # noqa: S310
            pass
    after = request_counts(server.url)
    grown = {code: n - before.get(code, 0.0) for code, n in after.items()}
    assert {code: n for code, n in grown.items() if n} == {"200": 1.0, "400": 1.0, "404": 1.0}


@pytest.mark.slow
def test_missing_model_fails_readiness_with_a_clear_error(tmp_path: Path) -> None:
    """A storage URI with no model behind it stops the server with 'not loadable' in the error."""
    with pytest.raises(ModelLoadFailed, match="not loadable: no model directory at"):
        start_model_server(
            name="fraud", storage_uri=(tmp_path / "nothing").as_uri(), log_dir=tmp_path, env={}
        )


@pytest.mark.slow
def test_faulty_version_fails_about_its_error_rate(
    fraud_model: Registered, mlflow_server: MlflowService, rows: Any, tmp_path: Path
) -> None:
    """A faulty version at error rate 0.2 answers 500 to a binomially plausible share."""
    out = register(
        mlflow_server,
        *("models.faulty.register", "--base-model", fraud_model.name, "--base-version", "1"),
        *("--error-rate", "0.2", "--latency-ms", "2", "--seed", "5"),
    )
    version = int(out.strip().splitlines()[-1])
    uri = str(
        MlflowClient(mlflow_server.tracking_uri).get_model_version_download_uri(
            fraud_model.name, str(version)
        )
    )
    faulty = Registered(fraud_model.name, version, uri, mlflow_server.tracking_uri)
    n, p = 300, 0.2
    instance = {"instances": values(rows.head(1))}
    with serve(faulty, tmp_path) as handle:
        answers = [post(f"{handle.url}/v1/models/fraud:predict", instance) for _ in range(n)]
        counted = request_counts(handle.url)
    failures = [answer for status, answer in answers if status == 500]
    assert abs(len(failures) - n * p) <= 4 * math.sqrt(n * p * (1 - p)), len(failures)
    # The model's own failures are the 500s its request metrics count (what a gate reads).
    assert counted == {"200": n - len(failures), "500": len(failures)}
    assert "injected failure" in failures[0]["error"]
    good = next(answer for status, answer in answers if status == 200)
    np.testing.assert_allclose(good["predictions"], reference(fraud_model, rows.head(1)))


# -- decoding, without a server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> PyfuncServable:
    """A tiny MLflow model with a two-column signature, loaded from a local directory."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"amount": [1.0, 5.0, 9.0, 2.0], "hour": [1, 2, 3, 4]})
    model = LogisticRegression().fit(frame, [0, 1, 1, 0])
    path = tmp_path_factory.mktemp("tiny") / "model"
    with warnings.catch_warnings():  # integer columns without nulls are intended
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=pinned())
    loaded = PyfuncServable(str(path))
    loaded.load()
    return loaded


def test_rows_as_lists_and_as_objects_decode_alike(servable: PyfuncServable) -> None:
    """V1 rows given as lists (signature order) or as objects give the same typed frame."""
    as_lists = servable.frame_from_instances([[1.5, 3], [2.5, 4]])
    as_objects = servable.frame_from_instances(
        [{"hour": 3, "amount": 1.5}, {"hour": 4, "amount": 2.5}]
    )
    pd.testing.assert_frame_equal(as_lists, as_objects)
    assert list(as_lists.dtypes.astype(str)) == ["float64", "int64"]


def test_one_row_tensor_decodes_like_column_tensors(servable: PyfuncServable) -> None:
    """A V2 [rows, columns] tensor decodes as one tensor per column does."""
    matrix = servable.frame_from_tensors([Tensor("input-0", "FP64", [2, 2], [1.5, 3, 2.5, 4])])
    columns = servable.frame_from_tensors(
        [Tensor("amount", "FP64", [2], [1.5, 2.5]), Tensor("hour", "INT64", [2], [3, 4])]
    )
    pd.testing.assert_frame_equal(matrix, columns)


def test_row_of_the_wrong_length_is_a_payload_error(servable: PyfuncServable) -> None:
    """A row with a value missing is refused before the model sees it."""
    with pytest.raises(PayloadError, match="2 values"):
        servable.frame_from_instances([[1.5]])


# -- the kserve model and its drift monitor, without a server ------------------------------------


def monitored_model(servable: PyfuncServable) -> tuple[Any, DriftMonitor]:
    """The kserve model the server builds, with a drift monitor over the tiny model's inputs."""
    frame = pd.DataFrame({"amount": [1.0, 5.0, 9.0, 2.0], "hour": [1, 2, 3, 4]})
    profile = build_profile(frame, numeric=["amount", "hour"], categorical=[])
    version = MonitoredVersion("tiny", "1", OnlineReference.from_profile(profile))
    monitor = DriftMonitor(version)
    return build_kserve_model("tiny", servable, monitor=monitor), monitor


def window_rows(monitor: DriftMonitor) -> int:
    """Rows in the monitor's window once it has taken in what the requests queued."""
    verdict = monitor.evaluate_now()
    return 0 if verdict is None else verdict.rows


@pytest.mark.parametrize("name", [SYNTHETIC_HEADER.lower(), SYNTHETIC_HEADER])
def test_synthetic_request_is_answered_but_not_monitored(
    servable: PyfuncServable, name: str
) -> None:
    """A request marked synthetic (kserve passes names lower-cased) is answered, not recorded."""
    model, monitor = monitored_model(servable)
    payload = {"instances": [[1.5, 3], [8.0, 2]]}
    answer = asyncio.run(model.predict(payload, headers={name: LOAD_TEST}))
    assert len(answer["predictions"]) == 2
    assert window_rows(monitor) == 0


def test_live_request_is_monitored(servable: PyfuncServable) -> None:
    """A request without the synthetic header is answered and its rows enter the window."""
    model, monitor = monitored_model(servable)
    payload = {"instances": [[1.5, 3], [8.0, 2]]}
    headers = {"content-type": "application/json", "x-request-id": "r-1"}
    answer = asyncio.run(model.predict(payload, headers=headers))
    assert len(answer["predictions"]) == 2
    assert window_rows(monitor) == 2


def test_warm_up_predicts_on_the_input_example_before_ready(servable: PyfuncServable) -> None:
    """The server warms the model on its own input example before the port opens (as a
    readiness probe with a warm-up request would), so a fresh canary's first client requests
    are not its slowest; a model that fails its warm-up still serves (the gates judge it)."""
    assert servable.warm_up() == 3

    class Failing(PyfuncServable):
        def predict(self, frame: Any) -> Any:
            raise RuntimeError("boom")

    failing = Failing(servable.storage_uri)
    failing.__dict__.update({k: v for k, v in servable.__dict__.items() if k != "storage_uri"})
    assert failing.warm_up() == 0
