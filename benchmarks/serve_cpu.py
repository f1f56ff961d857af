"""What a prediction costs the model server in CPU: this checkout against a baseline commit.

``python benchmarks/serve_cpu.py [--baseline REF] [--requests N] [--rows R]``

Exports the baseline commit's ``controller/`` (default ``HEAD~1``) with ``git archive`` into a
temporary directory, starts one real KServe model server (``python -m controller.local.serving``)
from it and one from this checkout, both on the same small scikit-learn pipeline saved as an
MLflow model (``router_overhead.save_model``) and both with one OpenMP thread, as the local
runtime starts them. Then it sends the same V1 request alternately to each, over a keep-alive
connection each, so both see the same machine load, and prints each server's CPU seconds per
request (``utime + stime`` of ``/proc/PID/stat``, every thread counted), the client's wall
time per request, and the ratios, this checkout over the baseline.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from revision_start import cpu_seconds
from router_overhead import save_model

from controller.local.processes import free_port, http_ok

_ROOT = Path(__file__).resolve().parents[1]
_ROW = {
    "amount": 106.75,
    "hour": 10,
    "card_age_days": 300,
    "tx_velocity_24h": 5,
    "merchant_category": "grocery",
    "country": "GB",
}


def export_controller(ref: str, into: Path) -> Path:
    """``controller/`` as it is at ``ref``, unpacked under ``into``; returns ``into``."""
    archive = subprocess.run(
        ["git", "archive", ref, "controller"], cwd=_ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def start(tree: Path, model: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    command = [
        *(sys.executable, "-m", "controller.local.serving", "--model-name", "m"),
        *("--storage-uri", str(model), "--http-port", str(port), "--no-drift-monitor"),
    ]
    process = subprocess.Popen(command, env=env, cwd=tree, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not http_ok(f"http://127.0.0.1:{port}/v2/models/m/ready", timeout=1):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the model server from {tree} did not start")
        time.sleep(0.2)
    return process, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD~1", help="commit to compare with (HEAD~1)")
    parser.add_argument("--requests", type=int, default=3000, help="to each server (3000)")
    parser.add_argument("--rows", type=int, default=1, help="rows per request (1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_model(root / "model")
        baseline = export_controller(args.baseline, root / "baseline")
        servers = {
            "baseline": start(baseline, root / "model"),
            "this": start(_ROOT, root / "model"),
        }
        body = json.dumps({"instances": [_ROW] * args.rows}).encode()
        headers = {"Content-Type": "application/json"}
        connections = {
            k: http.client.HTTPConnection("127.0.0.1", p) for k, (_, p) in servers.items()
        }
        time.sleep(1.0)  # the HTTP warm-up's own requests are done
        cpu0 = {k: cpu_seconds(process.pid) for k, (process, _) in servers.items()}
        wall = dict.fromkeys(servers, 0.0)
        try:
            for _ in range(args.requests):
                for key, connection in connections.items():
                    started = time.perf_counter()
                    connection.request("POST", "/v1/models/m:predict", body, headers)
                    answer = connection.getresponse()
                    answer.read()
                    wall[key] += time.perf_counter() - started
                    if answer.status != 200:
                        raise SystemExit(f"{key} answered {answer.status}")
            cpu = {k: cpu_seconds(p.pid) - cpu0[k] for k, (p, _) in servers.items()}
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait()
    n = args.requests
    for key in servers:
        print(
            f"{key:8} {cpu[key] / n * 1000:6.2f} ms server CPU, "
            f"{wall[key] / n * 1000:6.2f} ms wall per request ({args.rows} row(s))"
        )
    print(
        f"this/baseline ({args.baseline}): CPU {cpu['this'] / cpu['baseline']:.2f}x, "
        f"wall {wall['this'] / wall['baseline']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
