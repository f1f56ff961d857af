"""``sluice graph propose|step|promote|rollback|rollout``: a change to an InferenceGraph, as a
canary.

A table of commands only, merged into :data:`controller.cli.app.app` as the ``graph`` group;
the work happens in :mod:`controller.commands.graph`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import (
    TARGET_OPTION_HELP,
    TargetChoice,
    current_settings,
    forge_name,
    forge_option,
)
from controller.errors import InputError
from controller.text.ref_names import validate_environment_name, validate_graph_name

__all__ = ["graph_app"]

graph_app = typer.Typer(
    help="Change an InferenceGraph as a canary: propose it, walk it automatically (rollout) "
    "or by hand (step, promote, rollback).",
    no_args_is_help=True,
)

_GRAPH = Annotated[str, typer.Argument(help="The InferenceGraph's metadata.name.")]
_ENV = Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")]
_REPO = Annotated[
    str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
]
_JSON = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _walk(
    ctx: typer.Context,
    graph: str,
    env: str,
    repo: str | None,
    as_json: bool,
    **what: object,
) -> None:
    validate_graph_name(graph)
    validate_environment_name(env)
    settings = current_settings(ctx)
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.graph import run_graph_walk
    from controller.proposals.graph_walk import GraphWalk

    run_graph_walk(
        settings,
        GraphWalk(graph=graph, environment=env, **what),  # type: ignore[arg-type]
        remote=repo,
        as_json=as_json,
        console=Console(),
    )


@graph_app.command("propose")
def graph_propose(
    ctx: typer.Context,
    graph: _GRAPH,
    env: _ENV,
    spec: Annotated[
        Path,
        typer.Option(
            "--spec", help="The proposed graph: a YAML file of the InferenceGraph.", dir_okay=False
        ),
    ],
    weight: Annotated[
        int | None,
        typer.Option(help="The new graph's share, 1-99 (default: the first rollout step)."),
    ] = None,
    forge: Annotated[
        str, forge_option("local: push a branch and print the merge; github: open a PR too.")
    ] = "local",
    repo: _REPO = None,
    as_json: _JSON = False,
) -> None:
    """Propose a changed graph: a branch putting it beside the current one at --weight %."""
    validate_graph_name(graph)
    validate_environment_name(env)
    chosen = forge_name(forge)
    try:
        text = spec.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"--spec {spec} cannot be read ({type(exc).__name__}: {exc}); give the proposed "
            "graph's YAML file"
        ) from None
    settings = current_settings(ctx)
    from controller.commands.graph import run_graph_propose
    from controller.proposals.graph_propose import GraphProposal

    run_graph_propose(
        settings,
        GraphProposal(
            graph=graph, environment=env, spec_text=text, spec_source=str(spec), weight=weight
        ),
        forge=chosen,
        remote=repo,
        as_json=as_json,
        console=Console(),
    )


@graph_app.command("step")
def graph_step(
    ctx: typer.Context,
    graph: _GRAPH,
    env: _ENV,
    weight: Annotated[int, typer.Option(help="The canary's new share, 1-99.")],
    repo: _REPO = None,
    as_json: _JSON = False,
) -> None:
    """Move the merged graph canary to --weight % (one commit to the environment's branch)."""
    _walk(ctx, graph, env, repo, as_json, action="step", weight=weight)


@graph_app.command("promote")
def graph_promote(
    ctx: typer.Context, graph: _GRAPH, env: _ENV, repo: _REPO = None, as_json: _JSON = False
) -> None:
    """Serve the new graph alone (one commit); with no canary, say so and change nothing."""
    _walk(ctx, graph, env, repo, as_json, action="promote")


@graph_app.command("rollback")
def graph_rollback(
    ctx: typer.Context,
    graph: _GRAPH,
    env: _ENV,
    reason: Annotated[str, typer.Option("--reason", help="Why: the commit's subject.")],
    repo: _REPO = None,
    as_json: _JSON = False,
) -> None:
    """Serve the old graph alone again, as it was (one commit)."""
    _walk(ctx, graph, env, repo, as_json, action="rollback", reason=reason)


@graph_app.command("rollout")
def graph_rollout(
    ctx: typer.Context,
    graph: _GRAPH,
    env: _ENV,
    once: Annotated[
        bool, typer.Option("--once", help="One pass (observe, decide, act), then exit.")
    ] = False,
    target: Annotated[
        TargetChoice, typer.Option(metavar="[local|kubernetes]", help=TARGET_OPTION_HELP)
    ] = TargetChoice.local,
    repo: _REPO = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the passes as JSON.")] = False,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            "--poll-interval",
            metavar="SECONDS",
            help="How often to look again while waiting for a sync (default 2; "
            "SLUICE_ROLLOUT_POLL_INTERVAL_SECONDS). Analyses follow graphRollout.interval.",
        ),
    ] = None,
) -> None:
    """Walk the merged graph canary through graphRollout's steps, judged on its branches;
    exit 0 promoted, 1 rolled back."""
    validate_graph_name(graph)
    validate_environment_name(env)
    flags = {} if poll_interval is None else {"rollout_poll_interval_seconds": poll_interval}
    settings = current_settings(ctx, **flags)
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.graph import run_graph_rollout

    code = run_graph_rollout(
        settings, graph=graph, environment=env, once=once, target=target.value, remote=repo,
        as_json=as_json, console=Console(),
    )  # fmt: skip
    if code:
        raise typer.Exit(code)
