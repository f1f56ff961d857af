"""A local runtime's ``runtime.json``, written without running one.

The objects are built with the runtime's own pure pieces, as ``tests/test_local_target.py``
does: KServe's status logic for each InferenceService (:func:`isvc_entry`) and InferenceGraph
(:func:`graph_entry`), Argo CD's Application bookkeeping and health check. One sleeping process
whose command line carries the runtime's markers stands in for a live runtime
(:func:`standin_runtime`), so the local target trusts the file as it trusts a running one's.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controller.backends.argocd_health import inferencegraph_health, inferenceservice_health
from controller.local.graph import graph_status
from controller.local.kserve_status import (
    PredictorSpec,
    PreviousStatus,
    Revision,
    RevisionState,
    reconcile_status,
)
from controller.local.state import pid_matches, write_json
from controller.local.sync import (
    ResourceResult,
    application_health,
    new_application,
    operation_finished,
    operation_started,
)
from controller.local.target import RUNTIME_FILE

__all__ = [
    "NOW",
    "graph_entry",
    "isvc_entry",
    "ready",
    "revision_names",
    "standin_runtime",
    "write_runtime",
]

#: The time stamped on every condition.
NOW = "2026-11-23T10:00:00Z"
_MARKER = "controller.local.runtime"


@contextmanager
def standin_runtime(root: Path) -> Iterator[int]:
    """A process whose command line carries the markers `sluice local up` starts the runtime
    of ``root`` (the local target's state directory) with; its pid, killed after."""
    sleeper = subprocess.Popen(
        [
            *(sys.executable, "-S", "-c", "import time; time.sleep(600)"),
            *(_MARKER, "--state-dir", str(root)),
        ]
    )
    try:
        # Until the child has exec'd, /proc/PID/cmdline is still the parent's: wait for it.
        deadline = time.monotonic() + 30
        while not pid_matches(sleeper.pid, _MARKER, str(root)):
            assert time.monotonic() < deadline, "the stand-in runtime never started"
            time.sleep(0.05)
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def revision_names(name: str, count: int) -> list[str]:
    """The first ``count`` revisions of InferenceService ``name``."""
    return [f"{name}-predictor-{k:05d}" for k in range(1, count + 1)]


def isvc_entry(
    name: str,
    spec: PredictorSpec,
    revisions: list[Revision],
    *,
    url: str,
    annotations: Mapping[str, str],
    passes: int = 2,
    namespace: str = "models-local",
) -> dict[str, Any]:
    """The runtime's entry for InferenceService ``name`` after ``passes`` KServe passes over
    ``revisions``: the first pass sees only the first revision with no canary percent (the
    first rollout), the others ``spec``."""
    status = reconcile_status(name, PredictorSpec(), revisions[:1], PreviousStatus(), now=NOW)
    for _ in range(passes - 1):
        status = reconcile_status(
            name,
            spec,
            revisions,
            PreviousStatus.from_dict(status.status),
            now=NOW,
            url=url,
            namespace=namespace,
            generation=2,
        )
    obj = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": dict(annotations),
            "generation": 2,
        },
        "spec": {"predictor": {"canaryTrafficPercent": spec.canary_traffic_percent}},
        "status": status.status,
    }
    health = inferenceservice_health(obj)
    return {
        "object": obj,
        "health": {"status": health.status, "message": health.message},
        "counter": len(revisions),
        "revisions": [],
        "url": url,
    }


def ready(name: str, count: int) -> list[Revision]:
    """``count`` revisions of ``name``, each serving."""
    return [Revision(r, RevisionState.READY) for r in revision_names(name, count)]


def graph_entry(
    graph: Mapping[str, Any], services_ready: Mapping[str, bool], *, url: str
) -> dict[str, Any]:
    """The runtime's entry for an InferenceGraph after one KServe reconcile with
    ``services_ready`` (each member's predictor endpoint), its router at ``url``."""
    obj = copy.deepcopy(dict(graph))
    status = graph_status(obj, services_ready, None, now=NOW, url=url)
    if status is not None:
        obj["status"] = status
    health = inferencegraph_health(obj)
    return {
        "object": obj,
        "health": {"status": health.status, "message": health.message},
        "url": (status or {}).get("url"),
    }


def write_runtime(
    root: Path,
    *,
    pid: int,
    env: str,
    remote: str,
    synced: str,
    isvcs: Mapping[str, dict[str, Any]],
    graphs: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Write ``root/runtime.json`` as the runtime saves it after syncing commit ``synced`` of
    ``remote``'s ``manifests/overlays/ENV``, which applied ``isvcs`` and ``graphs``."""
    graphs = graphs or {}
    app = new_application(env, remote, "main", f"manifests/overlays/{env}")
    operation_started(app, synced, NOW)
    applied = [ResourceResult(n, "models-local", "applied") for n in isvcs]
    applied += [ResourceResult(n, "models-local", "applied", kind="InferenceGraph") for n in graphs]
    operation_finished(app, synced, NOW, applied)

    def healths(entries: Mapping[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
        return {n: (e["health"]["status"], e["health"]["message"]) for n, e in entries.items()}

    application_health(app, healths(isvcs), graphs=healths(graphs))
    write_json(
        root / RUNTIME_FILE,
        {
            "pid": pid,
            "heartbeat": NOW,
            "remote": remote,
            "env": env,
            "application": app,
            "ports": {},
            "servers": {},
            "inferenceServices": dict(isvcs),
            "inferenceGraphs": dict(graphs),
        },
    )
