"""The rollout commands of the ``sluice`` CLI: ``rollout``, ``rollback`` and ``status``.

A table of commands only, merged into :data:`controller.cli.app.app`; the work happens in
:mod:`controller.commands.rollout`.
"""

from __future__ import annotations

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
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["TargetChoice", "rollout_app"]

rollout_app = typer.Typer()


_ENV = Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")]
_TARGET = Annotated[
    TargetChoice,
    typer.Option(metavar="[local|kubernetes]", help=TARGET_OPTION_HELP),
]
_FORGE = Annotated[
    str, forge_option("github: comment on the proposal's pull request and set statuses.")
]
_REPO = Annotated[
    str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
]
_POLL = Annotated[
    float | None,
    typer.Option(
        "--poll-interval",
        metavar="SECONDS",
        help="How often to look again while waiting for a sync or a revision (default 2; "
        "SLUICE_ROLLOUT_POLL_INTERVAL_SECONDS). Analyses follow the policy's interval.",
    ),
]


def _flags(poll_interval: float | None) -> dict[str, object]:
    return {} if poll_interval is None else {"rollout_poll_interval_seconds": poll_interval}


@rollout_app.command()
def rollout(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: _ENV,
    once: Annotated[
        bool, typer.Option("--once", help="One pass (observe, decide, act), then exit.")
    ] = False,
    target: _TARGET = TargetChoice.local,
    repo: _REPO = None,
    forge: _FORGE = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the passes as JSON.")] = False,
    poll_interval: _POLL = None,
) -> None:
    """Walk the merged version through its canary steps; exit 0 promoted, 1 rolled back."""
    validate_model_name(model)
    validate_environment_name(env)
    settings = current_settings(ctx, **_flags(poll_interval))
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.propose import build_forge
    from controller.commands.rollout import run_rollout

    code = run_rollout(
        settings, model=model, environment=env, once=once, target=target.value, remote=repo,
        as_json=as_json, console=Console(), forge=build_forge(settings, forge_name(forge)),
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


@rollout_app.command()
def rollback(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: _ENV,
    reason: Annotated[str, typer.Option("--reason", help="Why: goes into the commit.")],
    target: _TARGET = TargetChoice.local,
    repo: _REPO = None,
    forge: _FORGE = "local",
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="See the rollback through to the restore.")
    ] = True,
    poll_interval: _POLL = None,
) -> None:
    """Abort a rollout (or undo a promotion) through Git, as a failed gate would."""
    validate_model_name(model)
    validate_environment_name(env)
    settings = current_settings(ctx, **_flags(poll_interval))
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.propose import build_forge
    from controller.commands.rollout import run_rollback

    code = run_rollback(
        settings, model=model, environment=env, reason=reason, target=target.value,
        remote=repo, wait=wait, console=Console(), forge=build_forge(settings, forge_name(forge)),
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


@rollout_app.command()
def status(
    ctx: typer.Context,
    env: Annotated[
        str | None, typer.Option("--env", help="One environment (default: all).")
    ] = None,
    target: _TARGET = TargetChoice.local,
    repo: _REPO = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Keep watching until Ctrl-C: redraw in a terminal, one line per change when "
            "piped.",
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", metavar="SECONDS", min=0.2, help="How often --watch looks again."
        ),
    ] = 2.0,
) -> None:
    """Per model and environment: what serves, the canary and its weight, phase, time in phase,
    next analysis, last gates, rolled-back and quarantined versions, and what to run next; then
    each InferenceGraph's members with their version, phase and share of the graph's requests."""
    if env is not None:
        validate_environment_name(env)
    if watch and as_json:
        raise typer.BadParameter("--watch prints a table or lines, not JSON: drop one")
    settings = current_settings(ctx)
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.rollout import run_status

    run_status(
        settings, environment=env, target=target.value, remote=repo,
        as_json=as_json, console=Console(), watch=watch, interval_seconds=interval,
    )  # fmt: skip
