"""Argo CD's part of the local target: render an environment at a commit, keep its status.

Argo CD compares the branch tip with what it last synced, renders the overlay at that commit
with kustomize, applies the result and records the outcome on its Application: ``sync``
(Synced / OutOfSync / Unknown and the revision), ``operationState`` (Running, then Succeeded
or Failed with a message) and ``history`` (one entry per successful sync, the last ten kept).
A render that fails leaves the cluster as it was. The Application is a plain dict here so
that ``sluice local status --json`` prints what Argo CD's API would.

Argo CD applies each resource of a sync on its own (``kubectl apply`` per object, all of one
wave together): one the API server refuses is ``SyncFailed`` in ``syncResult.resources`` and
``OutOfSync`` in ``status.resources``, the others are applied and ``Synced``, the operation is
``Failed`` ("one or more objects failed to apply, reason: ...") and no history entry is added.
Each resource also carries its health; the Application's is the worst of them (a resource that
was never created is ``Missing`` and, having no built-in Go health check, does not count).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import ManifestInvalid
from controller.manifests.render import render_overlay

__all__ = [
    "HISTORY_LIMIT",
    "KIND_VERSIONS",
    "ResourceResult",
    "application_health",
    "new_application",
    "operation_failed",
    "operation_finished",
    "operation_started",
    "operation_succeeded",
    "render_at",
    "set_comparison",
    "worst_health",
]

HISTORY_LIMIT = 10  # Argo CD's default revisionHistoryLimit
_GROUP = "serving.kserve.io"
#: The kinds the local target applies, with their API versions.
KIND_VERSIONS = {"InferenceService": "v1beta1", "InferenceGraph": "v1alpha1"}
_ISVC, _GRAPH = "InferenceService", "InferenceGraph"


@dataclass(frozen=True)
class ResourceResult:
    """What applying one InferenceService (or InferenceGraph, ``kind``) gave: ``kubectl
    apply``'s line, or why the API server refused it (``refused``)."""

    name: str
    namespace: str
    message: str
    refused: bool = False
    kind: str = _ISVC

    def to_dict(self) -> dict[str, str]:
        """The entry of ``operationState.syncResult.resources``."""
        return {
            **_resource_ref(self.name, self.namespace, self.kind),
            "status": "SyncFailed" if self.refused else "Synced",
            "message": self.message,
            "syncPhase": "Sync",
        }


def _resource_ref(name: str, namespace: str, kind: str = _ISVC) -> dict[str, str]:
    return {"group": _GROUP, "version": KIND_VERSIONS[kind], "kind": kind,
            "namespace": namespace, "name": name}  # fmt: skip


