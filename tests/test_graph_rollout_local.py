"""`sluice graph rollout` end to end: the local runtime's graph router, a real Prometheus, Git.

The local runtime serves a Switch graph between two members (real model servers of one small
registered model) and keeps a real Prometheus scraping its routers, as `sluice local up` wires
them; clients keep sending the graph requests. As a user would, from the checkout's directory
with the default state directory: a change of the graph is proposed (`sluice graph propose`),
merged, and walked by `sluice graph rollout` under the example environment's own `sluice.yaml`
(the market-regime overlay's `graphRollout` and checks, releases left out). A healthy change
walks its steps to the promotion by itself; a change whose canary branch answers 500 (its
Switch matches no request, and nested under the canary form's Splitter a miss is a 500) is
rolled back by a commit whose message names the failed check and its numbers.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from support.gitops_repo import ROOT, commit_to_remote
from support.gitrepo import create_git_remote, git
from support.graph_samples import BY_ROUTE_SWITCH, graph
from support.runtime_loop import DEADLINE, KUSTOMIZATION, OVERLAY, Loop, register_uris

from controller.demo.gitops_remote import merge_branch
from controller.local.services import MlflowService, PrometheusService

pytestmark = pytest.mark.slow

GRAPH = "by-route"
GRAPH_FILE = f"{OVERLAY}/graph-{GRAPH}.yaml"
MEMBERS = ("alpha", "beta")
#: The Switch with its members swapped: route a reaches beta (both serve the same model).
SWAPPED = graph(
    GRAPH,
    {
        "root": {
            "routerType": "Switch",
            "steps": [
                {"serviceName": "beta", "condition": '[@this].#(route=="a")'},
                {"serviceName": "alpha", "condition": '[@this].#(route=="b")'},
            ],
        }
    },
)
#: A Switch whose condition no request meets: under the canary form's Splitter, a 500.
NOWHERE = graph(
    GRAPH,
    {
        "root": {
            "routerType": "Switch",
            "steps": [{"serviceName": "alpha", "condition": '[@this].#(route=="nowhere")'}],
        }
    },
)
REQUEST = {"route": "a", "instances": [[42.0, 3]]}


def environment_file() -> str:
    """The example graph environment's sluice.yaml (its graphRollout and its checks), serving
    no model releases here: only the graph is walked."""
    yaml = YAML()
    document = yaml.load((ROOT / "models/market_regime/overlay/sluice.yaml").read_text())
    assert "graphRollout" in document, "the example environment documents its graph policy"
    document["releases"] = []
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def obj(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` without a namespace: the kustomization sets it, as in the example."""
    metadata = {k: v for k, v in document["metadata"].items() if k != "namespace"}
    return {**document, "metadata": metadata}


def serve(loop: Loop) -> None:
    def change(tree: Path) -> None:
        overlay = tree / OVERLAY
        overlay.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in MEMBERS:
            files[f"{name}.yaml"] = {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": name},
                "spec": {
                    "predictor": {
                        "model": {"modelFormat": {"name": "mlflow"}, "storageUri": loop.uris[0]}
                    }
                },
            }
        files[f"graph-{GRAPH}.yaml"] = obj(BY_ROUTE_SWITCH)
        for name, document in files.items():
            (overlay / name).write_text(json.dumps(document, indent=2))
        resources = "".join(f"  - {name}\n" for name in files)
        (overlay / "kustomization.yaml").write_text(KUSTOMIZATION + resources)
        (overlay / "sluice.yaml").write_text(environment_file())

    commit_to_remote(loop.remote, loop.workdir, "Serve two models and a Switch graph", change)


