"""``sluice retrain report``: how a retraining started through the forge ended.

The work happens in :mod:`controller.commands.retrain`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["retrain_app"]

retrain_app = typer.Typer(help="Drift retraining: report its outcome.", no_args_is_help=True)


@retrain_app.command("report")
def retrain_report(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: Annotated[str, typer.Option("--env", help="Environment it was retrained for.")],
    outcome: Annotated[
        str | None,
        typer.Option(
            metavar="[succeeded|gate-failed|failed]",
            help="How it ended (or --exit-code).",
        ),
    ] = None,
    exit_code: Annotated[
        int | None,
        typer.Option(
            help="The training command's exit status: 0 succeeded, 1 gate-failed, other failed."
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(help="The version it registered (default when it succeeded: challenger)."),
    ] = None,
    run_url: Annotated[
        str | None, typer.Option(help="Where it ran: the workflow run's URL.")
    ] = None,
    requested_at: Annotated[
        str | None,
        typer.Option(
            help="The dispatch's requested_at: only the retraining started then is finished."
        ),
    ] = None,
    detail: Annotated[str | None, typer.Option(help="What happened, in one line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Record how a retraining started through the forge ended (the train workflow's last
    step) and announce it, as a local retraining is when its process ends."""
    from controller.commands.retrain import run_report

    validate_model_name(model)
    validate_environment_name(env)
    run_report(
        current_settings(ctx), model=model, env=env, outcome=outcome, exit_code=exit_code,
        version=version, run_url=run_url, requested_at=requested_at, detail=detail,
        as_json=as_json, console=Console(),
    )  # fmt: skip
