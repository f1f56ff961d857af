"""What Starlette and uvicorn cost ``sluice serve``: its HTTP routes on the standard library's
server (the baseline, the transport before issue #15) and on Starlette (the one it has now).

``python benchmarks/serve_http.py [--requests N] [--clients C] [--rounds R]``

Each server runs in a process of its own with the routes of ``sluice serve``
(:func:`controller.serve.server.sluice_routes`, with a webhook secret and a trigger that queues at
once), so the client's threads do not share its interpreter. Two routes: ``GET /healthz`` and
a signed ``POST /hooks/mlflow`` alias delivery (each request has its own delivery id, signed
before the clock starts, so the replay guard admits it and the trigger runs). Per route and
server: latency from one client sending ``--requests`` requests one after the other (p50,
p99), then requests/s with ``--clients`` clients at once. Both servers close the connection
after each answer, so every request opens one, as a webhook sender does. The servers take
turns for ``--rounds`` rounds, so both see the same machine load. Prints the numbers and the
Starlette/stdlib ratios; the last line is the verdict against what Sluice serves (webhooks and
a status page, a few requests a second).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

from controller.serve.server import (
    Handler,
    Request,
    Response,
    Route,
    ServeMetrics,
    SluiceServer,
    sluice_routes,
)
from controller.serve.webhooks import sign_mlflow_delivery

SECRET = "whsec-bench"  # noqa: S105 (signs the benchmark's own deliveries)
SERVERS = ("stdlib", "starlette")
#: What Sluice's routes see in production: a few deliveries and page loads a second.
SLUICE_LOAD_RPS = 5.0

# -- the baseline: the standard-library transport of controller/serve/server.py before issue #15


class StdlibServer:
    """``ThreadingHTTPServer`` in a thread, one request per connection (HTTP/1.0), as it was."""

    def __init__(self, routes: Mapping[Route, Handler], max_body_bytes: int = 1 << 20) -> None:
        self.routes = dict(routes)
        self.max_body_bytes = max_body_bytes
        self.httpd = _HTTPServer(("127.0.0.1", 0), _RequestHandler)
        self.httpd.app = self
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}).start()

    def handle(self, request: Request) -> Response:
        methods = {method for method, path in self.routes if path == request.path}
        if not methods:
            return Response.json(404, {"error": "not found"})
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return Response(405, b"", headers={"Allow": ", ".join(sorted(methods))})
        try:
            return handler(request)
        except Exception:
            return Response.json(500, {"error": "internal error"})


class _HTTPServer(ThreadingHTTPServer):
    app: StdlibServer

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "sluice"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(10.0)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        app = cast(_HTTPServer, self.server).app
        path, _, query = self.path.partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = b""
        if self.command == "POST":
            length = headers.get("content-length")
            if length is None:
                self._send(Response.json(411, {"error": "Content-Length required"}))
                return
            if not length.isascii() or not length.isdigit():
                self._send(Response.json(400, {"error": "malformed Content-Length"}))
                return
            if int(length) > app.max_body_bytes:
                self._send(Response.json(413, {"error": "body too large"}))
                return
            body = self.rfile.read(int(length))
        self._send(app.handle(Request(self.command, path, headers, body, query)))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


# -- the server process -------------------------------------------------------------------------


def serve(kind: str) -> int:
    """Serve ``sluice serve``'s routes with ``kind``'s transport; print the port; stop at EOF."""
    logging.disable(logging.WARNING)  # one info line per delivery is not what is measured
    routes = sluice_routes(
        metrics=ServeMetrics(),
        status=lambda: {"watched": [], "last_poll": {"result": "ok"}},
        mlflow_trigger=lambda model, alias: True,
        mlflow_webhook_secret=SECRET,
        max_age_seconds=3600,
    )
    if kind == "stdlib":
        server = StdlibServer(routes)
        print(server.port, flush=True)
        sys.stdin.read()
        server.httpd.shutdown()
    else:
        with SluiceServer(routes) as sluice:
            print(sluice.port, flush=True)
            sys.stdin.read()
    return 0


# -- the client ---------------------------------------------------------------------------------

Call = tuple[str, str, bytes, dict[str, str]]


def health_calls(count: int) -> list[Call]:
    return [("GET", "/healthz", b"", {})] * count


def hook_calls(count: int) -> list[Call]:
    """Signed alias deliveries, each with its own id (the replay guard refuses a second)."""
    calls = []
    timestamp = str(int(time.time()))
    for _ in range(count):
        body = json.dumps(
            {
                "entity": "model_version_alias",
                "action": "created",
                "data": {"name": "fraud-detector", "alias": "challenger", "version": "3"},
            }
        ).encode()
        delivery_id = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-MLflow-Delivery-Id": delivery_id,
            "X-MLflow-Timestamp": timestamp,
            "X-MLflow-Signature": sign_mlflow_delivery(SECRET, delivery_id, timestamp, body),
        }
        calls.append(("POST", "/hooks/mlflow", body, headers))
    return calls


def call(port: int, request: Call) -> float:
    """Milliseconds for one request on a new connection, answer read; 200 or exit."""
    method, path, body, headers = request
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body or None, headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise SystemExit(f"{method} {path} answered HTTP {response.status}")
    return (time.perf_counter() - started) * 1000


def throughput(port: int, calls: list[Call], clients: int) -> tuple[float, int]:
    """Requests per second with ``clients`` clients at once, and how many of the requests took
    a second or more (a connection refused by a full listen backlog is retried after 1 s)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        times = list(pool.map(lambda request: call(port, request), calls))
    return len(calls) / (time.perf_counter() - started), sum(t >= 1000 for t in times)


