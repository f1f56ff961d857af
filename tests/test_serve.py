"""`sluice serve`: the HTTP endpoints, the watch loop, and real MLflow webhook deliveries."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import prometheus_client
import pytest
import requests
from mlflow import MlflowClient
from starlette.testclient import TestClient

from controller.backends.mlflow_registry import MlflowRegistry
from controller.errors import ConfigError, ForgeUnavailable, GateFailed, RegistryUnavailable
from controller.local.services import MlflowService
from controller.serve.server import (
    Handler,
    Request,
    Response,
    ServeMetrics,
    SluiceServer,
    sluice_routes,
)
from controller.serve.watch import WatchedModel, Watcher
from controller.serve.webhooks import sign_mlflow_delivery
from controller.testing import ManualClock

SECRET = "whsec-serve-tests"
WAIT = 30.0  # upper bound for anything asynchronous; never a duration being asserted

http = requests.Session()
http.trust_env = False  # talk to 127.0.0.1 directly, whatever proxy the environment names


# -- fakes and helpers ----------------------------------------------------------------------------


class FakeRegistry:
    """Alias -> version, with failures to raise on the next lookups."""

    def __init__(self, **aliases: int | None) -> None:
        self.aliases = {tuple(key.split("@")): value for key, value in aliases.items()}
        self.failures: list[Exception] = []
        self.lookups = 0

    def lookup(self, model: str, alias: str) -> int | None:
        self.lookups += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.aliases.get((model, alias))


class Changes:
    """Records on_change calls; can fail the next calls; lets a test wait for the n-th call."""

    def __init__(self) -> None:
        self.calls: list[tuple[WatchedModel, int]] = []
        self.failures: list[Exception] = []
        self._changed = threading.Condition()

    def __call__(self, watched: WatchedModel, version: int) -> None:
        with self._changed:
            self.calls.append((watched, version))
            self._changed.notify_all()
        if self.failures:
            raise self.failures.pop(0)

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.calls) >= count, WAIT)


def sample(metrics: ServeMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@contextmanager
def running(watcher: Watcher) -> Iterator[None]:
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run_forever, args=(stop,), daemon=True)
    loop.start()
    try:
        yield
    finally:
        stop.set()
        watcher.wake()
        loop.join(WAIT)
    assert not loop.is_alive()


@dataclass
class Exchange:
    request: Request
    response: Response

    def model(self) -> str | None:
        try:
            return str(json.loads(self.request.body)["data"]["name"])
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class Receiver:
    """A server whose webhook triggers go to the attached watchers, all recorded; ``client``
    talks to its application in-process, ``hook_url`` to the running server."""

    server: SluiceServer
    metrics: ServeMetrics
    watchers: list[Watcher] = field(default_factory=list)
    triggers: list[tuple[str, str, bool]] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def trigger(self, model: str, alias: str) -> bool:
        # Every watcher hears the trigger: no short-circuit after the first that watches it.
        queued = any([watcher.trigger(model, alias) for watcher in self.watchers])  # noqa: C419
        self.triggers.append((model, alias, queued))
        return queued

    def recording(self, handler: Handler) -> Handler:
        def record(request: Request) -> Response:
            response = handler(request)
            with self._arrived:
                self.exchanges.append(Exchange(request, response))
                self._arrived.notify_all()
            return response

        return record

    def delivery_for(self, model: str) -> Exchange:
        """The first delivery naming ``model`` (waiting for it if needed)."""
        with self._arrived:
            assert self._arrived.wait_for(lambda: self._find(model) is not None, WAIT)
            found = self._find(model)
        assert found is not None
        return found

    def _find(self, model: str) -> Exchange | None:
        return next((e for e in self.exchanges if e.model() == model), None)

    def triggers_for(self, model: str) -> list[tuple[str, str, bool]]:
        return [trigger for trigger in self.triggers if trigger[0] == model]

    @property
    def hook_url(self) -> str:
        return f"{self.server.url}/hooks/mlflow"

    @property
    def client(self) -> TestClient:
        return TestClient(self.server.app)


def new_receiver(
    *, max_body_bytes: int = 1 << 20, request_timeout_seconds: float = 10.0
) -> Receiver:
    """A receiver whose server is not started."""
    metrics = ServeMetrics()
    receiver = Receiver(SluiceServer({}), metrics)
    routes = sluice_routes(
        metrics=metrics,
        status=lambda: {"watchers": len(receiver.watchers)},
        mlflow_trigger=receiver.trigger,
        mlflow_webhook_secret=SECRET,
    )
    routes["POST", "/hooks/mlflow"] = receiver.recording(routes["POST", "/hooks/mlflow"])
    receiver.server = SluiceServer(
        routes, max_body_bytes=max_body_bytes, request_timeout_seconds=request_timeout_seconds
    )
    return receiver


@contextmanager
def receiver_server(*, request_timeout_seconds: float = 10.0) -> Iterator[Receiver]:
    """A receiver listening on a free port."""
    receiver = new_receiver(request_timeout_seconds=request_timeout_seconds)
    with receiver.server:
        yield receiver


@pytest.fixture
def receiver() -> Receiver:
    """A receiver of its own for one test, reached through ``client``."""
    return new_receiver()


def client_of(routes: dict[tuple[str, str], Handler]) -> TestClient:
    return TestClient(SluiceServer(routes).app)


def crafted_delivery(
    model: str, alias: str, *, secret: str = SECRET, delivery_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "data": {"name": model, "alias": alias, "version": "1"},
        }
    ).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": sign_mlflow_delivery(secret, delivery_id, timestamp, body),
    }, body


def unique_name() -> str:
    return f"sluice-serve-{uuid.uuid4().hex[:12]}"


# -- the watch loop ------------------------------------------------------------------------------

STAGING = WatchedModel("fraud-detector", "challenger", "staging")


def test_first_poll_hands_on_the_version_already_there() -> None:
    """On startup the current version goes to on_change once, labelled as startup."""
    registry, changes, metrics = (
        FakeRegistry(**{"fraud-detector@challenger": 3}),
        Changes(),
        ServeMetrics(),
    )
    watcher = Watcher(registry.lookup, changes, [STAGING], 60, observer=metrics)
    assert watcher.run_once().changed == ((STAGING, 3),)
    assert watcher.run_once().changed == ()
    assert changes.calls == [(STAGING, 3)]
    assert (
        sample(
            metrics, "sluice_proposals_triggered_total", model="fraud-detector", trigger="startup"
        )
        == 1
    )


def test_polling_notices_an_alias_move_within_one_interval() -> None:
    """Without any webhook, the next poll is due one interval after the last one."""
    registry, changes, clock = (
        FakeRegistry(**{"fraud-detector@challenger": 1}),
        Changes(),
        ManualClock(1000.0),
    )
    watcher = Watcher(registry.lookup, changes, [STAGING], 30, clock=clock)
    watcher.run_due()
    registry.aliases["fraud-detector", "challenger"] = 2
    clock.advance(29.9)
    assert watcher.run_due() is None
    clock.advance(0.1)
    report = watcher.run_due()
    assert report is not None
    assert report.changed == ((STAGING, 2),)
    assert changes.calls == [(STAGING, 1), (STAGING, 2)]


def test_a_missing_alias_is_not_handed_on_until_it_appears() -> None:
    """No alias means nothing to propose; its later appearance is a change."""
    registry, changes = FakeRegistry(), Changes()
    watcher = Watcher(registry.lookup, changes, [STAGING], 60)
    watcher.run_once()
    registry.aliases["fraud-detector", "challenger"] = 4
    watcher.run_once()
    assert changes.calls == [(STAGING, 4)]


def test_a_failed_on_change_is_retried_at_the_next_poll() -> None:
    """A version whose proposal failed is not remembered, so the next poll tries again."""
    registry, changes = FakeRegistry(**{"fraud-detector@challenger": 5}), Changes()
    changes.failures.append(ForgeUnavailable("GitHub answered 502"))
    watcher = Watcher(registry.lookup, changes, [STAGING], 60)
    assert not watcher.run_once().ok
    assert watcher.run_once().ok
    watcher.run_once()
    assert changes.calls == [(STAGING, 5), (STAGING, 5)]


def test_a_version_a_gate_refused_is_tried_again_ever_more_rarely() -> None:
    """A refused version (quarantined, provenance failing) is not re-verified at every poll:
    it waits one interval, then two, four... up to sixteen; a new version goes on at once."""
    registry, changes, clock = (
        FakeRegistry(**{"fraud-detector@challenger": 5}),
        Changes(),
        ManualClock(1000.0),
    )
    changes.failures.extend(GateFailed("v5 provenance: signature check failed") for _ in range(9))
    watcher = Watcher(registry.lookup, changes, [STAGING], 60, clock=clock)
    tried_at = []
    for _ in range(60 * 60):  # an hour of polls, one a minute
        before = len(changes.calls)
        report = watcher.run_due()
        if len(changes.calls) > before:
            tried_at.append(round(clock() - 1000.0))
            assert report is not None
            assert "tried again in" in report.errors[0], report.errors
        clock.advance(1.0)
    assert tried_at == [0, 60, 180, 420, 900, 1860, 2820]
    registry.aliases["fraud-detector", "challenger"] = 6
    clock.advance(60.0)
    watcher.run_due()
    assert changes.calls[-1] == (STAGING, 6)


def test_a_lookup_error_is_one_redacted_log_line_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing lookup logs one line without credentials, counts, and leaves the loop usable."""
    registry, changes, metrics = (
        FakeRegistry(**{"fraud-detector@challenger": 2}),
        Changes(),
        ServeMetrics(),
    )
    registry.failures.append(RuntimeError("GET https://bob:hunter2-token@mlflow.example\nfailed"))
    watcher = Watcher(registry.lookup, changes, [STAGING], 60, observer=metrics)
    with caplog.at_level(logging.WARNING, logger="sluice.watch"):
        report = watcher.run_once()
    (record,) = caplog.records
    assert "hunter2-token" not in record.getMessage()
    assert "\n" not in record.getMessage()
    assert "RuntimeError" in record.getMessage()
    assert report.errors == (record.getMessage(),)
    assert sample(metrics, "sluice_watch_errors_total", model="fraud-detector", stage="lookup") == 1
    assert sample(metrics, "sluice_poll_runs_total", result="error") == 1
    watcher.run_once()
    assert changes.calls == [(STAGING, 2)]
    assert sample(metrics, "sluice_poll_runs_total", result="ok") == 1


