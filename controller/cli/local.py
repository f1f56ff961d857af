"""``sluice local``: the embedded local target (``up``, ``status``, ``down``, ``env``, ``url``,
``merge`` and the hidden ``serve-page``). The work happens in :mod:`controller.commands.local`,
and for ``status`` and ``serve-page`` in :mod:`controller.commands.local_status`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings, forge_name, forge_option
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["local_app"]

local_app = typer.Typer(
    help="The embedded local target: MLflow, Prometheus, a KServe-like runtime and a status page.",
    no_args_is_help=True,
)


@local_app.command("up")
def local_up(
    ctx: typer.Context,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="Environment (manifests/overlays/ENV; default local); repeat to serve several "
            "(--env staging --env production), each synced by a runtime of its own.",
        ),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(
            help="GitOps remote to sync (default: SLUICE_GIT_REMOTE, else "
            ".sluice/local/gitops.git, seeded from ./manifests); commands run here then use it."
        ),
    ] = None,
    port_base: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Ports from N (1024-65436): MLflow N, Alertmanager N+1, Prometheus N+2, "
            "status page N+3, routers N+10+.",
        ),
    ] = None,
    rules_manifest: Annotated[
        Path | None,
        typer.Option(
            help="PrometheusRule whose rules Prometheus loads (default: "
            "manifests/monitoring/prometheus-rules.yaml here, else in the Sluice checkout)."
        ),
    ] = None,
    alert_for: Annotated[
        str | None,
        typer.Option(help="Replace the `for:` of each alert that has one (20s; drift says 10m)."),
    ] = None,
    rule_interval: Annotated[
        str | None, typer.Option(help="Replace each rule group's evaluation interval (e.g. 1s).")
    ] = None,
    propagate_header: Annotated[
        list[str] | None,
        typer.Option(
            metavar="PATTERN",
            help="A request header (regular expression) the InferenceGraphs' routers pass on to "
            "their steps, as KServe's router.headers.propagate (repeatable; default: "
            "Authorization). X-Request-Id joins a graph's requests to its members' answers.",
        ),
    ] = None,
) -> None:
    """Start (or reuse) the local stack and sync ENV from Git; returns when it is ready."""
    from controller.commands.local import run_up
    from controller.local.extra import require_local_extra

    require_local_extra("sluice local up")
    first, *more = env or ["local"]
    run_up(
        current_settings(ctx),
        env=first,
        more_envs=tuple(more),
        remote=repo,
        port_base=port_base,
        console=Console(),
        rules_manifest=rules_manifest,
        alert_for=alert_for,
        rule_interval=rule_interval,
        propagate_headers=tuple(propagate_header or ()),
    )


@local_app.command("status")
def local_status(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="KServe- and Argo CD-shaped JSON.")
    ] = False,
) -> None:
    """Show sync, health, revisions and traffic of each InferenceService, and the components."""
    from controller.commands.local_status import run_status

    run_status(current_settings(ctx), as_json=as_json, console=Console())


@local_app.command("down")
def local_down(ctx: typer.Context) -> None:
    """Stop everything `sluice local up` started, and nothing else."""
    from controller.commands.local import run_down

    run_down(current_settings(ctx), console=Console())


@local_app.command("serve-page", hidden=True)
def local_serve_page(
    ctx: typer.Context,
    state_dir: Annotated[Path, typer.Option(help="The stack's state directory.")],
    env: Annotated[
        list[str], typer.Option("--env", help="An environment the stack syncs (repeatable).")
    ],
    repo: Annotated[str, typer.Option(help="The stack's GitOps remote.")],
    prometheus_url: Annotated[str, typer.Option(help="The stack's Prometheus.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")],
) -> None:
    """Serve the read-only status page of a local stack (`sluice local up` starts it, with
    the stack's MLflow in the root option --mlflow-tracking-uri)."""
    from controller.commands.local_status import run_status_page

    for name in env:
        validate_environment_name(name)
    settings = current_settings(
        ctx, state_dir=state_dir, git_remote=repo, prometheus_url=prometheus_url
    )
    run_status_page(settings, environments=env, host="127.0.0.1", port=port)


@local_app.command("env")
def local_env(ctx: typer.Context) -> None:
    """Print export lines for the running stack: eval "$(sluice local env)"."""
    from controller.commands.local import run_env

    run_env(current_settings(ctx), console=Console())


@local_app.command("url")
def local_url(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="mlflow, prometheus, alertmanager, status-page, or an InferenceService."
        ),
    ],
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="The environment whose router (default: the stack's first environment).",
        ),
    ] = None,
) -> None:
    """Print the URL of a component, or of an InferenceService's router."""
    from controller.commands.local import run_url

    if env is not None:
        validate_environment_name(env)
    run_url(current_settings(ctx), name, console=Console(), env=env)


@local_app.command("merge")
def local_merge(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")],
    forge: Annotated[
        str, forge_option("local: merge with git; github: through the pull request's merge.")
    ] = "local",
    repo: Annotated[
        str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
    ] = None,
) -> None:
    """Merge MODEL's open proposal in ENV as a pull request would; print the merge commit.

    A merge commit, the proposal branch kept; with --forge github, GitHub's merge endpoint."""
    from controller.commands.local import run_merge

    validate_model_name(model)
    validate_environment_name(env)
    run_merge(
        current_settings(ctx),
        model=model,
        env=env,
        forge=forge_name(forge),
        remote=repo,
        console=Console(),
    )
