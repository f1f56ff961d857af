"""`/v1/events`'s halves meeting in the PostgreSQL store (the session's real server), so that
any `sluice serve` replica may take either half of a request: paired once whichever replica
takes which half and however close together, stored as the in-memory pairing stores them,
expired by the retention pass after the same time to live; and two real `sluice serve`
processes on one store, each taking one half of every request."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote
from support.kserve_logger import kserve_event
from support.postgres_query import query

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.prediction_log_writer import answer_rows
from controller.commands.events import build_events_route
from controller.local.postgres import PostgresService
from controller.local.processes import free_port, http_ok
from controller.local.services import MlflowService
from controller.serve.event_pairing import (
    EventPairer,
    InferenceEvent,
    Pairing,
    prediction_of,
)
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes
from controller.settings import Settings
from controller.testing import MemoryEventHalves, MemoryPredictionStore

pytestmark = pytest.mark.postgres

REQUEST = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
RESPONSE = b'{"predictions": [1]}'
REVISION = {"Knative-Serving-Revision": ("iris-predictor-00002",)}
NOW = 1_796_551_200.0
_ANSWER = (
    "request_id, time, model, version, revision, role, inputs_digest, output, latency_ms, status"
)


def half(kind: str, request_id: str = "r-1", **fields: Any) -> InferenceEvent:
    values: dict[str, Any] = {
        "kind": kind, "request_id": request_id, "model": "iris", "namespace": "models",
        "component": "predictor", "metadata": REVISION,
        "data": REQUEST if kind == "request" else RESPONSE,
        "recorded_at": NOW if kind == "request" else NOW + 0.012,
    }  # fmt: skip
    values.update(fields)
    return InferenceEvent(**values)


@pytest.fixture
def url(postgres_server: PostgresService) -> str:
    return postgres_server.create_database(f"halves_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def replicas(url: str) -> Iterator[tuple[PostgresPredictionLog, PostgresPredictionLog]]:
    """Two replicas' stores on one database, pairing events."""
    first, second = (PostgresPredictionLog(url, retention=None) for _ in range(2))
    first.pair_events(), second.pair_events()
    yield first, second
    first.close(), second.close()


def answers(url: str) -> list[tuple[Any, ...]]:
    return query(url, f"SELECT {_ANSWER} FROM sluice_predictions ORDER BY seq")  # noqa: S608