def test_triggers_are_merged_and_unwatched_ones_refused() -> None:
    """Two triggers for one alias make one check; an unwatched alias queues nothing."""
    registry, changes = FakeRegistry(**{"fraud-detector@challenger": 1}), Changes()
    watcher = Watcher(registry.lookup, changes, [STAGING], 60)
    assert watcher.trigger("fraud-detector", "challenger")
    assert watcher.trigger("fraud-detector", "challenger")
    assert not watcher.trigger("fraud-detector", "champion")
    assert watcher.pending() == {("fraud-detector", "challenger")}
    watcher.run_pending()
    assert registry.lookups == 1
    assert watcher.pending() == frozenset()


def test_one_lookup_serves_every_environment_watching_an_alias() -> None:
    """Two environments on the same alias cost one registry call and get one call each."""
    production = WatchedModel("fraud-detector", "challenger", "production")
    registry, changes = FakeRegistry(**{"fraud-detector@challenger": 6}), Changes()
    Watcher(registry.lookup, changes, [STAGING, production], 60).run_once()
    assert registry.lookups == 1
    assert changes.calls == [(STAGING, 6), (production, 6)]


def test_a_trigger_wakes_the_loop_long_before_the_interval() -> None:
    """With an hour between polls, a trigger still gets the new version handed on."""
    registry, changes, metrics = (
        FakeRegistry(**{"fraud-detector@challenger": 1}),
        Changes(),
        ServeMetrics(),
    )
    watcher = Watcher(registry.lookup, changes, [STAGING], 3600, observer=metrics)
    with running(watcher):
        assert changes.wait_for(1)
        registry.aliases["fraud-detector", "challenger"] = 2
        watcher.trigger("fraud-detector", "challenger")
        assert changes.wait_for(2)
    assert changes.calls == [(STAGING, 1), (STAGING, 2)]
    assert (
        sample(
            metrics, "sluice_proposals_triggered_total", model="fraud-detector", trigger="webhook"
        )
        == 1
    )


