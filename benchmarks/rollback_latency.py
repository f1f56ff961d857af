"""How long a bad canary serves clients, and how many client requests it costs.

``python benchmarks/rollback_latency.py [--rps 40] [--connections 8] [--error-rate 0.2]``

On the local target (real MLflow, git, KServe-shaped model servers, the router, Prometheus,
Locust), clients hold a steady ``--rps`` against the main route with ``--connections`` parallel
connections (an open schedule: request *i* is sent at ``i / rps`` whatever the answers before
it took, so the rate does not sag while Locust loads the same cores). v1 serves; then, one after
another, a faulty version failing ``--error-rate`` of its requests is proposed, merged and rolled
out by ``sluice rollout`` under three policies, each committed to the environment's
``sluice.yaml`` before its run and each actually run on the same stack (each faulty version
draws its failures from its own seed, ``--seed`` and up, and the share of its client answers
that failed is printed):

- **Sluice, watch**, ``--watch-runs`` versions (3): the local policy (8 s analyses) with the
  sequential watch between them (an SPRT on the canary's error rate every second, on the
  router's live counts), smoke off; the goal is judged on their median;
- **Sluice, smoke**: the same with ``rollout.smoke`` on: the version is pinned at weight 0 and
  must answer 50 requests on its tag route before taking client traffic;
- **Flagger-equivalent**: Flagger's defaults approximated as a Sluice policy: an analysis every
  minute (``interval: 1m``), rollback after 5 failed ones (``threshold: 5``), steps of 10 up to
  50 (``stepWeight: 10``, ``maxWeight: 50``), only the two built-in metric checks over 1 m
  (request-success-rate ≥ 99 %, request-duration ≤ 500 ms), no load test, no judge, no watch,
  no smoke.

Measured from the clients' side, per run: the exposure (first to last client answer from the
faulty revision, 0 when none reached it) and the failed client requests (5xx or no answer)
between the merge and the end of the rollout. The last line says whether the goal is met:
median exposure ≤ 4 s and ≤ 3 failed client requests for the watch, 0 failed with the smoke.
The stack runs with ``sluice local up``'s defaults (the runtime polls Git every 3 s; the
controller asks it to sync after each commit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.backends.git_repo import GitWorkspace  # noqa: E402
from controller.backends.locust_load import LocustLoadGenerator  # noqa: E402
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http  # noqa: E402
from controller.backends.prometheus import PrometheusSource  # noqa: E402
from controller.demo.gitops_remote import commit_to_main, merge_branch, seed_gitops_remote  # noqa: E402
from controller.local.stack import StackRequest, down, up  # noqa: E402
from controller.local.state import read_json  # noqa: E402
from controller.local.target import LocalTarget  # noqa: E402
from controller.null_ports import NoForge  # noqa: E402
from controller.proposals.propose import ProposalRequest, propose  # noqa: E402
from controller.rollout.actions import Outcome  # noqa: E402
from controller.rollout.analysis import Analyzer  # noqa: E402
from controller.rollout.reconcile import Reconciler  # noqa: E402

MODEL = "fraud-detector"
POLICY_FILE = "manifests/overlays/local/sluice.yaml"
GOAL_EXPOSURE_S = 4.0
GOAL_FAILED = 3

FLAGGER_POLICY: dict[str, Any] = {
    "steps": [10, 20, 30, 40, 50, 100],
    "interval": 60,
    "failureLimit": 5,
    "inconclusiveLimit": 5,
    "watch": {"enabled": False},
    "smoke": {"enabled": False},
    "gates": {
        "loadTest": {"enabled": False},
        "judgeEnabled": False,
        "metrics": [
            {"name": "request-success-rate", "builtin": "request-success-rate", "min": 99},
            {"name": "request-duration", "builtin": "request-latency", "max": 500},
        ],
    },
}


@dataclass
class Clients:
    """``rps`` requests a second on an open schedule over ``connections`` connections; every
    answer is kept as (time answered, revision, status; 0 for no answer)."""

    url: str
    rows: list[dict[str, object]]
    rps: float
    connections: int
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    late: int = 0
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._start = time.monotonic()
        for _ in range(self.connections):
            threading.Thread(target=self._worker, daemon=True).start()

    def _ticket(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def _worker(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            number = self._ticket()
            due = self._start + number / self.rps
            wait = due - time.monotonic()
            if wait > 0:
                self.stop.wait(wait)
            elif wait < -0.05:
                self.late += 1  # every connection was busy: the schedule slipped
            row = self.rows[number % len(self.rows)]
            try:
                answer = session.post(self.url, json={"instances": [row]}, timeout=10)
                revision, code = answer.headers.get("X-Sluice-Revision", "?"), answer.status_code
            except requests.RequestException:
                revision, code = "?", 0
            with self._lock:
                self.answers.append((time.monotonic(), revision, code))

    def between(self, start: float, end: float) -> list[tuple[float, str, int]]:
        with self._lock:
            return [a for a in self.answers if start <= a[0] <= end]


@dataclass(frozen=True)
class Run:
    """One faulty version's rollout under one policy, from the clients' side."""

    policy: str
    outcome: str
    exposure_s: float
    canary_answers: int
    failed: int
    canary_failed: int
    requests: int
    seconds: float
    detail: str


def train(tracking_uri: str, *args: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    subprocess.run(
        [sys.executable, "-m", "models.fraud_detector.train", "--rows", "4000", *args],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip


def register_faulty(tracking_uri: str, error_rate: float, seed: int) -> int:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run(
        [sys.executable, "-m", "models.faulty.register", "--base-model", MODEL,
         "--base-version", "1", "--error-rate", str(error_rate), "--seed", str(seed)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(done.stdout.strip().splitlines()[-1])


def reconciler(root: Path, remote: Path, tracking_uri: str, prometheus_url: str) -> Reconciler:
    registry = MlflowRegistry(tracking_uri)
    target = LocalTarget(root)
    return Reconciler(
        workspace=GitWorkspace(str(remote), root / "rollout-git"),
        registry=registry,
        target=target,
        analyzer=Analyzer(
            registry, PrometheusSource(prometheus_url), LocustLoadGenerator(), counters=target
        ),
    )


@contextmanager
def local_stack(workdir: Path) -> Iterator[tuple[Path, Path, dict[str, dict[str, object]]]]:
    root = workdir / "local"
    remote = seed_gitops_remote(ROOT, workdir / "gitops.git")
    # The stack's defaults (a 3 s poll of the branch), as `sluice local up` starts it.
    stack = up(StackRequest(root=root, remote=str(remote), env="local"))
    try:
        yield root, remote, stack
    finally:
        down(root)


def predictor_status(root: Path) -> dict[str, Any]:
    entry = ((read_json(root / "runtime.json") or {}).get("inferenceServices") or {}).get(MODEL)
    status = (entry or {}).get("object", {}).get("status", {})
    return dict(status.get("components", {}).get("predictor", {}))


def router_url(root: Path) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if predictor_status(root).get("latestReadyRevision"):
            entry = (read_json(root / "runtime.json") or {})["inferenceServices"][MODEL]
            return str(entry["url"])
        time.sleep(0.5)
    raise SystemExit("v1 never served; see the runtime log")


def next_revision(name: str) -> str:
    prefix, number = name.rsplit("-", 1)
    return f"{prefix}-{int(number) + 1:0{len(number)}d}"


def set_policy(remote: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Commit a change to the local environment's ``rollout:`` block on main."""

    def edit(work: Path) -> None:
        path = work / POLICY_FILE
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(document["rollout"])
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    commit_to_main(remote, f"Benchmark policy: {name}", edit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=40.0, help="client requests per second")
    parser.add_argument("--connections", type=int, default=8, help="parallel client connections")
    parser.add_argument("--error-rate", type=float, default=0.2, help="the bad canary's")
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the first faulty version's failure draws (+1 for each next run); seed 0's "
        "first 25 draws hold no failure at 20 %%, which measures the generator, not the policy",
    )
    parser.add_argument(
        "--skip-flagger", action="store_true", help="skip the 5-minute Flagger-equivalent run"
    )
    parser.add_argument(
        "--watch-runs",
        type=int,
        default=3,
        help="faulty versions rolled out under the watch, each with its own seed (the goal is "
        "judged on their median: one run measures its seed's draws as much as the policy)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="print each pass of each run, in seconds from the canary's first answer",
    )
    args = parser.parse_args()
    configure_mlflow_http(retries=2, timeout_seconds=30)
    workdir = Path(tempfile.mkdtemp(prefix="sluice-rollback-bench-"))
    runs: list[Run] = []
    try:
        with local_stack(workdir) as (root, remote, stack):
            tracking_uri = str(stack["mlflow"]["url"])
            registry = MlflowRegistry(tracking_uri)
            cache = workdir / "propose-git"
            train(tracking_uri, "--week", "0")
            first = propose(
                ProposalRequest(MODEL, "local", version=1), registry=registry,
                workspace=GitWorkspace(str(remote), cache), forge=NoForge(),
            )  # fmt: skip
            merge_branch(remote, first.branch)
            url = router_url(root)
            sample = registry.input_rows(MODEL, 1, 50)
            clients = Clients(
                f"{url}/v1/models/{MODEL}:predict", sample, args.rps, args.connections
            )
            clients.start()
            sluice = reconciler(root, remote, tracking_uri, str(stack["prometheus"]["url"]))
            sluice.run("local", MODEL, poll_seconds=1.0)  # v1 becomes champion

            def run(policy: str) -> None:
                bad = register_faulty(tracking_uri, args.error_rate, args.seed + len(runs))
                canary = next_revision(str(predictor_status(root)["latestCreatedRevision"]))
                workspace = GitWorkspace(str(remote), cache)
                second = propose(
                    ProposalRequest(MODEL, "local", version=bad),
                    registry=registry, workspace=workspace, forge=NoForge(),
                )  # fmt: skip
                started = time.monotonic()
                merge_branch(remote, second.branch)
                passes: list[tuple[float, str]] = []
                report = sluice.run(
                    "local", MODEL, poll_seconds=1.0,
                    on_pass=lambda r: passes.append((time.monotonic(), f"{r.action}: {r.detail}")),
                )  # fmt: skip
                time.sleep(3)  # let requests in flight land
                ended = time.monotonic()
                window = clients.between(started, ended)
                bad_answers = [a for a in window if a[1] == canary]
                exposure = bad_answers[-1][0] - bad_answers[0][0] if bad_answers else 0.0
                failed = sum(1 for _, _, code in window if code == 0 or code >= 500)
                canary_failed = sum(1 for _, _, code in bad_answers if code == 0 or code >= 500)
                outcome = report.outcome.value if report.outcome else "?"
                if report.outcome is not Outcome.ROLLED_BACK:
                    raise SystemExit(f"{policy}: v{bad} was not rolled back: {report.detail}")
                runs.append(
                    Run(policy, outcome, exposure, len(bad_answers), failed, canary_failed,
                        len(window), ended - started, report.detail)
                )  # fmt: skip
                print(f"{policy}: {runs[-1]}", flush=True)
                if args.timeline:
                    t0 = bad_answers[0][0] if bad_answers else started
                    print(f"  first canary answer at +0.0 s (merge at {started - t0:+.1f} s)")
                    for at, what in passes:
                        print(f"  {at - t0:+6.1f} s  {what[:150]}")
                    if bad_answers:
                        print(f"  {bad_answers[-1][0] - t0:+6.1f} s  last canary answer")

            set_policy(remote, "smoke off", lambda r: r.update(smoke={"enabled": False}))
            for number in range(1, args.watch_runs + 1):
                run(f"Sluice, watch #{number}")
            set_policy(remote, "smoke on", lambda r: r.update(smoke={"enabled": True}))
            run("Sluice, smoke")
            if not args.skip_flagger:
                set_policy(remote, "Flagger defaults", lambda r: r.update(FLAGGER_POLICY))
                run("Flagger-equivalent (1m × 5)")
            clients.stop.set()
            held = len(clients.answers) / (clients.answers[-1][0] - clients.answers[0][0])
            late = clients.late
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summarize(runs, args, held, late)


