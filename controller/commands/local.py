"""``sluice local up``, ``status`` and ``down``: the embedded local target, from the shell.

The commands are thin: :mod:`controller.local.stack` starts and stops the components,
:mod:`controller.local.runtime` writes the Argo CD Application and the InferenceServices to
its state file, and this module prints them, as a table for people or as KServe- and Argo
CD-shaped JSON for scripts. It also runs the stack's status page component (the hidden
``sluice local serve-page``): ``sluice serve``'s page, read-only, and nothing else.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.table import Table

from controller.commands.local_state import local_root
from controller.demo.gitops_remote import seed_gitops_remote
from controller.errors import ConfigError, InputError
from controller.local.stack import (
    STATUS_PAGE,
    StackRequest,
    component_states,
    down,
    recorded_remote,
    router_urls,
    running_urls,
    up,
)
from controller.local.state import read_json
from controller.ref_names import validate_environment_name
from controller.settings import Settings

if TYPE_CHECKING:  # both import the rollout policy and its statistics (scipy): seconds
    from controller.environment import EnvironmentConfig

__all__ = [
    "PORT_BASE_MAX",
    "PORT_BASE_MIN",
    "PORT_SPAN",
    "SEEDED_REMOTE",
    "run_down",
    "run_env",
    "run_merge",
    "run_status",
    "run_status_page",
    "run_up",
    "run_url",
    "up_remote",
]

#: The GitOps remote ``sluice local up`` seeds from the checkout, under ``<state_dir>/local``.
SEEDED_REMOTE = "gitops.git"

#: ``--port-base N`` reserves N .. N+99: MLflow N, Alertmanager N+1, Prometheus N+2, the status
#: page N+3 and one router per InferenceService from N+10 (up to 90 of them).
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


def up_remote(settings: Settings, repo: str | None, console: Console) -> str:
    """The GitOps remote ``local up`` syncs from: ``--repo``, else the configured or recorded
    remote, else ``<state_dir>/local/gitops.git``, created and seeded with the checkout's
    ``manifests/`` (as ``make demo`` seeds its own) the first time."""
    seeded = local_root(settings) / SEEDED_REMOTE
    remote = repo or settings.git_remote
    if remote is not None and (repo is not None or Path(remote) != seeded):
        return remote
    if not (seeded / "HEAD").is_file():
        manifests = Path.cwd() / "manifests"
        if not manifests.is_dir():
            raise ConfigError(
                f"no manifests/ in {Path.cwd()} to seed a GitOps remote from: run `sluice local "
                "up` in a checkout of your GitOps repository, or pass --repo REMOTE"
            )
        seed_gitops_remote(Path.cwd(), seeded)
        console.print(
            f"Seeded the GitOps remote {seeded} with {manifests}", highlight=False, soft_wrap=True
        )
    return str(seeded)


def run_up(
    settings: Settings,
    *,
    env: str,
    remote: str | None,
    port_base: int | None,
    console: Console,
    rules_manifest: Path | None = None,
    alert_for: str | None = None,
    rule_interval: str | None = None,
) -> None:
    """Start (or reuse) the stack, printing a line as each component starts, then where
    everything is and what to type next. ``remote`` None: :func:`up_remote`'s.

    Prometheus loads the rules of ``rules_manifest`` (by default the repository's
    manifests/monitoring/prometheus-rules.yaml) with the ``alert_for`` and ``rule_interval``
    overrides; Alertmanager posts the ``retrain_alerts`` of ``settings`` to ``sluice serve``.
    The status page (:func:`run_status_page`) is one of the components.
    """
    validate_environment_name(env)
    check_port_base(port_base)
    # Checked before anything is created: a bad flag leaves no seeded remote behind.
    remote = check_remote(remote) if remote is not None else None
    remote = remote or check_remote(up_remote(settings, None, console))
    started = time.monotonic()
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
        status_page=True,
    )
    up(request, progress=lambda line: console.print(line, highlight=False, soft_wrap=True))
    root = request.root
    urls = running_urls(root)
    console.print(
        f"Local stack ready in {time.monotonic() - started:.1f} s: environment {env}, "
        f"GitOps remote {remote}",
        highlight=False,
        soft_wrap=True,
    )
    routers = router_urls(root)
    rows = {
        "MLflow": urls.get("mlflow", "-"),
        "Router": ", ".join(f"{url} ({name})" for name, url in sorted(routers.items()))
        or "none yet: one per InferenceService once a version is merged "
        "(`sluice local url NAME` prints it)",
        "Prometheus UI": urls.get("prometheus", "-"),
        "Alertmanager": f"{urls.get('alertmanager', '-')} (drift alerts go to "
        f"`{_serve_command(env)}`: {request.webhook_url})",
        "Status page": f"{urls[STATUS_PAGE]}/" if STATUS_PAGE in urls else "-",
    }
    for label, value in rows.items():
        console.print(f"  {label:<14} {value}", highlight=False, soft_wrap=True, markup=False)
    console.print("Next:", highlight=False)
    for command in _next_commands(env):
        console.print(f"  {command}", highlight=False, soft_wrap=True, markup=False)


def _serve_command(env: str) -> str:
    """What takes the drift alerts beside the stack: ``sluice serve`` watching ENV.

    Not started by ``up``: it proposes by itself when an alias moves, which is the by-hand
    loop's ``sluice propose`` to do (the stack's own status page needs no ``sluice serve``)."""
    return f"sluice serve --env {env}"


def _next_commands(env: str) -> list[str]:
    """What to type after ``up``: the exports, then train, propose, merge and roll out the
    environment's first release (its training module when the checkout has one)."""
    from controller.environment import load_environment

    model = "MODEL"
    try:
        config: EnvironmentConfig | None = load_environment(Path.cwd(), env)
    except ConfigError:
        config = None
    if config is not None and config.releases:
        model = config.releases[0].model
    module = f"models.{model.replace('-', '_')}.train"
    train = (
        f"python -m {module} --week 0"
        if (Path.cwd() / module.replace(".", "/")).with_suffix(".py").is_file()
        else f"(train and register {model} in MLflow)"
    )
    return [
        'eval "$(sluice local env)"',
        train,
        f"sluice propose {model} --env {env}",
        f"sluice local merge {model} --env {env}",
        f"sluice rollout {model} --env {env}",
    ]


