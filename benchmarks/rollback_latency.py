"""How fast a bad canary is rolled back, and how many client requests it costs.

``python benchmarks/rollback_latency.py [--rps 40] [--error-rate 0.2]``

On the local target (real MLflow, git, KServe model servers, Prometheus, Locust), with clients
sending a steady stream of requests: serve v1, then merge a faulty v2 that fails
``--error-rate`` of its requests as a canary at the first step, and let ``sluice rollout`` (the
local environment's policy) judge it. Measured from the clients' side:

- the time from the first request the bad canary answered to the last one (the rollback is
  synced once no request reaches it), in seconds and in analysis intervals;
- the failed requests.

The same traffic is then replayed, arithmetically, under a Flagger-default policy: Flagger
checks every ``interval`` (1 minute) and rolls back after ``threshold`` (5) failed checks, so
the canary takes its share of traffic for interval × threshold. Both policies are compared
over that same window (the time Flagger needs), as the share of all client requests that
failed. Goal: at most two analysis intervals, and under 0.5% of all requests failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.backends.git_repo import GitWorkspace  # noqa: E402
from controller.backends.local_target import LocalTarget  # noqa: E402
from controller.backends.locust_load import LocustLoadGenerator  # noqa: E402
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http  # noqa: E402
from controller.backends.prometheus import PrometheusSource  # noqa: E402
from controller.demo_gitops import merge_branch, seed_gitops_remote  # noqa: E402
from controller.environment import load_environment  # noqa: E402
from controller.local.stack import StackRequest, down, up  # noqa: E402
from controller.local.state import read_json  # noqa: E402
from controller.propose import ProposalRequest, propose  # noqa: E402
from controller.rollout.actions import Outcome  # noqa: E402
from controller.rollout.analysis import Analyzer  # noqa: E402
from controller.rollout.reconcile import Reconciler  # noqa: E402

MODEL = "fraud-detector"
FLAGGER_INTERVAL_S = 60.0
FLAGGER_THRESHOLD = 5


@dataclass
class Clients:
    """A steady stream of requests to the main route, every answer recorded with its time."""

    url: str
    rows: list[dict[str, object]]
    rps: float
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        period, i = 1.0 / self.rps, 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            row = self.rows[i % len(self.rows)]
            i += 1
            try:
                answer = session.post(self.url, json={"instances": [row]}, timeout=10)
                revision, code = answer.headers.get("X-Sluice-Revision", "?"), answer.status_code
            except requests.RequestException:
                revision, code = "?", 0
            self.answers.append((time.monotonic(), revision, code))
            next_at += period
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def train(tracking_uri: str, *args: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--rows", "4000", *args],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip


def register_faulty(tracking_uri: str, error_rate: float) -> int:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run(
        [sys.executable, "-m", "models.faulty.register", "--base-model", MODEL,
         "--base-version", "1", "--error-rate", str(error_rate)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(done.stdout.strip().splitlines()[-1])


def reconciler(root: Path, remote: Path, tracking_uri: str, prometheus_url: str) -> Reconciler:
    registry = MlflowRegistry(tracking_uri)
    return Reconciler(
        workspace=GitWorkspace(str(remote), root / "rollout-git"),
        registry=registry,
        target=LocalTarget(root),
        analyzer=Analyzer(registry, PrometheusSource(prometheus_url), LocustLoadGenerator()),
    )


@contextmanager
def local_stack(workdir: Path) -> Iterator[tuple[Path, Path, dict[str, dict[str, object]]]]:
    root = workdir / "local"
    remote = seed_gitops_remote(ROOT, workdir / "gitops.git")
    stack = up(StackRequest(root=root, remote=str(remote), env="local", poll_interval=1.0))
    try:
        yield root, remote, stack
    finally:
        down(root)


def router_url(root: Path) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        entry = ((read_json(root / "runtime.json") or {}).get("inferenceServices") or {}).get(MODEL)
        status = (entry or {}).get("object", {}).get("status", {})
        if entry and status.get("components", {}).get("predictor", {}).get("latestReadyRevision"):
            return str(entry["url"])
        time.sleep(0.5)
    raise SystemExit("v1 never served; see the runtime log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=40.0, help="client requests per second")
    parser.add_argument("--error-rate", type=float, default=0.2, help="the bad canary's")
    args = parser.parse_args()
    policy = load_environment(ROOT, "local").rollout
    configure_mlflow_http(retries=2, timeout_seconds=30)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-rollback-bench-"))
    try:
        with local_stack(workdir) as (root, remote, stack):
            tracking_uri = str(stack["mlflow"]["url"])
            prometheus_url = str(stack["prometheus"]["url"])
            registry = MlflowRegistry(tracking_uri)
            cache = workdir / "propose-git"
            train(tracking_uri, "--week", "0")
            first = propose(ProposalRequest(MODEL, "local", version=1), registry=registry,
                            workspace=GitWorkspace(str(remote), cache), forge=None)  # fmt: skip
            merge_branch(remote, first.branch)
            url = router_url(root)
            sample = registry.input_rows(MODEL, 1, 50)
            clients = Clients(f"{url}/v1/models/{MODEL}:predict", sample, args.rps)
            threading.Thread(target=clients.run, daemon=True).start()
            sluice = reconciler(root, remote, tracking_uri, prometheus_url)
            sluice.run("local", MODEL, poll_seconds=1.0)  # v1 becomes champion
            bad = register_faulty(tracking_uri, args.error_rate)
            second = propose(ProposalRequest(MODEL, "local", version=bad), registry=registry,
                             workspace=GitWorkspace(str(remote), cache), forge=None)  # fmt: skip
            merge_branch(remote, second.branch)
            report = sluice.run("local", MODEL, poll_seconds=1.0)
            time.sleep(3)  # let in-flight requests land
            clients.stop.set()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if report.outcome is not Outcome.ROLLED_BACK:
        raise SystemExit(f"the faulty version was not rolled back: {report.detail}")
    summarize(clients, policy.interval_seconds, args)


def summarize(clients: Clients, interval: float, args: argparse.Namespace) -> None:
    canary = [a for a in clients.answers if a[1].endswith("-00002")]
    if not canary:
        raise SystemExit("no client request reached the canary")
    start, end = canary[0][0], canary[-1][0]
    exposure = end - start
    failed_sluice = sum(1 for _, _, code in clients.answers if code == 0 or code >= 500)
    rps = len(clients.answers) / (clients.answers[-1][0] - clients.answers[0][0])
    canary_share = len(canary) / max(1, len([a for a in clients.answers if start <= a[0] <= end]))
    window = FLAGGER_INTERVAL_S * FLAGGER_THRESHOLD
    flagger_failed = rps * canary_share * args.error_rate * window
    total = rps * window
    print(f"clients: {len(clients.answers):,} requests at {rps:.1f} rps")
    print(f"bad canary ({args.error_rate:.0%} errors) took {canary_share:.0%} of requests")
    print("")
    print(f"{'policy':<28}{'time to rollback':>18}{'intervals':>11}{'failed':>9}{'of all':>9}")
    print(
        f"{'Sluice (local policy)':<28}{exposure:>16.1f} s{exposure / interval:>11.1f}"
        f"{failed_sluice:>9}{100 * failed_sluice / total:>8.2f}%"
    )
    print(
        f"{'Flagger default (1m × 5)':<28}{window:>16.1f} s{FLAGGER_THRESHOLD:>11}"
        f"{flagger_failed:>9.0f}{100 * flagger_failed / total:>8.2f}%"
    )
    print("")
    fewer = flagger_failed / max(1, failed_sluice)
    print(f"rollback {window / exposure:.1f}× sooner, {fewer:.1f}× fewer failed requests")
    print(f"(shares over Flagger's {window:.0f} s window of the same traffic)")
    goal = exposure <= 2 * interval and 100 * failed_sluice / total < 0.5
    print(f"goal (≤ 2 intervals, < 0.5% failed): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