def test_the_loop_survives_failures_of_on_change() -> None:
    """on_change raising does not end run_forever; the next trigger retries it."""
    registry, changes = FakeRegistry(**{"fraud-detector@challenger": 1}), Changes()
    changes.failures.extend([ValueError("bug in a step"), RegistryUnavailable("down")])
    watcher = Watcher(registry.lookup, changes, [STAGING], 3600)
    with running(watcher):
        assert changes.wait_for(1)
        watcher.trigger("fraud-detector", "challenger")
        assert changes.wait_for(2)
        watcher.trigger("fraud-detector", "challenger")
        assert changes.wait_for(3)
        assert watcher.status()["running"] is True
    assert watcher.status()["watched"] == [
        {
            "model": "fraud-detector",
            "alias": "challenger",
            "environment": "staging",
            "version": 1,
            "looked_up": True,
        }
    ]


# -- the HTTP endpoints --------------------------------------------------------------------------


def test_healthz_answers_ok_with_the_last_poll() -> None:
    """GET /healthz is 200 with the status of the last poll and each alias's version."""
    registry, metrics = FakeRegistry(**{"fraud-detector@challenger": 3}), ServeMetrics()
    watcher = Watcher(registry.lookup, Changes(), [STAGING], 60, observer=metrics)
    watcher.run_once()
    routes = sluice_routes(
        metrics=metrics,
        status=watcher.status,
        mlflow_trigger=watcher.trigger,
        mlflow_webhook_secret=None,
    )
    response = client_of(routes).get("/healthz")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    health = response.json()
    assert health["status"] == "ok"
    assert health["last_poll"]["result"] == "ok"
    assert health["watched"][0]["version"] == 3


