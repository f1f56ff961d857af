"""`POST /v1/events`: KServe's inference-logger CloudEvents become answers in the prediction log."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote
from support.kserve_logger import kserve_event

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.commands.events import build_events_route
from controller.errors import ConfigError, TransientError
from controller.local.processes import free_port, http_ok
from controller.local.services import MlflowService
from controller.predictions import inputs_digest
from controller.serve.event_pairing import EventPairer
from controller.serve.events import events_route, parse_event
from controller.serve.server import Handler, Request, ServeMetrics, SluiceServer, sluice_routes
from controller.serve.webhooks import WebhookRejected
from controller.settings import Settings
from controller.testing import MemoryEventHalves, MemoryPredictionStore

TOKEN = "events-token-0123456789abcdef"
WAIT = 10.0
REQUEST = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
RESPONSE = b'{"predictions": [1, 1]}'
REVISION = {"Knative-Serving-Revision": ["iris-predictor-00002"]}


def logged(path: Path) -> list[dict[str, object]]:
    """Every answer in the log at ``path``, as its columns."""
    columns = "request_id, time, model, version, revision, role, inputs_digest, output, " \
        "latency_ms, status"  # fmt: skip
    with sqlite3.connect(path) as connection:
        rows = connection.execute(f"SELECT {columns} FROM predictions ORDER BY seq").fetchall()  # noqa: S608
    return [dict(zip(columns.split(", "), row, strict=True)) for row in rows]


# -- parse_event ----------------------------------------------------------------------------------


def test_a_binary_event_as_kserve_sends_it_is_read_whole() -> None:
    headers, body = kserve_event(
        "request", "r-1", REQUEST, metadata=REVISION, time="2026-12-06T10:00:00.123456789Z"
    )
    event = parse_event({k.lower(): v for k, v in headers.items()}, body)
    assert (event.kind, event.request_id, event.model) == ("request", "r-1", "iris")
    assert (event.namespace, event.component, event.data) == ("models", "predictor", REQUEST)
    assert event.metadata == {"Knative-Serving-Revision": ("iris-predictor-00002",)}
    assert event.recorded_at == pytest.approx(1796551200.123456)


def test_a_structured_event_is_read_too() -> None:
    document = {
        "specversion": "1.0", "id": "r-1", "source": "s", "datacontenttype": "application/json",
        "type": "org.kubeflow.serving.inference.response", "inferenceservicename": "iris",
        "data": {"predictions": [1]}, "recordedtime": "2026-12-06T10:00:00Z",
        "statuscode": "200",
    }  # fmt: skip
    event = parse_event(
        {"content-type": "application/cloudevents+json"}, json.dumps(document).encode()
    )
    assert (event.kind, event.data, event.status) == ("response", b'{"predictions":[1]}', 200)
    assert event.recorded_at == 1796551200.0


def test_a_percent_encoded_metadata_extension_is_decoded() -> None:
    """The HTTP binding asks senders to percent-encode quotes; KServe's sdk-go does not."""
    headers, body = kserve_event("request", "r-1", REQUEST)
    headers["ce-metadata"] = "%7B%22Knative-Serving-Revision%22:[%22rev-3%22]%7D"
    event = parse_event({k.lower(): v for k, v in headers.items()}, body)
    assert event.metadata == {"Knative-Serving-Revision": ("rev-3",)}