def _running_root(settings: Settings) -> Path:
    root = local_root(settings)
    if "mlflow" not in running_urls(root):
        raise ConfigError(
            f"the local stack is not running in {root}: start it with `sluice local up` "
            "(in the checkout you started it from, or with the same SLUICE_STATE_DIR)"
        )
    return root


def run_env(settings: Settings, *, console: Console) -> None:
    """Print the ``export`` lines of the running stack, for ``eval "$(sluice local env)"``."""
    root = _running_root(settings)
    values = {
        "MLFLOW_TRACKING_URI": running_urls(root)["mlflow"],
        "SLUICE_GIT_REMOTE": recorded_remote(root),
        # Absolute: a command run from another directory still finds this stack.
        "SLUICE_STATE_DIR": str(settings.state_dir),
    }
    for name, value in values.items():
        if value:
            console.print(
                f"export {name}={shlex.quote(value)}", highlight=False, soft_wrap=True, markup=False
            )


def run_url(settings: Settings, name: str, *, console: Console) -> None:
    """Print the URL of a component (mlflow, prometheus, alertmanager) or of an
    InferenceService's router."""
    root = _running_root(settings)
    known = {**running_urls(root), **router_urls(root)}
    if name not in known:
        raise InputError(
            f"no component or InferenceService {name!r} in the local stack (known: "
            f"{', '.join(sorted(known))}); an InferenceService has a router once a version "
            "of it is merged and synced"
        )
    console.print(known[name], highlight=False, soft_wrap=True, markup=False)


