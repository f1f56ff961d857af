"""Argo CD's part of the local target: render an environment at a commit, keep its status.

Argo CD compares the branch tip with what it last synced, renders the overlay at that commit
with kustomize, applies the result and records the outcome on its Application: ``sync``
(Synced / OutOfSync / Unknown and the revision), ``operationState`` (Running, then Succeeded
or Failed with a message) and ``history`` (one entry per successful sync, the last ten kept).
A render that fails leaves the cluster as it was. The Application is a plain dict here so
that ``sluice local status --json`` prints what Argo CD's API would.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.errors import ManifestInvalid
from controller.render import render_overlay

__all__ = [
    "HISTORY_LIMIT",
    "application_health",
    "new_application",
    "operation_failed",
    "operation_started",
    "operation_succeeded",
    "render_at",
    "set_comparison",
    "worst_health",
]

HISTORY_LIMIT = 10  # Argo CD's default revisionHistoryLimit


def render_at(git_dir: Path, sha: str, overlay: str) -> list[dict[str, Any]]:
    """The InferenceServices ``kubectl kustomize OVERLAY`` renders from the tree at ``sha``.

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
        documents = render_overlay(directory)
    return [d for d in documents if d.get("kind") == "InferenceService"]


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
    target["status"] = "Synced" if synced == head else "OutOfSync"


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


def operation_failed(app: dict[str, Any], sha: str, now: str, message: str) -> None:
    """Record a failed sync of ``sha``; what was synced before stays synced (and served)."""
    operation = app["status"]["operationState"]
    operation.update(phase="Failed", message=message, finishedAt=now)
    set_comparison(app, sha)


def worst_health(statuses: list[str]) -> str:
    """Argo CD's aggregate: the worst resource health wins (Healthy when there is none)."""
    order = ("Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown")
    return max(statuses, key=order.index, default="Healthy")


def application_health(app: dict[str, Any], healths: Mapping[str, tuple[str, str]]) -> None:
    """Set ``health`` from each InferenceService's (status, message)."""
    worst = worst_health([status for status, _ in healths.values()])
    messages = [f"{name}: {msg}" for name, (st, msg) in sorted(healths.items()) if st == worst]
    app["status"]["health"] = {"status": worst, "message": "; ".join(messages)[:500]}
