"""Starting the tracking server: ``mlflow server`` against Sluice's one-process launcher.

``python benchmarks/mlflow_start.py [--rounds 3]``

Starts MLflow on a fresh SQLite store and artifacts directory both ways, alternately, and
measures the seconds until ``/health`` answers and the resident memory of the whole process
tree once it does: ``mlflow server --workers 1`` (the CLI imports MLflow, then starts uvicorn
in a second Python that imports it again, and stays alive as its parent) and ``python -m
controller.local.mlflow_app`` (the same ASGI app, tables created the same way, in one process;
what ``sluice local up`` and the tests start). Prints the medians and their ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.local.processes import free_port  # noqa: E402

ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def argv(kind: str, port: int, work: Path) -> list[str]:
    store = f"sqlite:///{work / 'mlflow.db'}"
    artifacts = str(work / "artifacts")
    if kind == "mlflow server":
        return [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--backend-store-uri", store,
                "--artifacts-destination", artifacts]  # fmt: skip
    return [sys.executable, "-m", "controller.local.mlflow_app", "--host", "127.0.0.1",
            "--port", str(port), "--backend-store-uri", store,
            "--artifacts-destination", artifacts]  # fmt: skip


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def tree_rss_mb(pid: int) -> float:
    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


def start_once(kind: str) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(prefix="sluice-mlflow-bench-"))
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        argv(kind, port, work),
        cwd=work,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not healthy(port):
            if process.poll() is not None:
                raise SystemExit(f"{kind} exited with {process.returncode}")
            if time.monotonic() - started > 120:
                raise SystemExit(f"{kind} did not answer /health within 120 s")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        time.sleep(1.0)  # let the tree settle before weighing it
        return seconds, tree_rss_mb(process.pid)
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="starts of each kind")
    args = parser.parse_args()
    kinds = ("mlflow server", "controller.local.mlflow_app")
    seen: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:  # alternately, so both see the same machine load
            seen[kind].append(start_once(kind))
    medians = {
        k: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v))
        for k, v in seen.items()
    }
    print(f"{'start':<30}{'to /health':>12}{'RSS (tree)':>14}")
    for kind, (seconds, mb) in medians.items():
        print(f"{kind:<30}{seconds:>10.2f} s{mb:>11.0f} MB")
    (cli_s, cli_mb), (app_s, app_mb) = medians[kinds[0]], medians[kinds[1]]
    print(
        f"one process vs mlflow server: {app_s / cli_s:.2f}x the start time "
        f"({cli_s - app_s:+.1f} s saved), {app_mb / cli_mb:.2f}x the memory "
        f"({cli_mb - app_mb:+.0f} MB saved)"
    )


if __name__ == "__main__":
    main()
