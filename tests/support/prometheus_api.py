"""Prometheus's query API on 127.0.0.1, as far as the status page reads it.

Range queries (``/api/v1/query_range``) answer made-up series over the asked window: a canary
revision's (a query naming ``00002``) success rate dips and its p99 runs 15 ms above the
primary's. Instant queries (``/api/v1/query``) answer the samples ``instant`` gives for the
query (none by default). Every query answered is recorded in ``queries``.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Instant", "PrometheusApi", "prometheus_api"]

#: What an instant query answers: ``(labels, value)`` per sample of the vector.
Instant = Callable[[str], Sequence[tuple[dict[str, str], float]]]


class PrometheusApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, instant: Instant) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.instant = instant
        self.queries: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def prometheus_api(instant: Instant = lambda query: ()) -> Iterator[PrometheusApi]:
    """A running stand-in, shut down after."""
    server = PrometheusApi(instant)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _range(query: str, start: float, end: float, step: float) -> list[list[Any]]:
    canary = "00002" in query
    values = []
    t = start
    while t <= end:
        wave = math.sin((t - start) / 20)
        if "histogram_quantile" in query:
            value = 40 + (15 if canary else 0) + 3 * wave
        else:
            value = 99.9 - (0.6 * (1 + wave) if canary else 0.05)
        values.append([t, f"{value:.4f}"])
        t += step
    return values


class _Handler(BaseHTTPRequestHandler):
    server: PrometheusApi

    def do_GET(self) -> None:
        self._send(200, b"Prometheus is Ready.\n", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        query = form["query"][0]
        self.server.queries.append(query)
        data: dict[str, Any]
        if self.path == "/api/v1/query_range":
            start, end, step = (float(form[k][0]) for k in ("start", "end", "step"))
            series = {"metric": {}, "values": _range(query, start, end, step)}
            data = {"resultType": "matrix", "result": [series]}
        else:
            now = time.time()
            result = [
                {"metric": labels, "value": [now, repr(value)]}
                for labels, value in self.server.instant(query)
            ]
            data = {"resultType": "vector", "result": result}
        body = json.dumps({"status": "success", "data": data}).encode()
        self._send(200, body, "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""
