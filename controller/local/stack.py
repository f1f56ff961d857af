"""``sluice local up`` and ``down``: MLflow, Prometheus, Alertmanager and the runtime, supervised.

The stack outlives the command that starts it, so what runs is written to ``stack.json`` in
the state directory: each component's pid, port, URL and the markers its command line must
carry for the pid to still be ours. ``up`` reuses a component that still runs and restarts
one that crashed (same port), ``down`` stops exactly what the file names and nothing else, and
``status`` reports each component as running, crashed or stopped.

Prometheus loads the cluster's rules (:mod:`controller.local.rules` writes the PrometheusRule's
groups to ``prometheus/rules.yml``) and sends alerts to Alertmanager, which posts the retrain
alerts to ``sluice serve``'s hook, so a drift alert takes the path it takes on a cluster.

With :attr:`StackRequest.status_page` (``sluice local up`` asks for it) the stack also serves
the read-only status page of ``sluice serve``: ``sluice local serve-page``, a hidden command that
serves only ``/`` and ``/healthz`` from the stack's GitOps remote, MLflow and Prometheus. It
watches nothing and proposes nothing, so the by-hand loop stays the user's.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import ConfigError, SluiceError
from controller.local.configs import RETRAIN_ALERTS, write_alertmanager_config
from controller.local.mlflow_store import cache_dir, save_template, seed_from_template
from controller.local.processes import ManagedProcess
from controller.local.rules import RULES_MANIFEST, default_rules_manifest, write_local_rules
from controller.local.scrape import (
    ScrapeTargets,
    peer_targets,
    reload_prometheus,
    write_scrape_config,
)
from controller.local.services import (
    LocalService,
    MlflowService,
    start_alertmanager,
    start_mlflow,
    start_prometheus,
    start_status_page,
)
from controller.local.stable_ports import stable_free_port
from controller.local.state import (
    REMOTE_FILE,
    environment_dir,
    environment_root,
    pid_matches,
    read_json,
    runtime_dirs,
    stop_pid,
    write_json,
)

__all__ = [
    "COMPONENTS",
    "REMOTE_FILE",
    "STACK_FILE",
    "STATUS_PAGE",
    "STATUS_PAGE_OFFSET",
    "StackRequest",
    "component_states",
    "down",
    "environment_root",
    "recorded_remote",
    "reload_prometheus",  # defined in controller.local.scrape, kept here for callers
    "router_urls",
    "running_urls",
    "runtime_states",
    "up",
    "write_rules",
    "write_scrape_config",  # likewise
]

STACK_FILE = "stack.json"
#: The read-only status page (``sluice local serve-page``), started when asked for.
STATUS_PAGE = "status-page"
#: In start order; ``down`` stops them in reverse.
COMPONENTS = ("mlflow", "alertmanager", "prometheus", "runtime", STATUS_PAGE)
#: The status page listens on port_base + 3 (the runtime, fourth, has no port of its own).
STATUS_PAGE_OFFSET = 3
#: Where each component listens, from port_base; routers from port_base + 10, clear of them.
_PORT_OFFSETS = {"mlflow": 0, "alertmanager": 1, "prometheus": 2, STATUS_PAGE: STATUS_PAGE_OFFSET}
_ROUTER_OFFSET = 10
_LABELS = {
    "mlflow": "MLflow",
    "alertmanager": "Alertmanager",
    "prometheus": "Prometheus",
    STATUS_PAGE: "the status page",
}
_RUNTIME_READY_SECONDS = 60.0
#: The key of ``stack.json`` recording the further environments' runtimes, by environment.
_MORE_RUNTIMES = "runtimes"
#: Router ports each environment's runtime draws from, with ``port_base``.
_ROUTERS_PER_ENVIRONMENT = 20


@dataclass(frozen=True)
class StackRequest:
    """What ``sluice local up`` was asked for."""

    root: Path
    remote: str
    env: str
    port_base: int | None = None
    branch: str = "main"
    poll_interval: float = 3.0
    webhook_url: str = "http://127.0.0.1:8686/hooks/alertmanager"
    #: Bearer token Alertmanager sends with each notification (``sluice serve``'s
    #: ``alertmanager_token``); None sends none, and ``sluice serve`` then serves no hook.
    webhook_token: str | None = None
    #: The PrometheusRule whose groups Prometheus loads. None looks for
    #: manifests/monitoring/prometheus-rules.yaml in the working directory, then in the Sluice
    #: checkout this package runs from, and loads no rules when neither has one.
    rules_manifest: Path | None = None
    #: Replaces the ``for:`` of every alert that has one (``"20s"``; the cluster waits 10m).
    alert_for: str | None = None
    #: Replaces every rule group's evaluation ``interval`` (``"1s"``).
    rule_interval: str | None = None
    #: The alerts Alertmanager posts to the webhook (``sluice serve``'s ``retrain_alerts``);
    #: any other alert notifies nobody.
    retrain_alerts: tuple[str, ...] = RETRAIN_ALERTS
    #: Also serve the read-only status page (``sluice local serve-page``); ``root`` must then
    #: be ``<state_dir>/local``, as ``sluice local up`` makes it, for the page finds the stack
    #: (its runtime's InferenceServices, the prediction log) from the state directory.
    status_page: bool = False
    #: Header patterns the graphs' routers pass on to their steps (KServe's
    #: ``router.headers.propagate``; its default, ``Authorization``, when empty).
    propagate_headers: tuple[str, ...] = ()
    #: More environments the stack serves beside ``env`` (staging and production overlays on
    #: one laptop), each synced by a runtime of its own (:func:`environment_root`).
    more_envs: tuple[str, ...] = ()

    @property
    def environments(self) -> tuple[str, ...]:
        """Every environment the stack serves, ``env`` first."""
        return (self.env, *(e for e in dict.fromkeys(self.more_envs) if e != self.env))


def component_states(root: Path) -> dict[str, dict[str, Any]]:
    """Each component of ``stack.json`` with ``state`` running, crashed or stopped."""
    stack = read_json(root / STACK_FILE) or {}
    out = {}
    for name in COMPONENTS:
        if stack.get(name):
            out[name] = _with_state(stack[name])
    return out


def _with_state(recorded: dict[str, Any]) -> dict[str, Any]:
    """A copy of a process's ``stack.json`` entry with ``state``: stopped (no pid recorded),
    running (its pid still runs its command line) or crashed."""
    entry = dict(recorded)
    if entry.get("pid") is None:
        entry["state"] = "stopped"
    else:
        alive = pid_matches(entry["pid"], *entry.get("markers", []))
        entry["state"] = "running" if alive else "crashed"
    return entry


def running_urls(root: Path) -> dict[str, str]:
    """The URL of each component of ``stack.json`` that runs now (mlflow, alertmanager,
    prometheus, status-page); a stopped or crashed one is left out."""
    return {
        name: str(entry["url"])
        for name, entry in component_states(root).items()
        if entry["state"] == "running" and entry.get("url")
    }


def runtime_states(root: Path) -> dict[str, dict[str, Any]]:
    """The runtime of each environment the stack serves (:func:`~controller.local.state.
    runtime_dirs`, the first first), as ``stack.json`` records it, with ``state`` running,
    crashed or stopped (an empty entry: never started)."""
    stack = read_json(root / STACK_FILE) or {}
    states = {}
    for index, env in enumerate(runtime_dirs(root)):
        recorded = (
            stack.get("runtime") if index == 0 else (stack.get(_MORE_RUNTIMES) or {}).get(env)
        )
        states[env] = _with_state(recorded) if recorded else {}
    return states


def recorded_remote(root: Path) -> str | None:
    """The GitOps remote the last ``up`` synced from (kept after ``down``), if any."""
    remote = (read_json(root / REMOTE_FILE) or {}).get("remote")
    return str(remote) if remote else None


def router_urls(root: Path, kind: str = "inferenceServices") -> dict[str, str]:
    """Each InferenceService's router URL (``kind="inferenceGraphs"``: each Ready
    InferenceGraph's), as the runtime last saved it."""
    entries = (read_json(root / "runtime.json") or {}).get(kind) or {}
    return {str(name): str(entry["url"]) for name, entry in entries.items() if entry.get("url")}


