"""What ``POST /v1/events`` costs ``sluice serve``: KServe's inference-logger events, parsed by
the ``cloudevents`` SDK, paired and written to the SQLite prediction log, against ``GET
/healthz`` on the same server in the same minute.

``python benchmarks/serve_events.py [--pairs N]``

One client sends the two binary-mode CloudEvents of each of ``--pairs`` requests (headers and
extensions as KServe's agent sets them, the revision header copied into ``metadata``) one after
the other, a new connection each, as KServe's workers do; then ``--pairs`` times two ``GET
/healthz``. Prints events/s, the latency of one event (p50, p99) and of one ``/healthz``, and
how many answers the log holds at the end (all of them, or the route lost some).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    pairs = parser.parse_args().pairs
    events = [
        _event(kind, f"request-{i}", data)
        for i in range(pairs)
        for kind, data in (("request", REQUEST), ("response", RESPONSE))
    ]
    with tempfile.TemporaryDirectory() as directory:
        metrics = ServeMetrics()
        with SqlitePredictionLog(Path(directory) / "predictions.sqlite") as log:
            route = events_route(sink=log, metrics=metrics, trust_network=True)
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
