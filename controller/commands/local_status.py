"""``sluice local status`` and the stack's status page: what the local target runs, shown.

:mod:`controller.local.runtime` writes the Argo CD Application, the InferenceServices and the
InferenceGraphs to its state file; ``run_status`` prints them, as a table for people or as
KServe- and Argo CD-shaped JSON for scripts. ``run_status_page`` is the stack's status page
component (the hidden ``sluice local serve-page``): ``sluice serve``'s page, read-only, and
nothing else.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from controller.commands.local_state import local_root
from controller.local.stack import (
    component_states,
)
from controller.local.state import read_json
from controller.settings import Settings

if TYPE_CHECKING:  # both import the rollout policy and its statistics (scipy): seconds
    pass

__all__ = ["run_status", "run_status_page"]


def run_status(settings: Settings, *, as_json: bool, console: Console) -> None:
    """Print each InferenceService and InferenceGraph, the Application and component
    liveness."""
    from controller.local.runtime import RUNTIME_FILE

    root = local_root(settings)
    runtime = read_json(root / RUNTIME_FILE) or {}
    components = component_states(root)
    entries = runtime.get("inferenceServices") or {}
    graphs = runtime.get("inferenceGraphs") or {}
    app = runtime.get("application")
    if as_json:
        document = {
            "components": components,
            "applications": [app] if app else [],
            "inferenceServices": [entry["object"] for entry in entries.values()],
            "inferenceGraphs": [entry["object"] for entry in graphs.values()],
        }
        console.print_json(json.dumps(document))
        return
    app_status = (app or {}).get("status", {})
    for name, entry in sorted(entries.items()):
        console.print(_isvc_table(name, entry, runtime.get("env", "?"), app_status))
    for name, entry in sorted(graphs.items()):
        console.print(_graph_table(name, entry, runtime.get("env", "?"), app_status))
    if app_status.get("operationState", {}).get("phase") == "Failed":
        console.print(f"last sync failed: {app_status['operationState'].get('message', '')}")
    table = Table("component", "state", "pid", "url", title="local stack")
    for name, entry in components.items():
        table.add_row(name, entry["state"], str(entry.get("pid") or "-"), entry.get("url", ""))
    console.print(table)


def _sync_cell(kind: str, name: str, app: dict[str, Any]) -> str:
    """Argo CD's own sync status of this resource (another one's refusal leaves it Synced)
    and the synced commit."""
    sync = app.get("sync", {})
    resources: list[dict[str, Any]] = app.get("resources") or []
    resource = next(
        (r for r in resources if r.get("name") == name and r.get("kind", kind) == kind), {}
    )
    state = resource.get("status") or sync.get("status", "Unknown")
    return f"{state} {str(sync.get('revision', ''))[:7]}"


def _isvc_table(name: str, entry: dict[str, Any], env: str, app: dict[str, Any]) -> Table:
    status = entry["object"].get("status", {})
    predictor = status.get("components", {}).get("predictor", {})
    traffic = ", ".join(
        f"{t.get('revisionName', '?')} {t['percent']}%" + (f" ({t['tag']})" if t.get("tag") else "")
        for t in predictor.get("traffic", [])
    )
    shadow = entry.get("shadow") or {}
    mirrored = f"{shadow.get('percent', 100):g}% of {shadow.get('primary') or '?'}'s requests"
    table = Table("field", "value", title=f"InferenceService {name}", show_header=False)
    rows = {
        "environment": env,
        "sync": _sync_cell("InferenceService", name, app),
        "health": entry.get("health", {}).get("status", "Unknown"),
        "message": entry.get("message") or "-",
        "latestCreated": predictor.get("latestCreatedRevision", "-"),
        "latestReady": predictor.get("latestReadyRevision", "-"),
        "latestRolledout": predictor.get("latestRolledoutRevision", "-"),
        "previousRolledout": predictor.get("previousRolledoutRevision", "-"),
        "traffic": traffic or "-",
        "shadow": f"{shadow['revision']} ({mirrored})" if shadow.get("revision") else "-",
        "url": entry.get("url") or "-",  # none until it has served
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def _graph_table(name: str, entry: dict[str, Any], env: str, app: dict[str, Any]) -> Table:
    obj = entry["object"]
    nodes = (obj.get("spec") or {}).get("nodes") or {}
    services = dict.fromkeys(
        step["serviceName"]
        for node in nodes.values()
        for step in node.get("steps") or []
        if step.get("serviceName")
    )
    conditions: list[dict[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    table = Table("field", "value", title=f"InferenceGraph {name}", show_header=False)
    rows = {
        "environment": env,
        "sync": _sync_cell("InferenceGraph", name, app),
        "health": entry.get("health", {}).get("status", "Unknown"),
        "message": entry.get("message") or "-",
        "ready": ready.get("status", "-"),
        "nodes": ", ".join(f"{n} ({node.get('routerType', '?')})" for n, node in nodes.items())
        or "-",
        "services": ", ".join(services) or "-",
        "url": entry.get("url") or "-",  # none until it is Ready
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def run_status_page(settings: Settings, *, env: str, host: str, port: int) -> None:
    """Serve the status page of ``sluice serve`` for ``env`` on ``host:port`` until SIGTERM or
    SIGINT: ``GET /`` and ``GET /healthz``, nothing else (no watcher, proposal, rollout or hook).

    ``sluice local up`` runs it (``sluice local serve-page``) with the stack's remote, MLflow and
    Prometheus in ``settings``. It answers ``/healthz`` at once and draws a first page in the
    background, since the page's code (the rollout's, with scipy) takes seconds to import.
    """
    from controller.serve.server import Handler, Route, SluiceServer, health_route, page_route

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("sluice.status_page")
    lock = threading.Lock()
    built: list[Callable[[], str]] = []
    drawn = threading.Event()

    def render() -> str:
        with lock:
            if not built:
                from controller.commands.status import build_status_page

                built.append(
                    build_status_page(
                        settings, remote=settings.git_remote, target="local", environments=[env]
                    )
                )
        page = built[0]()
        drawn.set()
        return page

    def warm() -> None:
        try:
            render()
        except Exception as exc:  # the page shows it again at its first request
            log.warning("the first page failed: %s", " ".join(str(exc).split()))

    routes: dict[Route, Handler] = {
        ("GET", "/"): page_route(render),
        ("GET", "/healthz"): health_route(
            lambda: {"environment": env, "page": "drawn" if drawn.is_set() else "not drawn yet"}
        ),
    }
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    with SluiceServer(routes, host=host, port=port) as server:
        log.info("status page of %s: %s/ (GitOps remote %s)", env, server.url, settings.git_remote)
        threading.Thread(target=warm, name="sluice-page-warmup", daemon=True).start()
        stop.wait()
