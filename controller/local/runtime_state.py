"""``runtime.json``: what the local runtime saves each pass, and how a restart resumes from it.

A cluster keeps its objects in the API server; the local runtime keeps them in one JSON file
(:data:`RUNTIME_FILE` in its state directory), which ``sluice local status``, the rollout's
:class:`~controller.local.target.LocalTarget` and the demo read, and from which a restarted
runtime resumes with the same revisions, router ports and statuses:

- ``application``: the Argo CD Application (:mod:`controller.local.sync`);
- ``inferenceServices``: per InferenceService its object (with ``status``), health, one-line
  ``message``, revisions, router ``url`` (once it has served) and shadow;
- ``inferenceGraphs``: per InferenceGraph its object (``status`` once KServe wrote one), health,
  ``message``, ``url`` (once ``Ready``) and the router's deployment (``counter``, ``deployed``);
- ``ports`` (routers, InferenceGraphs' keyed ``InferenceGraph/<name>``), ``servers`` (model
  server processes), ``scrapeTargets``, and the runtime's ``pid`` and ``heartbeat``.

Why a module of its own: the file's shape is a contract with its readers, kept in one place,
apart from the loop that writes it (:mod:`controller.local.runtime`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from controller.local.applied import InferenceServiceRuntime
from controller.local.graph_plane import AppliedGraph, GraphPlane
from controller.local.kserve_plane import KServePlane, namespace_of
from controller.local.mirror import ShadowTarget
from controller.local.revisions import RevisionRecord
from controller.local.state import utc_now

__all__ = ["RUNTIME_FILE", "resume_graphs", "resume_inference_services", "runtime_document"]

RUNTIME_FILE = "runtime.json"
_MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec")


def runtime_document(
    *,
    remote: str,
    env: str,
    application: dict[str, Any],
    plane: KServePlane,
    graphs: GraphPlane,
) -> dict[str, Any]:
    """Everything a restarted runtime or ``sluice local status`` needs, as saved."""
    return {
        "pid": os.getpid(),
        # What a controller may send to make it fetch at once (older runtimes: none).
        "refreshSignal": "SIGUSR1",
        "heartbeat": utc_now(),
        "remote": remote,
        "env": env,
        "application": application,
        "ports": plane.ports,
        "servers": plane.servers.running(),
        "scrapeTargets": plane.scrape_targets(graphs.router_ports()).to_dict(),
        "inferenceServices": {
            name: _isvc_entry(isvc, plane.shadows.get(name)) for name, isvc in plane.isvcs.items()
        },
        "inferenceGraphs": {name: _graph_entry(graph) for name, graph in graphs.graphs.items()},
    }


def _isvc_entry(isvc: InferenceServiceRuntime, shadow: ShadowTarget | None) -> dict[str, Any]:
    return {
        "object": isvc.to_object(),
        "health": isvc.health,
        # One line for `sluice local status`: why it does not serve, and the fix.
        "message": isvc.problem,
        "refused": isvc.refused,
        "counter": isvc.counter,
        "revisions": [r.to_dict() for r in isvc.records],
        # Its address once it has served (KServe sets status.url then): an InferenceService
        # with no model yet has nothing to offer there.
        "url": isvc.router.url if isvc.status.get("url") else None,
        "shadow": _shadow_dict(shadow),
    }


def _graph_entry(graph: AppliedGraph) -> dict[str, Any]:
    return {
        "object": graph.to_object(),
        "health": graph.health,
        "message": graph.problem,
        "refused": graph.refused,
        "counter": graph.counter,
        "deployed": graph.deployed,
        # KServe sets status.url while the graph is Ready.
        "url": graph.router.url if (graph.status or {}).get("url") else None,
    }


def _shadow_dict(target: ShadowTarget | None) -> dict[str, Any] | None:
    """The shadow as ``runtime.json`` and ``sluice local status`` show it."""
    if target is None:
        return None
    keys = ("revision", "percent", "primary", "version")
    return {key: getattr(target, key) for key in keys}


def _manifest(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in _MANIFEST_KEYS if k in obj}


def resume_inference_services(plane: KServePlane, saved: Mapping[str, Any]) -> None:
    """Take back the saved InferenceServices, each with its router on its port; every revision
    must load again to count as ready."""
    for name, entry in (saved.get("inferenceServices") or {}).items():
        obj = entry["object"]
        document = _manifest(obj)
        records = [RevisionRecord.from_dict(r) for r in entry.get("revisions", [])]
        for record in records:
            record.was_ready = False  # it must load again to count as ready
        status = obj.get("status") or {}
        plane.isvcs[name] = InferenceServiceRuntime(
            document,
            plane.router(name, namespace_of(document)),
            records,
            counter=int(entry.get("counter", len(records))),
            generation=int(obj.get("metadata", {}).get("generation", 1)),
            status=status,
            refused=str(entry.get("refused") or ""),
            resuming={
                str(t.get("revisionName"))
                for t in status.get("components", {}).get("predictor", {}).get("traffic", [])
                if t.get("percent")
            },
        )


def resume_graphs(graphs: GraphPlane, saved: Mapping[str, Any]) -> None:
    """Take back the saved InferenceGraphs, each with its router on its port; the first pass
    deploys each again under the revision it had."""
    for entry in (saved.get("inferenceGraphs") or {}).values():
        obj = entry["object"]
        document = _manifest(obj)
        graphs.resume(
            AppliedGraph(
                document,
                graphs.new_router(document),
                generation=int(obj.get("metadata", {}).get("generation", 1)),
                status=obj.get("status"),
                refused=str(entry.get("refused") or ""),
                counter=int(entry.get("counter") or 0),
                deployed=str(entry.get("deployed") or ""),
            )
        )