def run_status(settings: Settings, *, as_json: bool, console: Console) -> None:
    """Print each InferenceService, the Application and component liveness."""
    from controller.local.runtime import RUNTIME_FILE

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
    # Argo CD's own sync status of this resource: another one's refusal leaves it Synced.
    resources: list[dict[str, Any]] = app.get("resources") or []
    resource = next((r for r in resources if r.get("name") == name), {})
    traffic = ", ".join(
        f"{t.get('revisionName', '?')} {t['percent']}%" + (f" ({t['tag']})" if t.get("tag") else "")
        for t in predictor.get("traffic", [])
    )
    shadow = entry.get("shadow") or {}
    mirrored = f"{shadow.get('percent', 100):g}% of {shadow.get('primary') or '?'}'s requests"
    table = Table("field", "value", title=f"InferenceService {name}", show_header=False)
    rows = {
        "environment": env,
        "sync": f"{resource.get('status') or sync.get('status', 'Unknown')} "
        f"{str(sync.get('revision', ''))[:7]}",
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


def run_status_page(settings: Settings, *, env: str, host: str, port: int) -> None:
    """Serve the status page of ``sluice serve`` for ``env`` on ``host:port`` until SIGTERM or
    SIGINT: ``GET /`` and ``GET /healthz``, nothing else (no watcher, proposal, rollout or hook).

    ``sluice local up`` runs it (``sluice local serve-page``) with the stack's remote, MLflow and
    Prometheus in ``settings``. It answers ``/healthz`` at once and draws a first page in the
    background, since the page's code (the rollout's, with scipy) takes seconds to import.
    """
    from controller.server import Handler, Route, SluiceServer, health_route, page_route

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


def run_down(settings: Settings, *, console: Console) -> None:
    """Stop what ``up`` started."""
    stopped = down(local_root(settings))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def run_merge(
    settings: Settings,
    *,
    model: str,
    env: str,
    forge: Literal["local", "github"],
    remote: str | None,
    console: Console,
) -> str:
    """Merge the open proposal of ``model`` in ``env`` into the environment's branch as a pull
    request's merge button does (a merge commit, the branch kept); return the merge commit.

    ``local``: the newest proposal branch ``sluice/ENV/MODEL/vN`` not yet on the branch, merged
    with git and pushed. ``github``: that branch's open pull request, merged through GitHub's
    merge endpoint, so the by-hand path and the pull-request path are one.
    """
    from controller.backends.git_repo import GitWorkspace, Identity
    from controller.commands.propose import build_forge, default_remote
    from controller.commit_message import proposal_branch
    from controller.environment import ENVIRONMENT_FILE, parse_environment

    workspace = GitWorkspace(
        remote or settings.git_remote or default_remote(),
        settings.state_dir / "git",
        identity=Identity(settings.git_author_name, settings.git_author_email),
    )
    github = build_forge(settings, forge)  # a missing token fails before Git is touched
    with workspace.locked():
        workspace.sync()
        default = workspace.default_branch()
        path = f"manifests/overlays/{env}/{ENVIRONMENT_FILE}"
        text = workspace.read(default, path)
        if text is None:
            raise ConfigError(
                f"unknown environment {env!r}: {path} is not on {default} of "
                f"{workspace.remote_url}; give an environment it has (--env)"
            )
        config = parse_environment(text, source=f"{path}@{default}", environment=env)
        prefix = proposal_branch(env, model, 0).removesuffix("v0")
        open_branches = {
            branch: sha
            for branch, sha in workspace.branches(prefix).items()
            if re.fullmatch(r"v\d+|init", branch.removeprefix(prefix))
            and not workspace.is_merged(sha, config.branch)
        }
        if prefix + "init" not in open_branches:  # `sluice init` adds the release itself
            config.release(model)  # names the models it serves when it does not serve this one
        if not open_branches:
            raise InputError(
                f"no open proposal for {model} in {env}: no branch {prefix}vN (or init) "
                f"that is not merged into {config.branch}; propose one with `sluice propose "
                f"{model} --env {env}`"
            )
        # An open `sluice init` goes first (a proposal needs its release); then the newest
        # version wins, and older open branches are superseded proposals.
        branch = max(
            open_branches,
            key=lambda b: 1 << 62 if b.endswith("/init") else int(b.removeprefix(prefix + "v")),
        )
        head = open_branches[branch]
        subject = str(workspace.repo.git.log("-1", "--format=%s", head))
        if not github.opens_pull_requests:
            sha = workspace.merge(
                branch=branch, base=config.branch, message=f"Merge {branch}\n\n{subject}"
            )
            where = f"{branch} into {config.branch}"
        else:
            from controller.backends.github_forge import GitHubForge

            assert isinstance(github, GitHubForge)
            number, sha = github.merge_pull_request(branch, head_sha=head)
            where = f"pull request #{number} ({branch}) into {config.branch}"
    console.print(f"Merged {where}: {subject}", highlight=False, soft_wrap=True, markup=False)
    console.print(sha, highlight=False, soft_wrap=True)
    return sha
