"""The local runtime run as a process of its own against a bare Git remote, and its clients.

``Loop`` starts ``controller.local.runtime`` on a remote whose overlay a test commits, reads the
state it writes and waits for a status; ``Client`` and ``Background`` send requests to the
router of an InferenceService and count who answered. ``tests/test_local_runtime.py`` walks
a Serverless rollout with them, ``tests/test_local_runtime_raw.py`` a RawDeployment one and
``tests/test_local_shadow.py`` a shadow phase.
"""

from __future__ import annotations

import copy
import http.client
import json
import math
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
from mlflow import MlflowClient

from controller.local.processes import ManagedProcess
from controller.local.services import PrometheusService
from controller.local.state import read_json
from support.gitops_repo import commit_to_remote
from support.gitrepo import GitRemote, create_git_remote
from support.registry import register_version

__all__ = [
    "DEADLINE",
    "ISVC",
    "KUSTOMIZATION",
    "OVERLAY",
    "R1",
    "R2",
    "SIGMAS",
    "Background",
    "Client",
    "Loop",
    "predictor",
    "register_uris",
    "running",
    "serverless_manifest",
    "split",
    "within_binomial",
]

ISVC = "fraud"
SIGMAS = 4
DEADLINE = 90.0
OVERLAY = "manifests/overlays/local"
KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: models-local
resources:
"""
#: The revisions of ``ISVC``'s first two predictor templates.
R1, R2 = (f"{ISVC}-predictor-0000{k}" for k in (1, 2))


@dataclass
class Loop:
    """The remote, the runtime process and where its state lives."""

    remote: GitRemote
    state_dir: Path
    workdir: Path
    uris: list[str]
    tracking_uri: str
    process: ManagedProcess | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Every status of ``ISVC`` this loop read, once each, for a check against the CRD.
    statuses: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def on_new_remote(
        cls, root: Path, tracking_uri: str, model: str, *, state_dir: Path | None = None
    ) -> Self:
        """A loop on a new bare remote under ``root`` (the runtime's state in ``root/state``
        unless ``state_dir`` says), with two versions of a fresh model ``model-<random>``
        registered in ``tracking_uri``."""
        uris = register_uris(tracking_uri, f"{model}-{uuid.uuid4().hex[:8]}")
        state = root / "state" if state_dir is None else state_dir
        return cls(create_git_remote(root), state, root / "work", uris, tracking_uri)

    def start(
        self, poll_interval: float = 1.0, *, prometheus: PrometheusService | None = None
    ) -> None:
        """Start the runtime; with ``prometheus``, it keeps that Prometheus' config in step with
        its routers and model servers (as `sluice local up` wires them), else it only writes
        :attr:`scrape_config`."""
        config = self.scrape_config if prometheus is None else prometheus.config_file
        argv = [
            *(sys.executable, "-m", "controller.local.runtime"),
            *("--state-dir", str(self.state_dir), "--remote", self.remote.url, "--env", "local"),
            *("--poll-interval", f"{poll_interval:g}", "--mlflow-tracking-uri", self.tracking_uri),
            *("--prometheus-config", str(config)),
        ]
        if prometheus is not None:
            argv += ["--prometheus-url", prometheus.url]
        self.process = ManagedProcess(
            argv, log_path=self.state_dir / "runtime.log", name="local runtime"
        ).start()

    @property
    def scrape_config(self) -> Path:
        return self.state_dir / "prometheus.yml"

    def state(self) -> dict[str, Any]:
        return read_json(self.state_dir / "runtime.json") or {}

    def isvc(self, name: str = ISVC) -> dict[str, Any]:
        entry = self.state().get("inferenceServices", {}).get(name, {})
        status = entry.get("object", {}).get("status")
        if name == ISVC and status and status not in self.statuses:
            self.statuses.append(copy.deepcopy(status))
        return dict(entry)

    def push(
        self,
        message: str,
        uri: str,
        canary: int | None = None,
        others: dict[str, str] | None = None,
    ) -> str:
        """Commit an overlay of ``fraud`` (at ``uri``) and of ``others`` (name: storageUri)."""

        def change(tree: Path) -> None:
            overlay = tree / OVERLAY
            overlay.mkdir(parents=True, exist_ok=True)
            for old in overlay.glob("*.yaml"):
                old.unlink()
            isvcs = {ISVC: (uri, canary), **{n: (u, None) for n, u in (others or {}).items()}}
            for name, (storage_uri, percent) in isvcs.items():
                document = serverless_manifest(name, storage_uri, percent)
                (overlay / f"{name}.yaml").write_text(json.dumps(document, indent=2))
            resources = "".join(f"  - {name}.yaml\n" for name in isvcs)
            (overlay / "kustomization.yaml").write_text(KUSTOMIZATION + resources)

        return commit_to_remote(self.remote, self.workdir, message, change)

    def push_document(self, message: str, document: dict[str, Any]) -> str:
        """Commit an overlay holding ``document`` as ``ISVC``'s manifest (other files stay)."""

        def change(tree: Path) -> None:
            overlay = tree / OVERLAY
            overlay.mkdir(parents=True, exist_ok=True)
            (overlay / f"{ISVC}.yaml").write_text(json.dumps(document, indent=2))
            (overlay / "kustomization.yaml").write_text(f"{KUSTOMIZATION}  - {ISVC}.yaml\n")

        return commit_to_remote(self.remote, self.workdir, message, change)

    def wait(
        self, check: Callable[[dict[str, Any]], bool], what: str, name: str = ISVC
    ) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while True:
            entry = self.isvc(name)
            if entry and check(entry):
                return entry
            if self.process is not None and not self.process.alive:
                pytest.fail(f"the runtime exited: {self.process.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the runtime never showed {what}: {json.dumps(entry)[:2000]}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return str(self.isvc()["url"])


_L = TypeVar("_L", bound=Loop)


@contextmanager
def running(loop: _L) -> Iterator[_L]:
    """``loop``'s runtime started on its remote, whose overlay serves version 1, once revision 1
    takes all the traffic; stopped on leaving."""
    loop.start()
    loop.wait(lambda e: split(e) == {R1: 100}, f"{R1} at 100 %")
    try:
        yield loop
    finally:
        if loop.process is not None:
            loop.process.stop()


def serverless_manifest(
    name: str,
    storage_uri: str,
    canary: int | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Serverless InferenceService ``name`` serving ``storage_uri``, at ``canary`` % when it
    is not None, with ``annotations`` when they are not None."""
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": "mlflow"}, "storageUri": storage_uri}
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    metadata: dict[str, Any] = {"name": name}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


def register_uris(tracking_uri: str, name: str, count: int = 2) -> list[str]:
    """Register ``count`` versions of a fresh model ``name``; their download URIs, in order."""
    client = MlflowClient(tracking_uri)
    uris = []
    for _ in range(count):
        version = register_version(tracking_uri, name, alias=None)
        uris.append(str(client.get_model_version_download_uri(name, str(version))))
    return uris


def predictor(entry: dict[str, Any]) -> dict[str, Any]:
    return dict(entry["object"]["status"].get("components", {}).get("predictor", {}))


def split(entry: dict[str, Any]) -> dict[str, int]:
    """Percent per revision in the status traffic (0 % left out)."""
    out: Counter[str] = Counter()
    for target in predictor(entry).get("traffic", []):
        out[target.get("revisionName", "")] += target["percent"]
    return {name: pct for name, pct in out.items() if pct}


class Client:
    """A keep-alive client of the router that records who served each request."""

    def __init__(self, url: str, model: str = ISVC) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.model = model

    def send(self) -> tuple[int, str]:
        body = json.dumps({"instances": [[42.0, 3]]})
        self.connection.request("POST", f"/v1/models/{self.model}:predict", body)
        response = self.connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Sluice-Revision", "")

    def sample(self, n: int) -> Counter[tuple[int, str]]:
        return Counter(self.send() for _ in range(n))


class Background:
    """Requests sent on another thread while a rollout moves, one every :data:`PAUSE` seconds
    at most (about 100 a second: every routing change is crossed by dozens, and the client
    leaves the router and the model servers their share of the cores)."""

    PAUSE = 0.01

    def __init__(self, url: str) -> None:
        self.seen: Counter[tuple[int, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(Client(url),), daemon=True)

    def _run(self, client: Client) -> None:
        while not self._stop.wait(self.PAUSE):
            self.seen[client.send()] += 1

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p))
