"""The local stack (``sluice local up``) serving ``fraud-detector`` for rollouts end to end.

``Loop`` runs ``sluice rollout`` as a user does, from the stack's working directory, and reads
what Git, the registry and the router say (its proposals verify provenance where the
environment requires it, as ``sluice propose`` does); ``Traffic`` is the clients of the main route.
``started_stack`` seeds a GitOps remote with this repository's manifests and a policy and
starts the stack on it; ``serving_stack`` also serves v1 to clients. Used by
``tests/test_rollout_local.py``, ``tests/test_local_runtime_raw.py`` and
``tests/test_rollout_shadow_local.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from mlflow import MlflowClient

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_registry import MlflowRegistry
from controller.demo.gitops_remote import merge_branch
from controller.local.stack import StackRequest, down, up
from controller.local.state import read_json, stop_pid
from controller.manifests.manifest import load_pin, read_release
from controller.null_ports import NoForge
from controller.proposals.propose import ProposalRequest, propose
from support.gitops_repo import commit_to_remote, seed_manifests
from support.gitrepo import GitRemote, create_git_remote, git
from support.registry import register_version

__all__ = [
    "MODEL",
    "PIN",
    "Loop",
    "Traffic",
    "faulty",
    "quick_policy",
    "serving_stack",
    "set_policy",
    "started_stack",
    "wait_for",
]

MODEL = "fraud-detector"
PIN = "manifests/overlays/local/fraud-detector.yaml"


@dataclass
class Traffic:
    """Clients of the InferenceService's main route, counting answers per revision."""

    url: str
    seen: Counter[tuple[str, int]] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    #: When (epoch seconds) each revision first answered a client.
    first: dict[str, float] = field(default_factory=dict)

    def run(self) -> None:
        session = requests.Session()
        payload = {"instances": [{"amount": 42.0, "hour": 3}]}
        while not self.stop.is_set():
            try:
                answer = session.post(
                    f"{self.url}/v1/models/{MODEL}:predict", json=payload, timeout=10
                )
                revision = answer.headers.get("X-Sluice-Revision", "?")
                self.first.setdefault(revision, time.time())
                self.seen[(revision, answer.status_code)] += 1
            except requests.RequestException:
                self.seen[("?", 0)] += 1
            time.sleep(0.03)

    def failures(self) -> int:
        return sum(n for (_, code), n in self.seen.items() if code >= 500 or code == 0)