def test_metrics_come_from_each_servers_own_registry(receiver: Receiver) -> None:
    """GET /metrics is Prometheus text of this server's counters, not the global registry's."""
    receiver.metrics.poll_finished("ok")
    other_text = new_receiver().client.get("/metrics").text
    response = receiver.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert 'sluice_poll_runs_total{result="ok"} 1.0' in response.text
    assert 'sluice_webhook_deliveries_total{result="queued",source="mlflow"} 0.0' in response.text
    assert 'sluice_poll_runs_total{result="ok"} 0.0' in other_text
    assert b"sluice_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_the_server_answers_http_on_a_free_port_and_stop_frees_it() -> None:
    """Started on port 0, the server binds 127.0.0.1 only, reports the port it got, answers
    GET and a signed POST over HTTP with one request per connection, and after stop (twice)
    the port refuses connections."""
    receiver = new_receiver()
    server = receiver.server.start()
    port = server.port
    assert port != 0
    assert server.url == f"http://127.0.0.1:{port}"
    health = http.get(f"{server.url}/healthz", timeout=WAIT)
    headers, body = crafted_delivery("fraud-detector", "challenger")
    hook = http.post(receiver.hook_url, data=body, headers=headers, timeout=WAIT)
    server.stop()
    server.stop()
    assert (health.status_code, health.json()) == (200, {"status": "ok", "watchers": 0})
    assert health.headers["Connection"] == "close"
    assert (hook.status_code, hook.json()["result"]) == (200, "ignored")
    assert receiver.triggers == [("fraud-detector", "challenger", False)]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def test_a_port_in_use_is_a_config_error() -> None:
    """Binding a taken port fails with one line naming the address."""
    with SluiceServer({}) as first, pytest.raises(ConfigError, match=f"127.0.0.1:{first.port}"):
        SluiceServer({}, port=first.port).start()