def _quiet(_line: str) -> None:
    return None


def up(
    request: StackRequest, progress: Callable[[str], None] = _quiet
) -> dict[str, dict[str, Any]]:
    """Start what is not running (reusing ports), wait until all of it answers.

    ``progress`` gets one line as each component starts and one when it answers (or that it
    already runs), so a person sees the ~25 s of a cold start go by.
    """
    root = request.root
    rule_files = write_rules(request)  # a bad manifest fails before anything starts
    stack: dict[str, Any] = read_json(root / STACK_FILE) or {}
    # Commands run in this checkout take it as their default remote (`sluice local env`).
    write_json(
        root / REMOTE_FILE,
        {"remote": request.remote, "env": request.env, "environments": request.environments},
    )

    def port(name: str, offset: int) -> int:
        remembered = (stack.get(name) or {}).get("port")
        if remembered:
            return int(remembered)
        return request.port_base + offset if request.port_base is not None else stable_free_port()

    def ensure(
        name: str, markers: list[str], start: Callable[[int], LocalService], path: str = ""
    ) -> None:
        entry = stack.get(name) or {}
        if pid_matches(entry.get("pid"), *markers) and entry.get("markers") == markers:
            progress(f"{name:<13} already running at {entry.get('url', '?')}{path}")
            return
        how = "remembered" if entry.get("port") else "free"
        how = "port-base" if how == "free" and request.port_base is not None else how
        chosen = port(name, _PORT_OFFSETS[name])
        _check_port_free(name, chosen, root, how=how)
        progress(f"{name:<13} starting on 127.0.0.1:{chosen} …")
        started = time.monotonic()
        service = start(chosen)
        took = f"{time.monotonic() - started:.1f} s"
        where = f": http://127.0.0.1:{service.port}{path}" if path else ""
        progress(f"{name:<13} ready in {took}{where}")
        stack[name] = {
            "pid": service.pid,
            "port": service.port,
            "url": f"http://127.0.0.1:{service.port}",
            "markers": markers,
            "log": str(service.process.log_path),
        }
        write_json(root / STACK_FILE, stack)

    mlflow_dir, am_dir, prom_dir = root / "mlflow", root / "alertmanager", root / "prometheus"
    artifacts = (mlflow_dir / "artifacts").resolve()

    def start_tracking_server(port: int) -> MlflowService:
        # A fresh database starts from the migrated copy of an earlier stack, if any.
        database, cache = mlflow_dir / "mlflow.db", cache_dir()
        fresh = not database.exists()
        seeded = fresh and seed_from_template(database, cache)
        service = start_mlflow(
            backend_store_uri=f"sqlite:///{database}",
            artifacts_dir=artifacts,
            port=port,
            log_dir=mlflow_dir,
        )
        if fresh and not seeded:  # migrated just now and still empty: keep it for the next
            save_template(database, cache)
        return service

    ensure("mlflow", ["mlflow", str(artifacts)], start_tracking_server)
    am_config = am_dir / "alertmanager.yml"
    am_markers = [f"--config.file={am_config}"]
    am_running = pid_matches((stack.get("alertmanager") or {}).get("pid"), *am_markers)
    write_alertmanager_config(
        am_config,
        webhook_url=request.webhook_url,
        bearer_token=request.webhook_token,
        alertnames=request.retrain_alerts,
    )
    ensure(
        "alertmanager",
        am_markers,
        lambda p: start_alertmanager(
            config_file=am_config, data_dir=am_dir / "data", port=p, log_dir=am_dir
        ),
    )
    if am_running:  # a reused Alertmanager reads the rewritten file (a new token) on reload
        with contextlib.suppress(SluiceError):
            reload_prometheus(stack["alertmanager"]["url"])  # the same POST /-/reload
    prom_config = prom_dir / "prometheus.yml"
    alertmanager_url = stack["alertmanager"]["url"]
    # What the runtime scraped last; it rewrites the file whenever its processes change.
    runtime_state = read_json(root / "runtime.json") or {}
    routers_only = {"routers": list((runtime_state.get("ports") or {}).values())}  # older files
    targets = ScrapeTargets.from_dict(runtime_state.get("scrapeTargets") or routers_only)
    more = [environment_root(root, env, request.env) for env in request.environments[1:]]
    targets = targets.union(peer_targets(more))
    write_scrape_config(prom_config, targets, alertmanager_url, rule_files=rule_files)
    prom_markers = [f"--config.file={prom_config}"]
    prom_running = pid_matches((stack.get("prometheus") or {}).get("pid"), *prom_markers)
    ensure(
        "prometheus",
        prom_markers,
        lambda p: start_prometheus(
            config_file=prom_config, data_dir=prom_dir / "data", port=p, log_dir=prom_dir
        ),
    )
    if prom_running:  # a reused Prometheus loads the rewritten rules on reload
        reload_prometheus(stack["prometheus"]["url"])
    runtime_dirs = {env: environment_root(root, env, request.env) for env in request.environments}
    for index, env in enumerate(request.environments):
        peers = [path for name, path in runtime_dirs.items() if name != env]
        argv = [
            *(sys.executable, "-m", "controller.local.runtime"),
            *("--state-dir", str(runtime_dirs[env]), "--remote", request.remote),
            *("--env", env, "--branch", request.branch),
            *("--poll-interval", f"{request.poll_interval:g}"),
            *("--mlflow-tracking-uri", stack["mlflow"]["url"]),
            *("--prometheus-url", stack["prometheus"]["url"]),
            *("--prometheus-config", str(prom_config), "--alertmanager-url", alertmanager_url),
            *(arg for rules in rule_files for arg in ("--prometheus-rules", str(rules))),
            *(arg for p in request.propagate_headers for arg in ("--propagate-header", p)),
            *(arg for peer in peers for arg in ("--scrape-peer", str(peer))),
        ]
        if request.port_base is not None:
            routers = request.port_base + _ROUTER_OFFSET + index * _ROUTERS_PER_ENVIRONMENT
            argv += ["--port-base", str(routers)]
        _ensure_runtime(stack, root, env, runtime_dirs[env], argv, progress, request.remote)
    # Further environments an earlier `up` served and this one does not (or serves first, from
    # the root): their runtimes stop.
    for env, entry in list((stack.get(_MORE_RUNTIMES) or {}).items()):
        if env not in request.environments[1:]:
            stop_pid(entry.get("pid"), *entry.get("markers", []))
            del stack[_MORE_RUNTIMES][env]
    write_json(root / STACK_FILE, stack)
    if request.status_page:
        # `--name=value`, one argument each: every one is a marker, so a page started with
        # another remote, environment or MLflow is told apart (and replaced) by its pid's
        # command line alone.
        page_args = [
            f"--mlflow-tracking-uri={stack['mlflow']['url']}",  # the root option
            "local",
            "serve-page",
            f"--state-dir={root.parent}",
            *(f"--env={env}" for env in request.environments),
            f"--repo={request.remote}",
            f"--prometheus-url={stack['prometheus']['url']}",
        ]
        page_markers = [arg for arg in page_args if arg != "local"]
        page = stack.get(STATUS_PAGE) or {}
        if page.get("markers") != page_markers:
            stop_pid(page.get("pid"), *page.get("markers", []))
        page_argv = [sys.executable, "-m", "controller", *page_args]
        ensure(
            STATUS_PAGE,
            page_markers,
            lambda p: start_status_page(argv=[*page_argv, f"--port={p}"], port=p, log_dir=root),
            path="/",
        )
    return component_states(root)