def render_at(
    git_dir: Path, sha: str, overlay: str, kinds: Collection[str] = (_ISVC,)
) -> list[dict[str, Any]]:
    """The objects of ``kinds`` (InferenceServices unless it says) ``kubectl kustomize
    OVERLAY`` renders from the tree at ``sha``, in the order rendered.

    The tree is exported with ``git archive`` into a temporary directory, so the workspace's
    own checkout is never touched.
    """
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir}", "archive", "--format=tar", sha],
        capture_output=True,
        check=False,
        timeout=120,
    )
    if archive.returncode != 0:
        detail = archive.stderr.decode(errors="replace").strip().splitlines()
        raise ManifestInvalid(f"git archive {sha[:12]} failed: {detail[-1] if detail else '?'}")
    with tempfile.TemporaryDirectory(prefix="sluice-sync-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        directory = Path(tmp) / overlay
        if not directory.is_dir():
            raise ManifestInvalid(
                f"{overlay} does not exist at {sha[:12]}; create the overlay or fix --env"
            )
        documents = render_overlay(directory, tree=Path(tmp))
    return [d for d in documents if d.get("kind") in kinds]


def new_application(env: str, repo_url: str, branch: str, overlay: str) -> dict[str, Any]:
    """An Application for one environment that has not been compared yet."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": env},
        "spec": {"source": {"repoURL": repo_url, "path": overlay, "targetRevision": branch}},
        "status": {
            "sync": {"status": "Unknown", "revision": ""},
            "health": {"status": "Missing", "message": ""},
            "history": [],
        },
    }


def set_comparison(app: dict[str, Any], head: str | None, error: str = "") -> None:
    """Compare the branch tip with the synced revision (``head`` None: remote unreadable)."""
    status = app["status"]
    synced = status.get("operationState", {}).get("syncResult", {}).get("revision", "")
    if head is None or error:
        status["sync"] = {"status": "Unknown", "revision": synced}
        status["conditions"] = [{"type": "ComparisonError", "message": error or "no branch"}]
        return
    status.pop("conditions", None)
    target = status["sync"]
    target["comparedTo"] = {"source": app["spec"]["source"], "revision": head}
    target["revision"] = synced or head
    every = all(r.get("status") == "Synced" for r in status.get("resources") or ())
    target["status"] = "Synced" if synced == head and every else "OutOfSync"


def operation_started(app: dict[str, Any], sha: str, now: str) -> None:
    """Record a sync of ``sha`` as Running."""
    previous = app["status"].get("operationState", {})
    app["status"]["operationState"] = {
        "phase": "Running",
        "message": f"syncing {sha[:12]}",
        "operation": {"sync": {"revision": sha}},
        "syncResult": previous.get("syncResult", {"revision": ""}),
        "startedAt": now,
    }


def operation_succeeded(app: dict[str, Any], sha: str, now: str, applied: list[str]) -> None:
    """Record a successful sync of ``sha``: Succeeded, Synced, one more history entry."""
    status = app["status"]
    operation = status["operationState"]
    operation.update(
        phase="Succeeded",
        message=f"successfully synced (applied {', '.join(applied) or 'nothing'})",
        syncResult={"revision": sha, "source": app["spec"]["source"]},
        finishedAt=now,
    )
    history = list(status.get("history", []))
    history.append(
        {
            "id": (history[-1]["id"] + 1) if history else 0,
            "revision": sha,
            "deployStartedAt": operation["startedAt"],
            "deployedAt": now,
            "source": app["spec"]["source"],
            "initiatedBy": {"automated": True},
        }
    )
    status["history"] = history[-HISTORY_LIMIT:]
    set_comparison(app, sha)


def operation_finished(
    app: dict[str, Any], sha: str, now: str, results: list[ResourceResult]
) -> None:
    """Record the sync of ``sha`` that applied each of ``results``: Succeeded when none was
    refused; else Failed, naming each refusal, with the applied ones Synced all the same."""
    status = app["status"]
    health = {
        (r.get("kind"), r["name"]): r["health"]
        for r in status.get("resources") or ()
        if r.get("health")
    }
    status["resources"] = [
        {
            **_resource_ref(r.name, r.namespace, r.kind),
            "status": "OutOfSync" if r.refused else "Synced",
            **({"health": health[(r.kind, r.name)]} if (r.kind, r.name) in health else {}),
        }
        for r in sorted(results, key=lambda r: (r.kind, r.namespace, r.name))
    ]
    refused = [r.message for r in results if r.refused]
    if not refused:
        operation_succeeded(app, sha, now, [r.name for r in results])
    else:
        status["operationState"].update(
            phase="Failed",
            message=f"one or more objects failed to apply, reason: {'; '.join(refused)}",
            syncResult={"revision": sha, "source": app["spec"]["source"]},
            finishedAt=now,
        )
        set_comparison(app, sha)
    status["operationState"]["syncResult"]["resources"] = [r.to_dict() for r in results]


def operation_failed(app: dict[str, Any], sha: str, now: str, message: str) -> None:
    """Record a failed sync of ``sha``; what was synced before stays synced (and served)."""
    operation = app["status"]["operationState"]
    operation.update(phase="Failed", message=message, finishedAt=now)
    set_comparison(app, sha)


def worst_health(statuses: list[str]) -> str:
    """Argo CD's aggregate: the worst resource health wins (Healthy when there is none)."""
    order = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
    return max(statuses, key=order.index, default="Healthy")


def application_health(
    app: dict[str, Any],
    healths: Mapping[str, tuple[str, str]],
    live: Collection[str] | None = None,
    *,
    graphs: Mapping[str, tuple[str, str]] | None = None,
    live_graphs: Collection[str] | None = None,
) -> None:
    """Set ``health`` from each InferenceService's (status, message) and each InferenceGraph's
    (``graphs``), and each resource's.

    ``live`` (``live_graphs``) names the InferenceServices (InferenceGraphs) that exist: a
    resource of the Application that is not among them (refused before it was ever created) is
    Missing, which Argo CD leaves out of the Application's health for a kind without a built-in
    Go health check.
    """
    by_kind = {_ISVC: (healths, live), _GRAPH: (graphs or {}, live_graphs)}
    for resource in app["status"].get("resources") or ():
        name = resource.get("name")
        known, existing = by_kind.get(resource.get("kind", _ISVC), ({}, None))
        if name in known:
            status, message = known[name]
            resource["health"] = {"status": status, "message": message}
        elif existing is not None and name not in existing:
            resource["health"] = {"status": "Missing", "message": ""}
    every = [(f"{kind} {n}" if kind == _GRAPH else n, health)
             for kind, (known, _) in by_kind.items() for n, health in known.items()]  # fmt: skip
    worst = worst_health([status for _, (status, _) in every])
    messages = [f"{name}: {msg}" for name, (st, msg) in sorted(every) if st == worst]
    app["status"]["health"] = {"status": worst, "message": "; ".join(messages)[:500]}