def test_unknown_paths_are_404_and_wrong_methods_405(receiver: Receiver) -> None:
    """Only the routes in the table answer: no redirect to a path with or without a slash."""
    for path in ("/nope", "/healthz/"):
        missing = receiver.client.get(path, follow_redirects=False)
        assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    wrong = receiver.client.get("/hooks/mlflow")
    assert (wrong.status_code, wrong.headers["Allow"], wrong.content) == (405, "POST", b"")
    assert receiver.client.put("/healthz").headers["Allow"] == "GET, HEAD"


def test_a_route_that_raises_is_500_in_one_redacted_line(caplog: pytest.LogCaptureFixture) -> None:
    """The route's exception is logged without credentials; the client gets a generic 500."""

    def broken(request: Request) -> Response:
        raise RuntimeError("GET https://bob:hunter2-token@mlflow.example\nfailed")

    with caplog.at_level(logging.ERROR, logger="sluice.server"):
        response = client_of({("GET", "/broken"): broken}).get("/broken")
    assert (response.status_code, response.json()) == (500, {"error": "internal error"})
    (record,) = caplog.records
    assert "hunter2-token" not in record.getMessage()
    assert "\n" not in record.getMessage()


def test_bodies_need_a_length_under_the_limit() -> None:
    """A chunked body is 411 and one over max_body_bytes is 413, before any route runs."""
    small = new_receiver(max_body_bytes=64)
    chunked = small.client.post("/hooks/mlflow", content=iter([b"{}"]))
    large = small.client.post("/hooks/mlflow", content=b"x" * 65)
    assert (chunked.status_code, chunked.json()) == (411, {"error": "Content-Length required"})
    assert (large.status_code, large.json()) == (413, {"error": "body too large"})
    assert small.exchanges == []


@pytest.mark.parametrize(
    "sent",
    [
        b"POST /hooks/mlflow HTTP/1.1\r\nHost: sluice\r\nContent-Le",
        b"POST /hooks/mlflow HTTP/1.1\r\nHost: sluice\r\nContent-Length: 64\r\n\r\n{}",
    ],
    ids=["headers", "body"],
)
def test_a_client_that_stalls_is_dropped(sent: bytes) -> None:
    """A client that stops halfway through its headers or its body is disconnected after
    request_timeout_seconds, and the route never runs."""
    with receiver_server(request_timeout_seconds=0.2) as receiver:
        with socket.create_connection(("127.0.0.1", receiver.server.port), timeout=WAIT) as conn:
            conn.sendall(sent)
            assert conn.recv(1024) == b""  # closed by the server, long before WAIT
        answered = http.get(f"{receiver.server.url}/healthz", timeout=WAIT)
    assert answered.status_code == 200
    assert receiver.exchanges == []


def test_without_a_secret_there_is_no_webhook_route() -> None:
    """Unsigned deliveries are never accepted: no secret, no route."""
    routes = sluice_routes(
        metrics=ServeMetrics(),
        status=dict,
        mlflow_trigger=lambda m, a: True,
        mlflow_webhook_secret=None,
    )
    assert client_of(routes).post("/hooks/mlflow", content=b"{}").status_code == 404