class Clients:
    """Requests to the graph on two threads, back to back, counted by status."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: Counter[int] = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        body = json.dumps(REQUEST).encode()
        while not self.stop.is_set():
            try:
                connection.request("POST", "/", body)
                response = connection.getresponse()
                response.read()
                self.seen[response.status] += 1
            except (OSError, http.client.HTTPException):
                self.seen[0] += 1
                connection.close()
                time.sleep(0.05)

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def wait_for(check: Callable[[], bool], what: str, loop: Loop) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert loop.process is not None
        assert loop.process.alive, loop.process.log_tail()
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.2)


def healthy(loop: Loop) -> bool:
    entry = (loop.state().get("inferenceGraphs") or {}).get(GRAPH) or {}
    return bool(entry.get("health", {}).get("status") == "Healthy")


def sluice(
    root: Path, prometheus: PrometheusService, *args: str
) -> subprocess.CompletedProcess[str]:
    """``sluice ARGS`` as a user runs it in the checkout ``root``: its default state directory
    (``.sluice``, where the runtime keeps its state), the Prometheus of the stack."""
    environment = {**os.environ, "SLUICE_PROMETHEUS_URL": prometheus.url, "COLUMNS": "200"}
    environment.pop("SLUICE_STATE_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True, text=True, env=environment, cwd=root, timeout=300, check=False,
    )  # fmt: skip


def propose_and_merge(
    root: Path, loop: Loop, prometheus: PrometheusService, spec: dict[str, Any], *extra: str
) -> None:
    path = root / f"proposed-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(json.dumps(obj(spec), indent=2))
    done = sluice(
        root, prometheus, "graph", "propose", GRAPH, "--env", "local", "--spec", str(path),
        "--repo", loop.remote.url, "--json", *extra,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    merge_branch(loop.remote.path, json.loads(done.stdout)["branch"])


def rollout(
    root: Path, loop: Loop, prometheus: PrometheusService
) -> subprocess.CompletedProcess[str]:
    return sluice(
        root, prometheus, "graph", "rollout", GRAPH, "--env", "local", "--target", "local",
        "--repo", loop.remote.url,
    )  # fmt: skip


def subjects(loop: Loop) -> list[str]:
    """The subjects of main's first-parent history, newest first."""
    return git("log", "--format=%s", "--first-parent", "main", cwd=loop.remote.path).splitlines()


def committed_graph(loop: Loop) -> Any:
    return YAML(typ="safe").load(git("show", f"main:{GRAPH_FILE}", cwd=loop.remote.path))


def test_a_healthy_graph_change_is_promoted_and_a_failing_one_rolled_back_by_commits(
    mlflow_server: MlflowService,
    prometheus_server: Callable[..., PrometheusService],
    tmp_path: Path,
) -> None:
    uris = register_uris(mlflow_server.tracking_uri, f"graph-{uuid.uuid4().hex[:8]}", count=1)
    root = tmp_path / "checkout"
    root.mkdir()
    loop = Loop(
        create_git_remote(tmp_path), root / ".sluice" / "local", tmp_path / "work", uris,
        mlflow_server.tracking_uri,
    )  # fmt: skip
    prometheus = prometheus_server()
    serve(loop)
    loop.start(poll_interval=1.0, prometheus=prometheus)
    try:
        wait_for(lambda: healthy(loop), f"InferenceGraph {GRAPH} Healthy", loop)
        url = str(loop.state()["inferenceGraphs"][GRAPH]["url"])
        with Clients(url) as clients:
            # A healthy change, proposed at 10 %: 10 % → 50 % → promoted, by itself.
            propose_and_merge(root, loop, prometheus, SWAPPED, "--weight", "10")
            done = rollout(root, loop, prometheus)
            assert done.returncode == 0, done.stdout + done.stderr
            history = subjects(loop)
            assert history[:2] == [
                f"graph {GRAPH}: promoted (local)",
                f"graph {GRAPH}: canary 50% (local)",
            ], history
            assert history[2].startswith(f"Merge sluice/local/graph-{GRAPH}/")
            promoted = git("log", "-1", "--format=%B", "main", cwd=loop.remote.path)
            assert "- [pass] prometheus/request-success-rate: request-success-rate 100%" in (
                promoted
            )
            assert "vs stable 100%" in promoted
            assert committed_graph(loop)["spec"] == SWAPPED["spec"]
            assert "annotations" not in committed_graph(loop)["metadata"]
            healthy_failures = clients.seen[500] + clients.seen[0]

            # A change whose canary branch answers 500: rolled back, the commit says why.
            propose_and_merge(root, loop, prometheus, NOWHERE)  # the policy's first step
            failed = rollout(root, loop, prometheus)
            assert failed.returncode == 1, failed.stdout + failed.stderr
            rollback = git("log", "-1", "--format=%B", "main", cwd=loop.remote.path)
            subject = rollback.partition("\n")[0]
            assert subject.startswith(
                f"rollback graph {GRAPH}: request-success-rate 0% (min 99%)"
            ), subject
            assert "below min 99%" in rollback
            assert "- [FAIL] prometheus/request-success-rate: request-success-rate 0%" in rollback
            assert "vs stable 100%" in rollback
            assert "Sluice-Action: graph-rollback" in rollback
            assert committed_graph(loop)["spec"] == SWAPPED["spec"]  # the promoted graph again
            assert "rollback graph" in failed.stdout
        assert healthy_failures == 0, clients.seen
        assert clients.seen[500] > 0  # the failing canary's share, until its rollback
    finally:
        assert loop.process is not None
        loop.process.stop()