class Server:
    """One server process."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per route, round")
    parser.add_argument("--clients", type=int, default=8, help="clients at once for requests/s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)

    routes: dict[str, Callable[[int], list[Call]]] = {
        "GET /healthz": health_calls,
        "POST /hooks/mlflow": hook_calls,
    }
    latency: dict[tuple[str, str], list[float]] = {(k, r): [] for k in SERVERS for r in routes}
    rates: dict[tuple[str, str], list[float]] = {(k, r): [] for k in SERVERS for r in routes}
    stalls = dict.fromkeys(SERVERS, 0)
    servers = {kind: Server(kind) for kind in SERVERS}
    try:
        for server in servers.values():  # warm up: imports, thread pools, the first connections
            for make in routes.values():
                for request in make(100):
                    call(server.port, request)
        for _ in range(args.rounds):
            for route, make in routes.items():
                for kind, server in servers.items():
                    latency[kind, route] += [call(server.port, r) for r in make(args.requests)]
                    rate, stalled = throughput(server.port, make(args.requests), args.clients)
                    rates[kind, route].append(rate)
                    stalls[kind] += stalled
    finally:
        for server in servers.values():
            server.close()

    print(
        f"{args.requests} requests per route and round, {args.rounds} rounds, a new connection "
        f"per request; requests/s with {args.clients} clients (median of rounds)"
    )
    worst_p99 = 0.0
    worst_rate = float("inf")
    for route in routes:
        row = {}
        for kind in SERVERS:
            values = latency[kind, route]
            rate = sorted(rates[kind, route])[len(rates[kind, route]) // 2]
            row[kind] = (rate, percentile(values, 0.5), percentile(values, 0.99))
            print(
                f"{route:>19} {kind:>9}: {rate:7.0f} req/s   p50 {row[kind][1]:6.2f} ms   "
                f"p99 {row[kind][2]:6.2f} ms"
            )
        ratios = [new / old for new, old in zip(row["starlette"], row["stdlib"], strict=True)]
        print(
            f"{route:>19} {'ratio':>9}: {ratios[0]:7.2f}x        p50 {ratios[1]:5.2f}x      "
            f"p99 {ratios[2]:5.2f}x   (Starlette / stdlib)"
        )
        worst_p99 = max(worst_p99, row["starlette"][2])
        worst_rate = min(worst_rate, row["starlette"][0])
    for kind in SERVERS:
        print(f"{kind:>9}: {stalls[kind]} requests with {args.clients} clients took 1 s or more")
    print(
        f"verdict: Starlette serves at least {worst_rate:.0f} req/s with p99 at most "
        f"{worst_p99:.1f} ms, {worst_rate / SLUICE_LOAD_RPS:.0f}x the few requests a second "
        "Sluice's webhooks and status page see"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