def summarize(runs: list[Run], args: argparse.Namespace, held: float, late: int) -> None:
    print("")
    print(
        f"clients: {args.rps:g} rps asked over {args.connections} connections, {held:.1f} rps "
        f"held ({late} requests sent late); faulty version fails {args.error_rate:.0%}"
    )
    print("")
    print(f"{'policy':<30}{'exposure':>10}{'answered by canary':>20}{'failed':>8}{'rollout':>10}")
    for r in runs:
        rate = f" ({r.canary_failed / r.canary_answers:.0%} failed)" if r.canary_answers else ""
        print(
            f"{r.policy:<30}{r.exposure_s:>8.1f} s{f'{r.canary_answers}{rate}':>20}"
            f"{r.failed:>8}{r.seconds:>8.0f} s"
        )
    watched = [r for r in runs if r.policy.startswith("Sluice, watch")]
    exposure = statistics.median(r.exposure_s for r in watched)
    failed = statistics.median(r.failed for r in watched)
    worst = max(watched, key=lambda r: (r.failed, r.exposure_s))
    smoke = next(r for r in runs if r.policy.startswith("Sluice, smoke"))
    flagger = next((r for r in runs if r.policy.startswith("Flagger")), None)
    print(
        f"\nwatch over {len(watched)} runs: median exposure {exposure:.1f} s, median "
        f"{failed:g} failed; worst {worst.exposure_s:.1f} s, {worst.failed} failed"
    )
    if flagger is not None and failed:
        print(
            f"watch vs Flagger-equivalent: {flagger.exposure_s / max(exposure, 0.1):.0f}"
            f"× shorter exposure, {flagger.failed / failed:.0f}× fewer failed requests"
        )
    met = (
        exposure <= GOAL_EXPOSURE_S
        and failed <= GOAL_FAILED
        and smoke.failed == 0
        and smoke.canary_answers == 0
    )
    print(
        f"goal (watch, median: exposure ≤ {GOAL_EXPOSURE_S:g} s and ≤ {GOAL_FAILED} failed at "
        f"{args.rps:g} rps; smoke: 0 failed): {'met' if met else 'NOT met'} "
        f"(watch {exposure:.1f} s, {failed:g} failed; smoke {smoke.failed} failed)"
    )


if __name__ == "__main__":
    main()