def _changed(drop: str = "", **headers: str) -> tuple[dict[str, str], bytes]:
    sent, body = kserve_event("request", "r-1", REQUEST)
    sent = {k.lower(): v for k, v in sent.items() if k.lower() != drop}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return sent, body


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (
            _changed(drop="ce-id")[0], REQUEST,
            "missing ce-id: a binary-mode CloudEvent needs ce-specversion, ce-id, ce-source, "
            "ce-type headers",
        ),
        (
            _changed(ce_type="com.example.other")[0], REQUEST,
            "ce-type 'com.example.other' is not org.kubeflow.serving.inference.request or "
            "org.kubeflow.serving.inference.response",
        ),
        (
            _changed()[0], b'{"instances": [[1, 2',
            "the request body is not JSON, though its content type is application/json",
        ),
        (
            _changed(ce_specversion="0.9")[0], REQUEST,
            "not a CloudEvent: Found invalid specversion 0.9",
        ),
        (
            _changed(ce_inferenceservicename="")[0], REQUEST,
            "the event has no inferenceservicename extension",
        ),
        (
            _changed(ce_metadata='["x"]')[0], REQUEST,
            "the metadata extension is not a JSON object of header name to list of values",
        ),
        (_changed(ce_time="yesterday")[0], REQUEST, "time 'yesterday' is not an RFC 3339 time"),
        (
            _changed(ce_id="x" * 201)[0], REQUEST,
            "ce-id is not a printable string of 1 to 200 characters",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"}, b"[]",
            "batched CloudEvents are not accepted; send one per request",
        ),
        (
            {"content-type": "application/cloudevents+json"}, b"{bad",
            "not a CloudEvent: Failed to read specversion from both headers and data. The "
            "following can not be parsed as json: b'{bad'",
        ),
    ],
)  # fmt: skip
def test_a_bad_event_is_400_with_one_line(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        parse_event(headers, body)
    assert (rejected.value.status, rejected.value.reason) == (400, reason)
    assert "\n" not in rejected.value.reason


def test_a_body_that_is_not_json_is_kept_as_sent_when_its_type_says_so() -> None:
    """A TorchServe image request: the content type is not JSON, the bytes are the inputs."""
    headers, body = kserve_event("request", "r-1", b"\x89PNG\r\n", content_type="image/png")
    event = parse_event({k.lower(): v for k, v in headers.items()}, body)
    assert event.data == b"\x89PNG\r\n"


# -- the route -------------------------------------------------------------------------------------


@dataclass
class EventsServer:
    url: str
    log: Path
    metrics: ServeMetrics
    sink: SqlitePredictionLog

    def post(
        self, headers: dict[str, str], body: bytes, token: str | None = TOKEN
    ) -> requests.Response:
        sent = dict(headers)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return requests.post(f"{self.url}/v1/events", data=body, headers=sent, timeout=WAIT)

    def deliveries(self, result: str) -> float:
        labels = {"source": "kserve_logger", "result": result}
        value = self.metrics.registry.get_sample_value("sluice_webhook_deliveries_total", labels)
        return value or 0.0

    def answers(self) -> list[dict[str, object]]:
        assert self.sink.flush()
        return logged(self.log)


@contextmanager
def serve_events(
    log: Path, *, token: str | None = TOKEN, clock: list[float] | None = None
) -> Iterator[EventsServer]:
    """`sluice serve`'s routes with the events route into ``log``, on a free port."""
    metrics = ServeMetrics()
    now = clock if clock is not None else [1000.0]
    with SqlitePredictionLog(log) as sink:
        route = events_route(
            sink=sink, metrics=metrics, token=token, trust_network=token is None,
            pairer=EventPairer(ttl_seconds=60), clock=lambda: now[0],
        )  # fmt: skip
        routes = sluice_routes(
            metrics=metrics, status=dict, mlflow_trigger=lambda m, a: False,
            mlflow_webhook_secret=None, events=route,
        )  # fmt: skip
        with SluiceServer(routes) as server:
            yield EventsServer(server.url, log, metrics, sink)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[EventsServer]:
    with serve_events(tmp_path / "predictions.sqlite") as server:
        yield server


def post_pair(
    server: EventsServer, request_id: str, *, token: str | None = TOKEN, **fields: object
) -> list[requests.Response]:
    return [
        server.post(*kserve_event(kind, request_id, data, **fields), token=token)  # type: ignore[arg-type]
        for kind, data in (("request", REQUEST), ("response", RESPONSE))
    ]


def test_a_request_and_its_response_become_one_logged_answer(served: EventsServer) -> None:
    """The request half waits, the response half pairs it; the log holds the model's answer
    with the inputs' digest, the output and the revision Knative routed the request to."""
    first, second = post_pair(served, "r-1", metadata=REVISION, time="2026-12-06T10:00:00.100Z")
    assert (first.status_code, first.json()) == (200, {"result": "waiting"})
    assert (second.status_code, second.json()) == (200, {"result": "paired"})
    [row] = served.answers()
    assert row["request_id"] == "r-1"
    assert (row["model"], row["revision"], row["role"], row["status"]) == (
        "iris", "iris-predictor-00002", "primary", 200,
    )  # fmt: skip
    assert row["inputs_digest"] == inputs_digest(REQUEST)
    assert json.loads(str(row["output"])) == {"predictions": [1, 1]}
    assert (served.deliveries("waiting"), served.deliveries("paired")) == (1, 1)


def test_the_load_tests_requests_are_answered_but_not_logged(served: EventsServer) -> None:
    """A request the load test or the smoke sent carries X-Sluice-Synthetic, which the logger
    copies into the events (Sluice writes it into metadataHeaders): no client sent it and none
    will click it, so it is not logged, and a KPI never counts it against the canary."""
    marked = REVISION | {"X-Sluice-Synthetic": ["load-test"]}
    first, second = post_pair(served, "load-1", metadata=marked)
    assert (first.json(), second.json()) == ({"result": "waiting"}, {"result": "synthetic"})
    post_pair(served, "client-1", metadata=REVISION)
    assert [row["request_id"] for row in served.answers()] == ["client-1"]
    assert served.deliveries("synthetic") == 1


def test_the_response_may_arrive_first(served: EventsServer) -> None:
    response = served.post(*kserve_event("response", "r-2", RESPONSE))
    request = served.post(*kserve_event("request", "r-2", REQUEST))
    assert (response.json(), request.json()) == ({"result": "waiting"}, {"result": "paired"})
    assert [row["request_id"] for row in served.answers()] == ["r-2"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_anything_but_the_bearer_token_is_401_and_stores_nothing(
    served: EventsServer, headers: dict[str, str]
) -> None:
    for kind, data in (("request", REQUEST), ("response", RESPONSE)):
        sent, body = kserve_event(kind, "r-1", data)
        response = served.post({**sent, **headers}, body, token=None)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert served.answers() == []
    assert served.deliveries("unauthorized") == 2


def test_a_refused_token_appears_in_no_log_line(
    served: EventsServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        served.post(*kserve_event("request", "r-1", REQUEST), token="guessed-token-abcdef")
    lines = [record.getMessage() for record in caplog.records]
    assert any("bearer token does not match" in line for line in lines)
    assert not any("guessed-token" in line or TOKEN in line for line in lines)


def test_a_malformed_half_is_400_counted_and_never_pairs(served: EventsServer) -> None:
    headers, _ = kserve_event("request", "r-1", REQUEST)
    bad = served.post(headers, b'{"instances": [[1,')
    assert (bad.status_code, bad.json()) == (
        400, {"error": "the request body is not JSON, though its content type is application/json"},
    )  # fmt: skip
    assert served.post(*kserve_event("response", "r-1", RESPONSE)).json() == {"result": "waiting"}
    assert served.answers() == []
    assert served.deliveries("malformed") == 1


def test_a_transformers_events_are_ignored(served: EventsServer) -> None:
    """Only the predictor's answers are the model's; a transformer's logger is answered 200."""
    responses = post_pair(served, "r-1", component="transformer")
    assert [r.json() for r in responses] == [{"result": "ignored"}] * 2
    assert served.answers() == []


def test_trusting_the_network_needs_no_credential(tmp_path: Path) -> None:
    """KServe's logger sends no header: with trust_network the events are taken as they come."""
    with serve_events(tmp_path / "log.sqlite", token=None) as server:
        responses = post_pair(server, "r-1", token=None)
        assert [r.status_code for r in responses] == [200, 200]
        assert [row["request_id"] for row in server.answers()] == ["r-1"]


def test_an_unpaired_half_past_its_ttl_is_dropped_and_counted(tmp_path: Path) -> None:
    """A logger in mode request (or a lost response) leaves halves that never pair: they are
    dropped after the TTL, counted as expired, and nothing is stored for them."""
    clock = [1000.0]
    with serve_events(tmp_path / "log.sqlite", clock=clock) as server:
        server.post(*kserve_event("request", "lonely", REQUEST))
        clock[0] += 61
        server.post(*kserve_event("request", "r-2", REQUEST))
        assert server.post(*kserve_event("response", "lonely", RESPONSE)).json() == {
            "result": "waiting"
        }
        assert server.deliveries("expired") == 1
        metrics = requests.get(f"{server.url}/metrics", timeout=WAIT).text
        assert (
            'sluice_webhook_deliveries_total{result="expired",source="kserve_logger"} 1.0'
            in metrics
        )
        assert server.answers() == []


def test_an_event_over_the_limit_is_413(tmp_path: Path) -> None:
    with SqlitePredictionLog(tmp_path / "log.db") as sink:
        route = events_route(sink=sink, metrics=ServeMetrics(), token=TOKEN, max_body_bytes=16)
        headers, body = kserve_event("request", "r-1", REQUEST)
        sent = {k.lower(): v for k, v in headers.items()} | {"authorization": f"Bearer {TOKEN}"}
        response = route(Request("POST", "/v1/events", sent, body))
    assert response.status == 413
    assert json.loads(response.body) == {"error": "event over 16 bytes"}


def test_a_sink_that_raises_is_503() -> None:
    class Broken:
        def record(self, prediction: object) -> None:
            raise RuntimeError("disk full")

    metrics = ServeMetrics()
    route = events_route(sink=Broken(), metrics=metrics, trust_network=True)
    for kind, data in (("request", REQUEST), ("response", RESPONSE)):
        headers, body = kserve_event(kind, "r-1", data)
        response = route(
            Request("POST", "/v1/events", {k.lower(): v for k, v in headers.items()}, body)
        )
    assert response.status == 503


def _post(route: Handler, kind: str, request_id: str, data: bytes) -> dict[str, object]:
    headers, body = kserve_event(kind, request_id, data, metadata=REVISION)
    sent = {k.lower(): v for k, v in headers.items()}
    answered = route(Request("POST", "/v1/events", sent, body))
    assert answered.status == 200, answered.body
    return dict(json.loads(answered.body))


class _Refusing:
    def record(self, prediction: object) -> None:
        raise AssertionError("a store that pairs records the answer itself")


def test_replicas_sharing_a_store_that_pairs_take_either_half() -> None:
    """Two routes (two replicas) pairing through one store that pairs and records, as
    PostgreSQL's does: the request taken by one and the response by the other are one answer,
    recorded by the store, not again through the route's sink."""
    store = MemoryPredictionStore()
    halves = MemoryEventHalves(store)
    first, second = (
        events_route(sink=_Refusing(), metrics=ServeMetrics(), trust_network=True,
                     pairer=halves, clock=lambda: 1000.0)
        for _ in range(2)
    )  # fmt: skip
    assert _post(first, "response", "r-1", RESPONSE) == {"result": "waiting"}
    assert _post(second, "request", "r-1", REQUEST) == {"result": "paired"}
    assert store.row_count() == 1
    assert store.count_logged(["r-1"]) == 1
    assert len(halves) == 0


def test_a_store_that_cannot_take_a_half_is_503_counted_as_error() -> None:
    class Down:
        def add(self, event: object, *, now: float) -> object:
            raise TransientError("the prediction store at db:5432 is unreachable; try again")

    metrics = ServeMetrics()
    route = events_route(sink=_Refusing(), metrics=metrics, trust_network=True, pairer=Down())  # type: ignore[arg-type]
    headers, body = kserve_event("request", "r-1", REQUEST)
    answered = route(
        Request("POST", "/v1/events", {k.lower(): v for k, v in headers.items()}, body)
    )
    assert (answered.status, json.loads(answered.body)) == (
        503, {"error": "the prediction log could not take the event"},
    )  # fmt: skip
    labels = {"source": "kserve_logger", "result": "error"}
    assert metrics.registry.get_sample_value("sluice_webhook_deliveries_total", labels) == 1


def test_the_route_takes_a_token_or_trusts_the_network_not_both() -> None:
    sink = SqlitePredictionLog(Path("never-opened.sqlite"))
    with pytest.raises(ValueError, match="not both"):
        events_route(sink=sink, metrics=ServeMetrics())
    with pytest.raises(ValueError, match="not both"):
        events_route(sink=sink, metrics=ServeMetrics(), token=TOKEN, trust_network=True)


# -- sluice serve's configuration ------------------------------------------------------------------


def test_without_a_token_or_trust_the_route_is_not_served(tmp_path: Path) -> None:
    assert build_events_route(Settings(state_dir=tmp_path), metrics=ServeMetrics()) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"events_token": ""}, "SLUICE_EVENTS_TOKEN is empty; set a token or unset it"),
        (
            {"events_token": TOKEN, "events_trust_network": True},
            "SLUICE_EVENTS_TOKEN and SLUICE_EVENTS_TRUST_NETWORK are both set; /v1/events takes "
            "a token or trusts the network, not both: unset one",
        ),
    ],
)
def test_a_contradictory_configuration_is_one_line(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        build_events_route(Settings(state_dir=tmp_path, **settings), metrics=ServeMetrics())  # type: ignore[arg-type]
    assert str(error.value) == message


def test_trusting_the_network_is_warned_about_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(state_dir=tmp_path, events_trust_network=True)
    with caplog.at_level(logging.WARNING):
        built = build_events_route(settings, metrics=ServeMetrics())
    assert built is not None
    built[1].close()
    assert any("without a credential" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "local" / "predictions.sqlite").is_file()


# -- sluice serve, as a user runs it ---------------------------------------------------------------


@pytest.mark.slow
def test_sluice_serve_stores_what_kserves_logger_posts(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice serve` with SLUICE_EVENTS_TRUST_NETWORK takes the two binary-mode CloudEvents
    KServe's agent posts for one request (built with the cloudevents SDK, headers and extensions
    as pkg/logger/worker.go sets them), refuses a malformed one with a one-line 400, and on
    SIGTERM has written the paired answer into the prediction log."""
    model = f"events-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    log = tmp_path / "predictions.sqlite"
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("sluice")), "serve", "--port", str(port)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
            "SLUICE_GIT_REMOTE": git_remote.url,
            "SLUICE_STATE_DIR": str(tmp_path / "state"),
            "SLUICE_EVENTS_TRUST_NETWORK": "true",
            "SLUICE_PREDICTION_LOG_PATH": str(log),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/healthz"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "sluice serve did not answer /healthz"
            time.sleep(0.2)
        results = []
        for kind, data in (("response", RESPONSE), ("request", REQUEST)):
            headers, body = kserve_event(kind, "5b1c-ce-id", data, model=model, metadata=REVISION)
            sent = requests.post(f"{url}/v1/events", data=body, headers=headers, timeout=WAIT)
            results.append((sent.status_code, sent.json()))
        assert results == [(200, {"result": "waiting"}), (200, {"result": "paired"})]
        headers, _ = kserve_event("request", "other", REQUEST, model=model)
        bad = requests.post(f"{url}/v1/events", data=b"{", headers=headers, timeout=WAIT)
        assert bad.status_code == 400
        assert "\n" not in bad.json()["error"]
        metrics = requests.get(f"{url}/metrics", timeout=WAIT).text
        assert 'result="paired",source="kserve_logger"} 1.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "accepts events without a credential" in output
    [row] = logged(log)
    assert (row["request_id"], row["model"], row["revision"], row["status"]) == (
        "5b1c-ce-id", model, "iris-predictor-00002", 200,
    )  # fmt: skip
    assert row["inputs_digest"] == inputs_digest(REQUEST)
