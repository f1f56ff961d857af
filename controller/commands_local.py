"""``sluice local up``, ``status`` and ``down``: the embedded local target, from the shell.

The commands are thin: :mod:`controller.local.stack` starts and stops the components,
:mod:`controller.local.runtime` writes the Argo CD Application and the InferenceServices to
its state file, and this module prints them, as a table for people or as KServe- and Argo
CD-shaped JSON for scripts.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.errors import ConfigError
from controller.local.runtime import RUNTIME_FILE
from controller.local.stack import StackRequest, component_states, down, up
from controller.local.state import read_json
from controller.ref_names import validate_environment_name
from controller.settings import Settings

__all__ = [
    "PORT_BASE_MAX",
    "PORT_BASE_MIN",
    "PORT_SPAN",
    "local_root",
    "run_down",
    "run_status",
    "run_up",
]

#: ``--port-base N`` reserves N .. N+99: MLflow N, Alertmanager N+1, Prometheus N+2 and one
#: router per InferenceService from N+10 (up to 90 of them).
PORT_SPAN = 100
#: Ports below 1024 need root; the stack never runs as root on purpose.
PORT_BASE_MIN = 1024
PORT_BASE_MAX = 65535 - (PORT_SPAN - 1)


def check_port_base(port_base: int | None) -> None:
    """Refuse a ``--port-base`` whose reserved range is not all unprivileged, valid ports."""
    if port_base is not None and not PORT_BASE_MIN <= port_base <= PORT_BASE_MAX:
        raise ConfigError(
            f"--port-base {port_base} is out of range: the stack uses ports N to "
            f"N+{PORT_SPAN - 1}, so N must be between {PORT_BASE_MIN} and {PORT_BASE_MAX}"
        )


def _is_local_path(remote: str) -> bool:
    # Git reads "host:path" (no "/" before the first ":") as scp-like SSH, anything with "://"
    # as a URL, and everything else as a path.
    return "://" not in remote and re.match(r"^[^/]+:", remote) is None


def check_remote(remote: str) -> str:
    """A local ``--repo`` must be a repository Git can read; it is returned absolute."""
    if not _is_local_path(remote):
        return remote
    path = Path(remote)
    if not path.exists():
        raise ConfigError(
            f"--repo {remote} does not exist; give the path of a Git repository or a remote URL"
        )
    probe = subprocess.run(
        ["git", "ls-remote", "--heads", str(path.resolve())],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        said = next(iter(probe.stderr.strip().splitlines()), "no output")
        raise ConfigError(f"--repo {remote} is not a Git repository Git can read ({said})")
    return str(path.resolve())


def local_root(settings: Settings) -> Path:
    """Where the local target keeps its state: ``<state_dir>/local``."""
    return (settings.state_dir / "local").resolve()


def run_up(
    settings: Settings,
    *,
    env: str,
    remote: str,
    port_base: int | None,
    console: Console,
    rules_manifest: Path | None = None,
    alert_for: str | None = None,
    rule_interval: str | None = None,
) -> None:
    """Start (or reuse) the stack and print where everything is.

    Prometheus loads the rules of ``rules_manifest`` (by default the repository's
    manifests/monitoring/prometheus-rules.yaml) with the ``alert_for`` and ``rule_interval``
    overrides; Alertmanager posts the ``retrain_alerts`` of ``settings`` to ``sluice serve``.
    """
    validate_environment_name(env)
    check_port_base(port_base)
    remote = check_remote(remote)
    request = StackRequest(
        root=local_root(settings),
        remote=remote,
        env=env,
        port_base=port_base,
        webhook_url=f"http://127.0.0.1:{settings.serve_port}/hooks/alertmanager",
        webhook_token=(
            settings.alertmanager_token.get_secret_value() if settings.alertmanager_token else None
        ),
        rules_manifest=rules_manifest.resolve() if rules_manifest is not None else None,
        alert_for=alert_for,
        rule_interval=rule_interval,
        retrain_alerts=tuple(settings.retrain_alerts),
    )
    for name, entry in up(request).items():
        where = entry.get("url", entry.get("log", ""))
        console.print(f"{name:<13} {entry['state']:<8} pid {entry['pid']:<8} {where}")


def run_status(settings: Settings, *, as_json: bool, console: Console) -> None:
    """Print each InferenceService, the Application and component liveness."""
    root = local_root(settings)
    runtime = read_json(root / RUNTIME_FILE) or {}
    components = component_states(root)
    entries = runtime.get("inferenceServices") or {}
    app = runtime.get("application")
    if as_json:
        document = {
            "components": components,
            "applications": [app] if app else [],
            "inferenceServices": [entry["object"] for entry in entries.values()],
        }
        console.print_json(json.dumps(document))
        return
    app_status = (app or {}).get("status", {})
    for name, entry in sorted(entries.items()):
        console.print(_isvc_table(name, entry, runtime.get("env", "?"), app_status))
    if app_status.get("operationState", {}).get("phase") == "Failed":
        console.print(f"last sync failed: {app_status['operationState'].get('message', '')}")
    table = Table("component", "state", "pid", "url", title="local stack")
    for name, entry in components.items():
        table.add_row(name, entry["state"], str(entry.get("pid") or "-"), entry.get("url", ""))
    console.print(table)


def _isvc_table(name: str, entry: dict[str, Any], env: str, app: dict[str, Any]) -> Table:
    status = entry["object"].get("status", {})
    predictor = status.get("components", {}).get("predictor", {})
    sync = app.get("sync", {})
    traffic = ", ".join(
        f"{t.get('revisionName', '?')} {t['percent']}%" + (f" ({t['tag']})" if t.get("tag") else "")
        for t in predictor.get("traffic", [])
    )
    shadow = entry.get("shadow") or {}
    mirrored = f"{shadow.get('percent', 100):g}% of {shadow.get('primary') or '?'}'s requests"
    table = Table("field", "value", title=f"InferenceService {name}", show_header=False)
    rows = {
        "environment": env,
        "sync": f"{sync.get('status', 'Unknown')} {str(sync.get('revision', ''))[:7]}",
        "health": entry.get("health", {}).get("status", "Unknown"),
        "latestCreated": predictor.get("latestCreatedRevision", "-"),
        "latestReady": predictor.get("latestReadyRevision", "-"),
        "latestRolledout": predictor.get("latestRolledoutRevision", "-"),
        "previousRolledout": predictor.get("previousRolledoutRevision", "-"),
        "traffic": traffic or "-",
        "shadow": f"{shadow['revision']} ({mirrored})" if shadow.get("revision") else "-",
        "url": entry.get("url", "-"),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def run_down(settings: Settings, *, console: Console) -> None:
    """Stop what ``up`` started."""
    stopped = down(local_root(settings))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
