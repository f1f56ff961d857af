"""What a new revision's model server costs to start: cold (a new process) vs warm (forked).

``python benchmarks/revision_start.py [--servers N]``

Starts N model servers cold (``SLUICE_LOCAL_COLD_START=1``: a new ``python -m
controller.local.serving`` process each) and then N warm (forked from the fork server, which
the first warm start launches), one after the other, each on the same small scikit-learn
pipeline saved as an MLflow model (``router_overhead.save_model``), as
:func:`controller.local.serving.launcher.start_model_server` starts a revision. For each server
it prints the time from start to ready (KServe's per-model ready endpoint answers 200) and the
CPU seconds the server used until then (``utime + stime`` of ``/proc/PID/stat``). Warm servers'
CPU is also shown with the fork server's own CPU (its preload) spread over the N servers, and
the first warm start's time includes waiting for that preload.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from multiprocessing import forkserver
from pathlib import Path

from router_overhead import save_model

from controller.local.forkserver import COLD_START_ENV
from controller.local.serving.launcher import start_model_server

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of the process itself (not of children it reaped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def start_series(kind: str, servers: int, root: Path, model: Path) -> list[tuple[float, float]]:
    """Start and stop ``servers`` model servers one by one; (seconds to ready, CPU) each."""
    results = []
    for index in range(servers):
        started = time.perf_counter()
        handle = start_model_server(
            name="bench", storage_uri=model.as_uri(), log_dir=root / f"{kind}-{index}", env={}
        )
        ready = time.perf_counter() - started
        cpu = cpu_seconds(handle.pid)
        warm = handle.process.started_warm
        handle.stop()
        if warm != (kind == "warm"):
            raise SystemExit(f"server {index} of the {kind} series did not start {kind}")
        results.append((ready, cpu))
        print(f"{kind} {index + 1:>2}: ready in {ready:5.2f} s, {cpu:5.2f} s CPU", flush=True)
    return results


def fork_server_cpu() -> float:
    """CPU the fork server spent itself: its preload (reaped children are not counted)."""
    pid = getattr(forkserver, "_forkserver", None)
    pid = getattr(pid, "_forkserver_pid", None)
    return cpu_seconds(pid) if pid else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=5, help="model servers per series (5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        root = Path(tmp)
        save_model(root / "model")
        os.environ[COLD_START_ENV] = "1"
        cold = start_series("cold", args.servers, root, root / "model")
        del os.environ[COLD_START_ENV]
        warm = start_series("warm", args.servers, root, root / "model")
        preload = fork_server_cpu()
    n = args.servers
    cold_ready = statistics.mean(r for r, _ in cold)
    cold_cpu = statistics.mean(c for _, c in cold)
    warm_ready = statistics.mean(r for r, _ in warm)
    later_ready = statistics.mean(r for r, _ in warm[1:]) if n > 1 else warm_ready
    warm_cpu = statistics.mean(c for _, c in warm)
    amortised = warm_cpu + preload / n
    print(f"cold: ready in {cold_ready:.2f} s, {cold_cpu:.2f} s CPU per server (mean of {n})")
    print(
        f"warm: ready in {warm_ready:.2f} s ({warm[0][0]:.2f} s the first, with the preload; "
        f"{later_ready:.2f} s the others), {warm_cpu:.2f} s CPU per server, "
        f"{amortised:.2f} s with the fork server's {preload:.2f} s preload spread over {n}"
    )
    print(
        f"warm/cold: time to ready {warm_ready / cold_ready:.2f} "
        f"(after the first {later_ready / cold_ready:.2f}), CPU {warm_cpu / cold_cpu:.2f} "
        f"(amortised {amortised / cold_cpu:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