def test_wrong_secret_is_401_and_triggers_nothing(receiver: Receiver) -> None:
    """A delivery signed with another secret is refused with a short reason, and queues nothing."""
    receiver.watchers.append(Watcher(FakeRegistry().lookup, Changes(), [STAGING], 60))
    headers, body = crafted_delivery("fraud-detector", "challenger", secret="not-the-secret")
    response = receiver.client.post("/hooks/mlflow", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "signature does not match"}
    assert SECRET not in response.text
    assert receiver.triggers == []
    assert receiver.watchers[0].pending() == frozenset()
    assert (
        sample(
            receiver.metrics,
            "sluice_webhook_deliveries_total",
            source="mlflow",
            result="unauthorized",
        )
        == 1
    )


def test_a_forged_delivery_does_not_use_up_a_delivery_id(receiver: Receiver) -> None:
    """Only verified deliveries reach the replay guard, so a forgery cannot block a real one."""
    forged_headers, body = crafted_delivery("fraud-detector", "challenger", secret="forger")
    delivery_id = forged_headers["X-MLflow-Delivery-Id"]
    headers, body = crafted_delivery("fraud-detector", "challenger", delivery_id=delivery_id)
    forged = receiver.client.post("/hooks/mlflow", content=body, headers=forged_headers)
    real = receiver.client.post("/hooks/mlflow", content=body, headers=headers)
    assert (forged.status_code, real.status_code) == (401, 200)


def test_a_failed_trigger_is_500_and_the_redelivery_is_accepted() -> None:
    """When queueing fails, MLflow's retry with the same delivery id is not called a replay."""
    calls: list[str] = []

    def flaky(model: str, alias: str) -> bool:
        calls.append(model)
        if len(calls) == 1:
            raise RuntimeError("queue full")
        return True

    routes = sluice_routes(
        metrics=ServeMetrics(), status=dict, mlflow_trigger=flaky, mlflow_webhook_secret=SECRET
    )
    headers, body = crafted_delivery("fraud-detector", "challenger")
    client = client_of(routes)
    first = client.post("/hooks/mlflow", content=body, headers=headers)
    again = client.post("/hooks/mlflow", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (500, 200)
    assert again.json()["result"] == "queued"


# -- against a real MLflow server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def module_receiver() -> Iterator[Receiver]:
    """One receiver for the module: MLflow's webhook points at its port."""
    with receiver_server() as started:
        yield started


@pytest.fixture(scope="module")
def mlflow_client(
    mlflow_server: MlflowService, module_receiver: Receiver
) -> Iterator[MlflowClient]:
    """A client of the session's MLflow, with a webhook on alias events pointing at the receiver.

    MLflow's server caches the webhooks of each event for MLFLOW_WEBHOOK_CACHE_TTL (60 s by
    default), so a list cached before this webhook existed hides it until it expires. The
    fixture moves a warm-up alias until a delivery arrives, so that the tests start from a
    webhook MLflow is known to deliver to.
    """
    client = MlflowClient(
        tracking_uri=mlflow_server.tracking_uri, registry_uri=mlflow_server.tracking_uri
    )
    webhook = client.create_webhook(
        name=f"sluice-test-{uuid.uuid4().hex[:8]}",
        url=module_receiver.hook_url,
        events=["model_version_alias.created"],
        secret=SECRET,
    )
    try:
        warm_up = new_model(client)
        with module_receiver._arrived:
            for _ in range(60):
                client.set_registered_model_alias(warm_up, "warm-up", "1")
                if module_receiver._arrived.wait_for(
                    lambda: module_receiver._find(warm_up) is not None, 2
                ):
                    break
        module_receiver.delivery_for(warm_up)
        yield client
    finally:
        client.delete_webhook(webhook.webhook_id)


def new_model(client: MlflowClient, versions: int = 1) -> str:
    """A registered model with versions; an s3:// source is accepted without being read."""
    name = unique_name()
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source="s3://sluice-tests/model", run_id=None)
    return name


def registry_lookup(mlflow_server: MlflowService) -> Callable[[str, str], int | None]:
    registry = MlflowRegistry(mlflow_server.tracking_uri)

    def lookup(model: str, alias: str) -> int | None:
        found = registry.version_by_alias(model, alias)
        return None if found is None else found.version

    return lookup