def _ensure_runtime(
    stack: dict[str, Any],
    root: Path,
    env: str,
    state_dir: Path,
    argv: list[str],
    progress: Callable[[str], None],
    remote: str,
) -> None:
    """Start the runtime of ``env`` unless it runs with ``argv`` already; recorded in
    ``stack`` (under ``runtime`` for the stack's first environment)."""
    first = state_dir == root
    runtimes = stack if first else stack.setdefault(_MORE_RUNTIMES, {})
    key = "runtime" if first else env
    label = "runtime" if first else f"runtime {env}"
    runtime = runtimes.get(key) or {}
    if runtime.get("argv") != argv:
        stop_pid(runtime.get("pid"), *runtime.get("markers", []))
    markers = ["controller.local.runtime", str(state_dir)]
    if pid_matches(runtime.get("pid"), *markers) and runtime.get("argv") == argv:
        progress(f"{label:<13} already running: syncs {env} from {remote}")
        return
    progress(f"{label:<13} starting: syncs {env} from {remote} …")
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(argv, log_path=state_dir / "runtime.log", name=f"local runtime {env}")
    process.start()
    process.wait_ready(lambda: _runtime_saved(state_dir, process.pid), _RUNTIME_READY_SECONDS)
    progress(f"{label:<13} ready in {time.monotonic() - started:.1f} s (first sync done)")
    runtimes[key] = {
        "pid": process.pid,
        "markers": markers,
        "argv": argv,
        "log": str(process.log_path),
    }
    write_json(root / STACK_FILE, stack)