@dataclass
class Loop:
    root: Path
    remote: GitRemote
    tracking_uri: str
    traffic: Traffic
    stack: StackRequest

    def stop_prometheus(self) -> None:
        entry = (read_json(self.stack.root / "stack.json") or {})["prometheus"]
        assert stop_pid(entry["pid"], *entry["markers"])

    def start_prometheus(self) -> None:
        """`sluice local up` again: it restarts the stopped component on its port."""
        assert up(self.stack)["prometheus"]["state"] == "running"

    def analysis(self, version: int) -> dict[str, object]:
        tags = MlflowClient(self.tracking_uri).get_model_version(MODEL, str(version)).tags
        return dict(json.loads(tags.get("sluice.analysis.local", "{}")))

    def propose_and_merge(self, version: int) -> None:
        result = propose(  # as `sluice propose` does: a rolled-back version may come again,
            # and an environment that requires provenance verifies it first
            ProposalRequest(model=MODEL, environment="local", version=version, restart_merged=True),
            registry=MlflowRegistry(self.tracking_uri),
            workspace=GitWorkspace(self.remote.url, self.root / "propose-git"),
            forge=NoForge(),
            attestations=MlflowAttestations(self.tracking_uri),
        )
        merge_branch(self.remote.path, result.branch)

    def rollout_env(self) -> dict[str, str]:
        """The user's environment: no SLUICE_STATE_DIR, so the default, relative `.sluice` of
        the working directory (``root``, see :meth:`run`) holds the state (a good model was
        once rolled back because only tests set an absolute state dir)."""
        environment = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri}
        environment.pop("SLUICE_STATE_DIR", None)
        return environment

    def run(self, command: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """``command`` as a user runs it: from ``root``, with :meth:`rollout_env`."""
        return subprocess.run(
            command, env=self.rollout_env(), cwd=self.root, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def rollout_command(self) -> list[str]:
        return [sys.executable, "-m", "controller", "rollout", MODEL, "--env", "local",
                "--target", "local", "--repo", self.remote.url]  # fmt: skip

    def rollout(self) -> subprocess.CompletedProcess[str]:
        return self.run(self.rollout_command(), timeout=400)

    def subjects(self) -> list[str]:
        return git("log", "--format=%s", "main", cwd=self.remote.path).splitlines()

    def committed_at(self, subject: str) -> int:
        """When the newest commit on main with ``subject`` was made (epoch seconds)."""
        log = git("log", "--format=%ct %s", "main", cwd=self.remote.path).splitlines()
        return next(int(line.split(" ", 1)[0]) for line in log if line.split(" ", 1)[1] == subject)

    def smoke_report(self, version: int) -> list[dict[str, object]]:
        """Locust's statistics of the smoke of ``version``, kept where `sluice rollout` keeps
        its reports (the default state directory of the working directory)."""
        path = self.root / ".sluice" / "reports" / f"local-{MODEL}-v{version}-smoke" / "locust.json"
        return list(json.loads(path.read_text()))

    def pin(self) -> tuple[int | None, int | None]:
        text = git("show", f"main:{PIN}", cwd=self.remote.path)
        release = read_release(load_pin(text, source=PIN))
        return release.version, release.canary_percent


def quick_policy(tree: Path) -> None:
    """The local overlay's policy with shorter intervals and load tests, to keep the suite fast,
    and Knative 1.18's metric names."""
    path = tree / "manifests" / "overlays" / "local" / "sluice.yaml"
    text = path.read_text()
    for old, new in (
        ("  gates:\n", "  gates:\n    metricsProfile: knative-opencensus\n"),
        ("interval: 8", "interval: 4"),
        ("duration: 5", "duration: 3"),
        ("minRequests: 50", "minRequests: 30"),
        # Three-second load tests give fewer requests a look; the outage test also spends one
        # look with Prometheus down. A fourth look leaves room for the judge to decide.
        ("maxLooks: 3", "maxLooks: 4"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


def wait_for(what: str, check: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@contextmanager
def started_stack(
    root: Path, policy: Callable[[Path], None], message: str, *, local: Path | None = None
) -> Iterator[Loop]:
    """The local stack on a remote seeded with this repository's manifests and then ``policy``
    (committed with ``message``), its state in ``local`` (by default ``root/.sluice/local``,
    where `sluice local up` run in ``root`` puts it: the rollouts run from ``root`` with the
    default state dir, as a user runs them, see :meth:`Loop.run`). Nothing is registered or
    served yet; the stack is brought down on exit."""
    remote = create_git_remote(root)
    seed_manifests(remote, root / "seed", model=MODEL)
    commit_to_remote(remote, root / "policy", message, policy)
    local = local or root / ".sluice" / "local"
    request = StackRequest(root=local, remote=remote.url, env="local", poll_interval=1.0)
    components = up(request)
    try:
        yield Loop(root, remote, str(components["mlflow"]["url"]), Traffic(""), request)
    finally:
        down(local)


def router_url(local: Path) -> str | None:
    """The main route of ``MODEL`` once a revision of it is ready."""
    entry = ((read_json(local / "runtime.json") or {}).get("inferenceServices") or {}).get(MODEL)
    status = (entry or {}).get("object", {}).get("status", {})
    ready = status.get("components", {}).get("predictor", {}).get("latestReadyRevision")
    return str(entry["url"]) if entry and ready else None


@contextmanager
def serving_stack(root: Path, policy: Callable[[Path], None], message: str) -> Iterator[Loop]:
    """:func:`started_stack` serving v1 of a small model, with clients sending it traffic."""
    with started_stack(root, policy, message) as loop:
        register_version(loop.tracking_uri, MODEL, input_example=True)
        loop.propose_and_merge(1)
        wait_for("v1 to serve", lambda: router_url(loop.stack.root))
        traffic = loop.traffic = Traffic(str(router_url(loop.stack.root)))
        threading.Thread(target=traffic.run, daemon=True).start()
        try:
            yield loop
        finally:
            traffic.stop.set()


def faulty(loop: Loop, *, error_rate: float, latency_ms: float) -> int:
    """Register a version of ``MODEL`` that fails ``error_rate`` of its requests and answers
    ``latency_ms`` slower than v1; its number."""
    done = subprocess.run(
        [sys.executable, "-m", "models.faulty.register", "--base-model", MODEL,
         "--base-version", "1", "--error-rate", str(error_rate), "--latency-ms", str(latency_ms)],
        env={**os.environ, "MLFLOW_TRACKING_URI": loop.tracking_uri},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return int(done.stdout.strip().splitlines()[-1])


def set_policy(loop: Loop, name: str, **fields: str | None) -> None:
    """Replace top-level ``rollout:`` fields of the local policy (``interval``, ``smoke``...);
    None removes the field, so its default applies again."""

    def change(tree: Path) -> None:
        path = tree / "manifests" / "overlays" / "local" / "sluice.yaml"
        lines = path.read_text().splitlines()
        start = lines.index("rollout:") + 1
        for key, value in fields.items():
            kept = [i for i, line in enumerate(lines) if line.startswith(f"  {key}:")]
            for index in reversed(kept):
                del lines[index]
                while index < len(lines) and lines[index].startswith("    "):
                    del lines[index]  # the old value's block
            if value is not None:
                lines.insert(start, f"  {key}: {value}")
        path.write_text("\n".join(lines) + "\n")

    commit_to_remote(loop.remote, loop.root / f"policy-{name}", f"Policy for {name}", change)
