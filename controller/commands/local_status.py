"""``sluice local status`` and the stack's status page: what the local target runs, shown.

:mod:`controller.local.runtime` writes the Argo CD Application, the InferenceServices and the
InferenceGraphs to its state file; ``run_status`` prints them, as a table for people or as
KServe- and Argo CD-shaped JSON for scripts. ``run_status_page`` is the stack's status page
component (the hidden ``sluice local serve-page``): ``sluice serve``'s page, read-only, and
nothing else. A stack serving several environments (``sluice local up --env staging --env
production``) has a runtime, and a state file, per environment: both show each one.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.commands.local_state import local_root
from controller.local.stack import component_states, runtime_states
from controller.local.state import read_json, runtime_dirs
from controller.settings import Settings

__all__ = ["run_status", "run_status_page"]


def run_status(settings: Settings, *, as_json: bool, console: Console) -> None:
    """Print each environment's InferenceServices, InferenceGraphs and Application, and
    component liveness.

    ``--json`` keeps its first keys for the stack's first (or only) environment, as before the
    stack served several, and adds ``environments``: each one's, by name, the first first."""
    root = local_root(settings)
    components = component_states(root)
    runtimes = _runtimes(root)
    processes = runtime_states(root)
    if as_json:
        sections = {
            env: {
                "stateDir": str(state_dir),
                "runtime": processes.get(env, {}).get("state", "stopped"),
                **_objects(runtime),
            }
            for env, (state_dir, runtime) in runtimes.items()
        }
        first = next(iter(runtimes.values()), (root, {}))[1]
        document = {"components": components, **_objects(first), "environments": sections}
        console.print_json(json.dumps(document))
        return
    several = len(runtimes) > 1
    for env, (_state_dir, runtime) in runtimes.items():
        app_status = (runtime.get("application") or {}).get("status", {})
        for name, entry in sorted((runtime.get("inferenceServices") or {}).items()):
            console.print(_isvc_table(name, entry, runtime.get("env", env), app_status))
        for name, entry in sorted((runtime.get("inferenceGraphs") or {}).items()):
            console.print(_graph_table(name, entry, runtime.get("env", env), app_status))
        if app_status.get("operationState", {}).get("phase") == "Failed":
            where = f" in {env}" if several else ""
            message = app_status["operationState"].get("message", "")
            console.print(f"last sync{where} failed: {message}")
    table = Table("component", "state", "pid", "url", title="local stack")
    rows = dict(components)
    for env, entry in list(processes.items())[1:]:  # the first one's is the `runtime` row
        rows[f"runtime {env}"] = {**entry, "state": entry.get("state", "stopped")}
    for name, entry in rows.items():
        table.add_row(name, entry["state"], str(entry.get("pid") or "-"), entry.get("url", ""))
    console.print(table)


def _runtimes(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each environment's state directory and what its runtime last saved, the first first;
    before ``up`` recorded the environments, the root's alone."""
    from controller.local.runtime_state import RUNTIME_FILE

    dirs = runtime_dirs(root)
    if not dirs:
        saved = read_json(root / RUNTIME_FILE) or {}
        return {str(saved.get("env", "?")): (root, saved)}
    return {env: (path, read_json(path / RUNTIME_FILE) or {}) for env, path in dirs.items()}


def _objects(runtime: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The Application, InferenceServices and InferenceGraphs of one runtime, as ``--json``
    shows them."""
    app = runtime.get("application")
    return {
        "applications": [app] if app else [],
        "inferenceServices": [
            e["object"] for e in (runtime.get("inferenceServices") or {}).values()
        ],
        "inferenceGraphs": [e["object"] for e in (runtime.get("inferenceGraphs") or {}).values()],
    }


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


def run_status_page(
    settings: Settings, *, environments: Sequence[str], host: str, port: int
) -> None:
    """Serve the status page of ``sluice serve`` for ``environments`` (every one the stack
    serves) on ``host:port`` until SIGTERM or SIGINT: ``GET /`` and ``GET /healthz``, nothing
    else (no watcher, proposal, rollout or hook).

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
                        settings,
                        remote=settings.git_remote,
                        target="local",
                        environments=list(environments),
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
            lambda: {
                "environment": environments[0],  # the first, as before the stack served several
                "environments": list(environments),
                "page": "drawn" if drawn.is_set() else "not drawn yet",
            }
        ),
    }
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    with SluiceServer(routes, host=host, port=port) as server:
        log.info(
            "status page of %s: %s/ (GitOps remote %s)",
            ", ".join(environments),
            server.url,
            settings.git_remote,
        )
        threading.Thread(target=warm, name="sluice-page-warmup", daemon=True).start()
        stop.wait()