def write_rules(request: StackRequest) -> list[Path]:
    """Write ``root/prometheus/rules.yml`` from the request's rules: the rule files to load.

    [] when no manifest is given or found (a stale file is removed); overrides without rules
    to apply them to are a :class:`ConfigError`.
    """
    rules = request.root / "prometheus" / "rules.yml"
    manifest = request.rules_manifest or default_rules_manifest()
    if manifest is None:
        if request.alert_for is not None or request.rule_interval is not None:
            raise ConfigError(
                f"alert_for and rule_interval have no rules to apply to: no {RULES_MANIFEST} in "
                "the working directory or the Sluice checkout; pass --rules-manifest PATH"
            )
        rules.unlink(missing_ok=True)
        return []
    write_local_rules(
        rules, manifest, alert_for=request.alert_for, rule_interval=request.rule_interval
    )
    return [rules.resolve()]


def _check_port_free(name: str, port: int, root: Path, *, how: str) -> None:
    """Refuse to start ``name`` on a port another process listens on, in one line naming the
    port and the fix (the server itself would exit with a bind error deep in its log).
    ``how`` says where the port came from: ``remembered``, ``port-base`` or ``free``."""
    with socket.socket() as probe:
        # As a server binds: a connection of a stopped server in TIME_WAIT does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            return
    fix = {
        "remembered": "stop what listens there (the stack keeps the ports it first started on; "
        f"for new ones run `sluice local down` and delete {root / STACK_FILE})",
        "port-base": "stop what listens there, or give `sluice local up` another --port-base N",
    }.get(how, "stop what listens there, or run `sluice local up` again for another free port")
    label = _LABELS.get(name, name)
    raise ConfigError(
        f"{label} cannot start: port {port} on 127.0.0.1 is taken by another process; {fix}"
    )


