"""What ``POST /v1/events`` costs ``sluice serve``: KServe's inference-logger events, parsed by
the ``cloudevents`` SDK, paired and written to the SQLite prediction log, against ``GET
/healthz`` on the same server in the same minute.

``python benchmarks/serve_events.py [--pairs N] [--store-url postgresql://…]``

With ``--store-url`` the halves are paired in that PostgreSQL store (one transaction a half,
the answer recorded by the transaction that pairs it), as every replica of ``sluice serve``
pairs them when ``SLUICE_PREDICTION_STORE_URL`` is set; without it, in memory, into a SQLite
log in a temporary directory. Give the store a database of its own: the benchmark counts its
answers.

One client sends the two binary-mode CloudEvents of each of ``--pairs`` requests (headers and
extensions as KServe's agent sets them, the revision header copied into ``metadata``) one after
the other, a new connection each, as KServe's workers do; then ``--pairs`` times two ``GET
/healthz``. Prints events/s, the latency of one event (p50, p99) and of one ``/healthz``, and
how many answers the log holds at the end (all of them, or the route lost some).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from controller.backends.postgres_prediction_log import PostgresPredictionLog
from controller.backends.prediction_stores import PredictionLog
from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.serve.event_pairing import EventHalves
from controller.serve.events import events_route
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes

REQUEST = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
RESPONSE = b'{"predictions": [1, 1]}'


def _event(kind: str, request_id: str, data: bytes) -> tuple[dict[str, str], bytes]:
    attributes = {
        "id": request_id, "type": f"org.kubeflow.serving.inference.{kind}",
        "source": "http://localhost:9081/", "datacontenttype": "application/json",
        "inferenceservicename": "iris", "namespace": "models", "component": "predictor",
        "endpoint": "", "metadata": '{"Knative-Serving-Revision":["iris-predictor-00002"]}',
    }  # fmt: skip
    headers, body = to_binary(CloudEvent(attributes, data))
    return {name: str(value) for name, value in headers.items()}, body


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


@contextlib.contextmanager
def _store(url: str | None) -> Iterator[tuple[PredictionLog, EventHalves | None]]:
    """The started log and what pairs the halves (None: the route's in-memory pairer)."""
    if url is not None:
        store = PostgresPredictionLog(url, retention=None)
        halves = store.pair_events()
        with store:
            yield store, halves
        return
    with (
        tempfile.TemporaryDirectory() as directory,
        SqlitePredictionLog(Path(directory) / "predictions.sqlite") as log,
    ):
        yield log, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--store-url", help="pair in this PostgreSQL store (an empty database)")
    arguments = parser.parse_args()
    pairs = arguments.pairs
    events = [
        _event(kind, f"request-{i}", data)
        for i in range(pairs)
        for kind, data in (("request", REQUEST), ("response", RESPONSE))
    ]
    metrics = ServeMetrics()
    with _store(arguments.store_url) as (log, halves):
        route = events_route(sink=log, metrics=metrics, trust_network=True, pairer=halves)
        routes = sluice_routes(
            metrics=metrics, status=dict, mlflow_trigger=lambda model, alias: False,
            mlflow_webhook_secret=None, events=route,
        )  # fmt: skip
        with SluiceServer(routes) as server:
            latencies = []
            started = time.perf_counter()
            for headers, body in events:
                sent = time.perf_counter()
                answer = requests.post(
                    f"{server.url}/v1/events", data=body, headers=headers, timeout=10
                )
                latencies.append((time.perf_counter() - sent) * 1000)
                answer.raise_for_status()
            elapsed = time.perf_counter() - started
            health = []
            for _ in events:
                sent = time.perf_counter()
                requests.get(f"{server.url}/healthz", timeout=10).raise_for_status()
                health.append((time.perf_counter() - sent) * 1000)
        assert log.flush()
        logged = log.row_count()
    print(
        f"{len(events)} events ({pairs} pairs) in {elapsed:.1f} s: "
        f"{len(events) / elapsed:.0f} events/s; one event p50 {_percentile(latencies, 0.5):.2f} "
        f"ms, p99 {_percentile(latencies, 0.99):.2f} ms; GET /healthz p50 "
        f"{_percentile(health, 0.5):.2f} ms, p99 {_percentile(health, 0.99):.2f} ms; "
        f"{logged} answers in the log"
    )


if __name__ == "__main__":
    main()