@pytest.mark.slow
def test_an_alias_set_in_mlflow_hands_the_version_on_once(
    mlflow_server: MlflowService, mlflow_client: MlflowClient, module_receiver: Receiver
) -> None:
    """MLflow's signed delivery wakes the loop, which hands the new version on exactly once."""
    name = new_model(mlflow_client)
    watched = WatchedModel(name, "champion", "staging")
    changes = Changes()
    watcher = Watcher(
        registry_lookup(mlflow_server), changes, [watched], 3600, observer=module_receiver.metrics
    )
    watcher.run_once()  # no alias yet: nothing to hand on, and the next poll is an hour away
    module_receiver.watchers.append(watcher)
    try:
        with running(watcher):
            mlflow_client.set_registered_model_alias(name, "champion", "1")
            assert changes.wait_for(1)
    finally:
        module_receiver.watchers.remove(watcher)
    assert changes.calls == [(watched, 1)]
    assert module_receiver.triggers_for(name) == [(name, "champion", True)]
    assert module_receiver.delivery_for(name).response.status == 200
    assert (
        sample(
            module_receiver.metrics,
            "sluice_proposals_triggered_total",
            model=name,
            trigger="webhook",
        )
        == 1
    )


@pytest.mark.slow
def test_a_replayed_mlflow_delivery_is_409_and_triggers_nothing(
    mlflow_client: MlflowClient, module_receiver: Receiver
) -> None:
    """Re-sending a real delivery byte for byte is refused as a replay."""
    name = new_model(mlflow_client)
    watcher = Watcher(
        FakeRegistry().lookup, Changes(), [WatchedModel(name, "champion", "staging")], 3600
    )
    module_receiver.watchers.append(watcher)
    try:
        mlflow_client.set_registered_model_alias(name, "champion", "1")
        original = module_receiver.delivery_for(name)
        assert original.response.status == 200
        signed = {k: v for k, v in original.request.headers.items() if k.startswith("x-mlflow-")}
        replay = http.post(
            module_receiver.hook_url, data=original.request.body, headers=signed, timeout=WAIT
        )
    finally:
        module_receiver.watchers.remove(watcher)
    assert replay.status_code == 409
    assert replay.json() == {"error": "delivery already received"}
    assert module_receiver.triggers_for(name) == [(name, "champion", True)]


@pytest.mark.slow
def test_a_delivery_for_an_unwatched_model_triggers_nothing(
    mlflow_client: MlflowClient, module_receiver: Receiver
) -> None:
    """A verified delivery about a model nobody watches is acknowledged and ignored."""
    name = new_model(mlflow_client)
    watcher = Watcher(FakeRegistry().lookup, Changes(), [STAGING], 3600)
    module_receiver.watchers.append(watcher)
    try:
        mlflow_client.set_registered_model_alias(name, "champion", "1")
        delivery = module_receiver.delivery_for(name)
    finally:
        module_receiver.watchers.remove(watcher)
    assert delivery.response.status == 200
    assert json.loads(delivery.response.body)["result"] == "ignored"
    assert module_receiver.triggers_for(name) == [(name, "champion", False)]
    assert watcher.pending() == frozenset()


@pytest.mark.slow
def test_polling_mlflow_alone_notices_an_alias_move(mlflow_server: MlflowService) -> None:
    """With no webhook involved, the next run_once sees the alias on its new version."""
    client = MlflowClient(
        tracking_uri=mlflow_server.tracking_uri, registry_uri=mlflow_server.tracking_uri
    )
    name = new_model(client, versions=2)
    client.set_registered_model_alias(name, "challenger", "1")
    watched, changes = WatchedModel(name, "challenger", "staging"), Changes()
    watcher = Watcher(registry_lookup(mlflow_server), changes, [watched], 60)
    watcher.run_once()
    client.set_registered_model_alias(name, "challenger", "2")
    watcher.run_once()
    assert changes.calls == [(watched, 1), (watched, 2)]