def _runtime_saved(root: Path, pid: int) -> bool:
    """The runtime has made its first pass once its state file carries its pid."""
    return (read_json(root / "runtime.json") or {}).get("pid") == pid


def down(root: Path) -> list[str]:
    """Stop every component ``stack.json`` names (runtime first); returns what was stopped."""
    stack = read_json(root / STACK_FILE)
    if not stack:
        return []
    stopped = []
    for env, entry in (stack.get(_MORE_RUNTIMES) or {}).items():
        if stop_pid(entry.get("pid"), *entry.get("markers", [])):
            stopped.append(f"runtime {env}")
        entry["pid"] = None
        stopped += _stop_orphaned_servers(environment_dir(root, env))
    for name in reversed(COMPONENTS):
        entry = stack.get(name) or {}
        if stop_pid(entry.get("pid"), *entry.get("markers", [])):
            stopped.append(name)
        if entry:
            entry["pid"] = None
    stopped += _stop_orphaned_servers(root)
    write_json(root / STACK_FILE, stack)
    return stopped


def _stop_orphaned_servers(state_dir: Path) -> list[str]:
    """Stop the model servers a crashed runtime of ``state_dir`` left behind; their names."""
    runtime = read_json(state_dir / "runtime.json") or {}
    return [
        revision
        for revision, info in (runtime.get("servers") or {}).items()
        if stop_pid(info.get("pid"), str(state_dir / "revisions" / revision / "model"))
    ]