def waiting(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM sluice_event_halves")[0][0])


# -- pairing in the store --------------------------------------------------------------------------


def test_either_replica_pairs_what_the_other_received_as_memory_would(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    """The response reaches one replica, its request the other: paired, and the stored answer is
    the in-memory pairing's, column for column (digest, output, time, latency, revision)."""
    first, second = replicas
    assert first.take_half(half("response"), now=NOW + 1) == Pairing(None)
    taken = second.take_half(half("request"), now=NOW + 2)
    assert taken.recorded
    assert taken.pair == (half("request"), half("response"))
    assert waiting(url) == 0
    memory = EventPairer()
    memory.add(half("response"), now=NOW + 1)
    pair = memory.add(half("request"), now=NOW + 2).pair
    assert pair is not None
    [expected] = answer_rows([prediction_of(*pair, received_at=NOW + 2)], 4096)
    [stored] = answers(url)
    assert stored == pytest.approx(expected)


def test_a_duplicate_delivery_of_a_half_waits_once_and_pairs_once(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    first, second = replicas
    first.take_half(half("request"), now=NOW)
    second.take_half(half("request"), now=NOW + 1)
    assert waiting(url) == 1
    assert first.take_half(half("response"), now=NOW + 2).pair is not None
    assert (len(answers(url)), waiting(url)) == (1, 0)


def test_halves_of_other_revisions_or_models_do_not_pair(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    """A mirrored request reaches two revisions with one Ce-Id: each revision's halves pair."""
    first, second = replicas
    first.take_half(half("request"), now=NOW)
    other = {"Knative-Serving-Revision": ("iris-predictor-00003",)}
    assert second.take_half(half("response", metadata=other), now=NOW).pair is None
    assert second.take_half(half("response", model="other"), now=NOW).pair is None
    assert (answers(url), waiting(url)) == ([], 3)


def test_a_synthetic_pair_is_paired_but_not_stored(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    first, second = replicas
    marked = {**REVISION, "X-Sluice-Synthetic": ("load-test",)}
    first.take_half(half("request", metadata=marked), now=NOW)
    assert second.take_half(half("response", metadata=marked), now=NOW).pair is not None
    assert (answers(url), waiting(url)) == ([], 0)


def test_a_half_past_its_ttl_no_longer_pairs_and_is_expired(url: str) -> None:
    """As in memory: a half that waited 60 s is dropped (reported expired), and the half that
    came too late waits in its place."""
    store = PostgresPredictionLog(url, retention=None)
    store.pair_events(ttl_seconds=60)
    store.take_half(half("request"), now=NOW)
    late = store.take_half(half("response"), now=NOW + 60)
    assert late.pair is None
    assert [(d.event.kind, d.reason) for d in late.dropped] == [("request", "expired")]
    assert (answers(url), waiting(url)) == ([], 1)
    store.close()


def test_the_retention_pass_deletes_expired_halves_and_reports_them(url: str) -> None:
    expired: list[int] = []
    store = PostgresPredictionLog(url, retention=None)
    store.pair_events(ttl_seconds=60, on_expired=expired.append)
    for index in range(3):
        store.take_half(half("request", f"r-{index}"), now=NOW + index * 30)
    assert store.delete_expired(now=NOW + 61) == 1
    assert (expired, waiting(url)) == ([1], 2)
    store.close()


def test_a_started_store_runs_the_expiry_by_itself(url: str) -> None:
    """`sluice serve` starts the store: its retention pass, with retention off, still expires
    the halves (every time to live at the latest)."""
    expired: list[int] = []
    store = PostgresPredictionLog(url, retention=None, retention_interval=0.05)
    store.pair_events(ttl_seconds=60, on_expired=expired.append)
    store.take_half(half("request"), now=time.time() - 120)
    with store:
        deadline = time.monotonic() + 30
        while not expired and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (expired, waiting(url)) == ([1], 0)


#: (replica, kind, request id, seconds after NOW, synthetic): duplicates, a reused id, a half
#: past the time to live, a synthetic pair, either order.
SCRIPT = [
    (0, "request", "a", 0, False), (1, "request", "a", 1, False), (1, "response", "a", 2, False),
    (0, "response", "b", 3, False), (1, "request", "b", 4, False), (0, "response", "b", 5, False),
    (0, "request", "c", 0, False), (1, "response", "c", 61, False), (0, "request", "c", 62, False),
    (1, "request", "d", 63, True), (0, "response", "d", 64, True),
]  # fmt: skip


def _play(add: list[Any]) -> list[tuple[bool, list[str]]]:
    results = []
    for replica, kind, request_id, after, synthetic in SCRIPT:
        metadata = {**REVISION, "X-Sluice-Synthetic": ("smoke",)} if synthetic else REVISION
        taken = add[replica](half(kind, request_id, metadata=metadata), now=NOW + after)
        assert taken.recorded == (taken.pair is not None)
        results.append((taken.pair is not None, [d.reason for d in taken.dropped]))
    return results


def test_the_fake_pairs_as_the_store_does(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    """MemoryEventHalves, the unit tests' port, against the store on one script: the same
    pairings, drops and answers."""
    memory = MemoryPredictionStore()
    fake = MemoryEventHalves(memory, ttl_seconds=60)
    from_fake = _play([fake.add, fake.add])
    from_store = _play([replicas[0].take_half, replicas[1].take_half])
    assert from_store == from_fake
    assert from_fake[7] == (False, ["expired"])
    stored = sorted(row[0] for row in answers(url))
    assert stored == ["a", "b", "c"]
    assert memory.count_logged(stored) == 3
    assert memory.row_count() == 3
    assert (waiting(url), len(fake)) == (1, 1)


# -- two replicas at the same instant --------------------------------------------------------------


def test_the_second_half_waits_for_the_first_to_commit_then_pairs(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    """The race made deterministic: replica A has inserted the request half but not committed;
    replica B takes the response half meanwhile. Under READ COMMITTED alone B would not see A's
    row and both halves would wait forever; B waits on the event's lock until A commits, then
    sees the half and pairs it."""
    from controller.backends.postgres_event_halves import take_half

    _, second = replicas
    second.row_count()  # the schema exists
    held = psycopg2.connect(url)
    cursor = held.cursor()
    first = take_half(
        cursor, half("request"), now=NOW, ttl_seconds=60, max_output_bytes=4096, max_rows=None
    )
    assert first.pair is None  # in A's open transaction
    result: list[Pairing] = []
    thread = threading.Thread(
        target=lambda: result.append(second.take_half(half("response"), now=NOW + 1))
    )
    thread.start()
    deadline = time.monotonic() + 30
    blocked = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while query(url, blocked) != [(1,)]:
        assert time.monotonic() < deadline, "the second half did not wait for the first"
        time.sleep(0.01)
    assert not result
    held.commit()
    held.close()
    thread.join(30)
    [taken] = result
    assert taken.recorded
    assert taken.pair is not None
    assert (len(answers(url)), waiting(url)) == (1, 0)


def test_many_requests_halves_taken_at_once_by_two_replicas_pair_exactly_once(
    replicas: tuple[PostgresPredictionLog, PostgresPredictionLog], url: str
) -> None:
    """Two threads, each a replica with its own connections, take the two halves of each of 200
    requests, released together for every request: each request is paired exactly once."""
    ids = [f"r-{i:03}" for i in range(200)]
    barrier = threading.Barrier(2)
    paired: list[list[str]] = [[], []]
    failures: list[BaseException] = []

    def replica(index: int, kind: str) -> None:
        try:
            for request_id in ids:
                barrier.wait(30)
                taken = replicas[index].take_half(half(kind, request_id), now=NOW)
                if taken.pair is not None:
                    paired[index].append(request_id)
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=replica, args=(0, "request")),
        threading.Thread(target=replica, args=(1, "response")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert sorted(paired[0] + paired[1]) == ids
    assert sorted(row[0] for row in answers(url)) == ids
    assert waiting(url) == 0


# -- the schema ------------------------------------------------------------------------------------


def test_a_store_of_schema_1_is_migrated_keeping_its_answers(url: str) -> None:
    """A store written before the halves' table: opened, it gets the table (once, under the
    schema lock) and keeps what it held."""
    store = PostgresPredictionLog(url, retention=None)
    store.pair_events()
    store.take_half(half("request"), now=NOW)
    store.take_half(half("response"), now=NOW)
    query(url, "DROP TABLE sluice_event_halves; UPDATE sluice_schema SET version = 1")
    migrated = PostgresPredictionLog(url, retention=None)
    assert migrated.row_count() == 1
    assert query(url, "SELECT version FROM sluice_schema") == [(2,)]
    migrated.pair_events()
    assert migrated.take_half(half("request", "r-2"), now=NOW).pair is None
    assert waiting(url) == 1
    store.close()


# -- sluice serve ----------------------------------------------------------------------------------


def test_the_route_on_two_servers_pairs_halves_posted_to_either(url: str, tmp_path: Path) -> None:
    """`/v1/events` built as `sluice serve` builds it with SLUICE_PREDICTION_STORE_URL, on two
    servers: the request posted to one and the response to the other are one answer, counted
    paired; a lonely half is deleted by the retention pass and counted expired; no SQLite log
    is made."""
    settings = Settings(state_dir=tmp_path / "state", events_trust_network=True,
                        prediction_store_url=url)  # fmt: skip
    metrics = [ServeMetrics(), ServeMetrics()]
    built = [build_events_route(settings, metrics=m) for m in metrics]
    servers = []
    for route, served_metrics in zip(built, metrics, strict=True):
        assert route is not None
        routes = sluice_routes(
            metrics=served_metrics, status=dict, mlflow_trigger=lambda m, a: False,
            mlflow_webhook_secret=None, events=route[0],
        )  # fmt: skip
        servers.append(SluiceServer(routes))
    metadata = {"Knative-Serving-Revision": ["iris-predictor-00002"]}
    sends = [(0, "request", "r-1", REQUEST), (1, "response", "r-1", RESPONSE),
             (0, "request", "lonely", REQUEST)]  # fmt: skip
    results = []
    with servers[0] as first, servers[1] as second:
        for index, kind, request_id, data in sends:
            headers, body = kserve_event(kind, request_id, data, metadata=metadata)
            target = (first, second)[index].url
            sent = requests.post(f"{target}/v1/events", data=body, headers=headers, timeout=10)
            results.append(sent.json()["result"])
    stores = [route[1] for route in built if route is not None]
    assert stores[0].delete_expired(now=time.time() + 61) == 1
    for store in stores:
        store.close()
    assert results == ["waiting", "paired", "waiting"]

    def counted(index: int, result: str) -> float | None:
        labels = {"source": "kserve_logger", "result": result}
        return metrics[index].registry.get_sample_value("sluice_webhook_deliveries_total", labels)

    assert (counted(1, "paired"), counted(0, "expired")) == (1.0, 1.0)
    [row] = answers(url)
    assert (row[0], row[2], row[4]) == ("r-1", "iris", "iris-predictor-00002")
    assert (waiting(url), (tmp_path / "state").exists()) == (0, False)


@pytest.mark.slow
def test_two_sluice_serve_replicas_pair_halves_split_between_them(
    url: str, mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """Two `sluice serve` processes on one PostgreSQL store, as two replicas behind a Service:
    300 requests, each request half posted to one replica and its response half to the other
    (which one alternating, the response first for every third), interleaved: every request
    is stored exactly once, and no half is left waiting."""
    model = f"halves-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("sluice")), "serve", "--port", str(port)],
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": mlflow_server.tracking_uri,
                "SLUICE_GIT_REMOTE": git_remote.url,
                "SLUICE_STATE_DIR": str(tmp_path / f"state-{index}"),
                "SLUICE_EVENTS_TRUST_NETWORK": "true",
                "SLUICE_PREDICTION_STORE_URL": url,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    ids = [f"ce-{i:03}" for i in range(300)]
    metadata = {"Knative-Serving-Revision": ["iris-predictor-00002"]}
    results: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not all(http_ok(f"{u}/healthz") for u in urls):
            for process in processes:
                assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "sluice serve did not answer /healthz"
            time.sleep(0.2)
        per_request = []  # (first half, second half), each to another replica
        for index, request_id in enumerate(ids):
            halves = [("request", REQUEST), ("response", RESPONSE)]
            if index % 3 == 0:
                halves.reverse()
            per_request.append(
                [(urls[(index + turn) % 2], kind, request_id, data)
                 for turn, (kind, data) in enumerate(halves)]
            )  # fmt: skip
        # Interleaved: request i's first half, then request i-1's second half.
        order = [per_request[0][0]]
        for previous, current in itertools.pairwise(per_request):
            order += [current[0], previous[1]]
        order.append(per_request[-1][1])
        with requests.Session() as session:
            for target, kind, request_id, data in order:
                headers, body = kserve_event(kind, request_id, data, model=model,
                                             metadata=metadata)  # fmt: skip
                sent = session.post(f"{target}/v1/events", data=body, headers=headers, timeout=10)
                assert sent.status_code == 200, sent.text
                results.append(sent.json()["result"])
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert (results.count("paired"), results.count("waiting")) == (300, 300)
    stored = query(url, "SELECT request_id, count(*) FROM sluice_predictions GROUP BY request_id")
    assert sorted(stored) == [(request_id, 1) for request_id in ids]
    assert waiting(url) == 0
