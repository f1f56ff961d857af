"""What a shadow costs the client: latency through the router with mirroring off and on.

``python benchmarks/shadow_overhead.py [--requests N] [--rounds R] [--model-ms MS]``

Starts stand-in model servers in processes of their own (a primary answering after
``--model-ms``, and shadows that answer at once, after 2 s, or never), puts a
:class:`controller.local.router.Router` in front of them, in this process as in ``sluice
local up``, and sends ``--requests`` requests over one keep-alive connection per condition:
no shadow; a fast shadow; a fast shadow with the SQLite prediction log; a shadow taking 2 s;
a shadow that never answers (3 s timeout). At most ``--max-in-flight`` copies wait at once
(the router's default, 64). The conditions run in ``--rounds`` rounds, in turn, so that they
share the machine's load; between two, the router waits until no copy is in flight. Prints
p50/p99 per condition and what each adds to the no-shadow run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.local.router import Router, ShadowTarget, TrafficTarget
from controller.predictions import DiscardPredictions, Prediction

SERVER = """
import http.server, json, sys, time

delay = float(sys.argv[1])

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(delay)
        body = json.dumps({"predictions": [0.25]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_port, flush=True)
server.serve_forever()
"""
BODY = json.dumps({"instances": [[106.75, 10, 300, 5, "grocery", "GB"]]}).encode()


def start_server(delay: float, processes: list[subprocess.Popen[str]]) -> str:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(delay)], stdout=subprocess.PIPE, text=True
    )
    processes.append(process)
    assert process.stdout is not None
    return f"http://127.0.0.1:{int(process.stdout.readline())}"


class SwitchableSink:
    """The router's sink, pointed at the SQLite log only in the condition that uses it."""

    def __init__(self) -> None:
        self.target: DiscardPredictions | SqlitePredictionLog = DiscardPredictions()

    def record(self, prediction: Prediction) -> None:
        self.target.record(prediction)


def timed(connection: http.client.HTTPConnection, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", "/v1/models/bench:predict", BODY)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"a client got HTTP {response.status}")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def copies(router: Router) -> dict[str, int]:
    """sluice_shadow_requests_total summed over the shadows, by result."""
    totals: dict[str, int] = {}
    for family in router.registry.collect():
        for sample in family.samples:
            if sample.name == "sluice_shadow_requests_total":
                result = sample.labels["result"]
                totals[result] = totals.get(result, 0) + int(sample.value)
    return totals


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per condition")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-ms", type=float, default=2.0, help="the primary's answer time")
    parser.add_argument(
        "--max-in-flight", type=int, default=64, help="the router's max_shadow_in_flight"
    )
    args = parser.parse_args()
    processes: list[subprocess.Popen[str]] = []
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(4096)
    sink = SwitchableSink()
    try:
        primary = start_server(args.model_ms / 1000, processes)
        fast, slow = start_server(0.0, processes), start_server(2.0, processes)
        shadows: dict[str, ShadowTarget | None] = {
            "no shadow": None,
            "fast shadow": ShadowTarget("s1", fast),
            "fast + sqlite log": ShadowTarget("s1", fast),
            "2 s shadow": ShadowTarget("s2", slow),
            "hanging shadow": ShadowTarget("s3", f"http://127.0.0.1:{hanging.getsockname()[1]}"),
        }
        times: dict[str, list[float]] = {name: [] for name in shadows}
        with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, SqlitePredictionLog(
            Path(tmp) / "predictions.db"
        ) as log, Router(
            isvc="bench", seed=0, prediction_sink=sink, shadow_timeout=3.0,
            max_shadow_in_flight=args.max_in_flight,
        ) as router:  # fmt: skip
            router.set_routes([TrafficTarget("p1", primary, 100)])
            connection = http.client.HTTPConnection("127.0.0.1", router.port)
            timed(connection, 200)
            for _ in range(args.rounds):
                for name, shadow in shadows.items():
                    sink.target = log if "sqlite" in name else DiscardPredictions()
                    router.set_shadow(shadow)
                    timed(connection, 50)  # open the shadow's connections
                    times[name] += timed(connection, args.requests)
                    router.set_shadow(None)
                    while router.mirror.in_flight:
                        time.sleep(0.05)
            log.flush()
            print(f"prediction log: {log.row_count()} rows, {log.dropped} dropped")
            print(f"copies by result: {copies(router)}")
    finally:
        hanging.close()
        for process in processes:
            process.kill()
    base50, base99 = percentile(times["no shadow"], 0.5), percentile(times["no shadow"], 0.99)
    for name, values in times.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(
            f"{name:>18}: p50 {p50:6.2f} ms ({p50 - base50:+.2f})   "
            f"p99 {p99:6.2f} ms ({p99 - base99:+.2f})   max {max(values):7.2f} ms"
            f"   ({len(values)} requests)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
