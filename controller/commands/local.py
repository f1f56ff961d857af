"""``sluice local up``, ``status`` and ``down``: the embedded local target, from the shell.

The commands are thin: :mod:`controller.local.stack` starts and stops the components, and
this module says where they run (``env``, ``url``) and merges a proposal as a forge would
(``merge``). ``sluice local status`` and the stack's status page are
:mod:`controller.commands.local_status`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.console import Console

from controller.commands.local_state import local_root
from controller.demo.gitops_remote import seed_gitops_remote
from controller.errors import ConfigError, InputError
from controller.local.stack import (
    STATUS_PAGE,
    StackRequest,
    down,
    environment_root,
    recorded_remote,
    router_urls,
    running_urls,
    up,
)
from controller.local.state import runtime_dirs
from controller.settings import Settings
from controller.text.ref_names import validate_environment_name

if TYPE_CHECKING:  # both import the rollout policy and its statistics (scipy): seconds
    from controller.manifests.environment import EnvironmentConfig

__all__ = [
    "PORT_BASE_MAX",
    "PORT_BASE_MIN",
    "PORT_SPAN",
    "SEEDED_REMOTE",
    "run_down",
    "run_env",
    "run_merge",
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


def check_header_patterns(patterns: tuple[str, ...]) -> None:
    """Each ``--propagate-header`` must be a regular expression, as KServe's router compiles it."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"--propagate-header {pattern!r} is not a regular expression ({exc}); "
                "give a header name such as X-Request-Id, or a pattern such as X-Trace-.*"
            ) from None


def run_up(
    settings: Settings,
    *,
    env: str,
    remote: str | None,
    port_base: int | None,
    console: Console,
    more_envs: tuple[str, ...] = (),
    rules_manifest: Path | None = None,
    alert_for: str | None = None,
    rule_interval: str | None = None,
    propagate_headers: tuple[str, ...] = (),
) -> None:
    """Start (or reuse) the stack, printing a line as each component starts, then where
    everything is and what to type next. ``remote`` None: :func:`up_remote`'s.

    Prometheus loads the rules of ``rules_manifest`` (by default the repository's
    manifests/monitoring/prometheus-rules.yaml) with the ``alert_for`` and ``rule_interval``
    overrides; Alertmanager posts the ``retrain_alerts`` of ``settings`` to ``sluice serve``.
    The status page (:func:`run_status_page`) is one of the components. ``more_envs`` are
    served beside ``env``, each by a runtime of its own.
    """
    for name in (env, *more_envs):
        validate_environment_name(name)
    check_port_base(port_base)
    check_header_patterns(propagate_headers)
    # Checked before anything is created: a bad flag leaves no seeded remote behind.
    remote = check_remote(remote) if remote is not None else None
    remote = remote or check_remote(up_remote(settings, None, console))
    started = time.monotonic()
    request = StackRequest(
        root=local_root(settings),
        remote=remote,
        env=env,
        more_envs=more_envs,
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
        propagate_headers=propagate_headers,
    )
    up(request, progress=lambda line: console.print(line, highlight=False, soft_wrap=True))
    root = request.root
    console.print(
        f"Local stack ready in {time.monotonic() - started:.1f} s: "
        f"environment{'s' if more_envs else ''} {', '.join(request.environments)}, "
        f"GitOps remote {remote}",
        highlight=False,
        soft_wrap=True,
    )
    rows = _where_rows(request, running_urls(root))
    width = max(14, *(len(label) for label in rows))  # 14: as wide as "Prometheus UI"
    for label, value in rows.items():
        console.print(f"  {label:<{width}} {value}", highlight=False, soft_wrap=True, markup=False)
    console.print("Next:", highlight=False)
    for command in _next_commands(env):
        console.print(f"  {command}", highlight=False, soft_wrap=True, markup=False)


def _where_rows(request: StackRequest, urls: dict[str, str]) -> dict[str, str]:
    """Where everything is, as ``up`` prints it: the components and each environment's routers
    (one row per environment once the stack serves several: ``url NAME --env ENV``)."""
    more_envs = len(request.environments) > 1
    rows = {"MLflow": urls.get("mlflow", "-")}
    for served in request.environments:
        label = f" ({served})" if more_envs else ""
        state_dir = environment_root(request.root, served, request.env)
        routers = router_urls(state_dir)
        graphs = router_urls(state_dir, "inferenceGraphs")
        rows[f"Router{label}"] = ", ".join(
            f"{url} ({name})" for name, url in sorted(routers.items())
        ) or (
            "none yet: one per InferenceService once a version is merged "
            f"(`sluice local url NAME{f' --env {served}' if more_envs else ''}` prints it)"
        )
        if graphs:
            rows[f"Graph{label}"] = ", ".join(f"{u} ({n})" for n, u in sorted(graphs.items()))
    return rows | {
        "Prometheus UI": urls.get("prometheus", "-"),
        "Alertmanager": f"{urls.get('alertmanager', '-')} (drift alerts go to "
        f"`{_serve_command(request.env)}`: {request.webhook_url})",
        "Status page": f"{urls[STATUS_PAGE]}/" if STATUS_PAGE in urls else "-",
    }


def _serve_command(env: str) -> str:
    """What takes the drift alerts beside the stack: ``sluice serve`` watching ENV.

    Not started by ``up``: it proposes by itself when an alias moves, which is the by-hand
    loop's ``sluice propose`` to do (the stack's own status page needs no ``sluice serve``)."""
    return f"sluice serve --env {env}"


def _next_commands(env: str) -> list[str]:
    """What to type after ``up``: the exports, then train, propose, merge and roll out the
    environment's first release (its training module when the checkout has one)."""
    from controller.manifests.environment import load_environment

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


def run_url(settings: Settings, name: str, *, console: Console, env: str | None = None) -> None:
    """Print the URL of a component (mlflow, prometheus, alertmanager), of an
    InferenceService's router or of an InferenceGraph's (an InferenceService wins a name
    both have): the router in ``env``, by default in the stack's first environment."""
    root = _running_root(settings)
    served = runtime_dirs(root) or {"": root}
    if env is not None and env not in served:
        raise InputError(
            f"the local stack does not run environment {env!r}; it runs "
            f"{', '.join(served)}: give one of them to --env, or start it with `sluice local "
            f"up --env {' --env '.join([*served, env])}`"
        )
    state_dir = served[env] if env is not None else root
    known = {
        **running_urls(root),
        **router_urls(state_dir, "inferenceGraphs"),
        **router_urls(state_dir),
    }
    if name not in known:
        elsewhere = [
            other
            for other, path in served.items()
            if path != state_dir
            and name in {**router_urls(path), **router_urls(path, "inferenceGraphs")}
        ]
        hint = f"; {', '.join(elsewhere)} has it (--env {elsewhere[0]})" if elsewhere else ""
        where = f" of {env}" if env is not None else ""
        raise InputError(
            f"no component, InferenceService or InferenceGraph {name!r} in the local stack"
            f"{where} (known: {', '.join(sorted(known))}){hint}; an InferenceService has a "
            "router once a version of it is merged and synced, an InferenceGraph once its "
            "InferenceServices serve"
        )
    console.print(known[name], highlight=False, soft_wrap=True, markup=False)


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
    from controller.manifests.environment import ENVIRONMENT_FILE, parse_environment
    from controller.text.commit_message import proposal_branch

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
