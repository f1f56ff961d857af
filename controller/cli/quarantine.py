"""``sluice quarantine list`` and ``lift``: the versions proposals refuse, and letting one go.

A table of commands only, merged into :data:`controller.cli.app.app` as the ``quarantine`` group;
the rules live in :mod:`controller.proposals.quarantine`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from controller.cli.options import current_settings

if TYPE_CHECKING:
    from controller.backends.mlflow_registry import MlflowRegistry

__all__ = ["quarantine_app"]

quarantine_app = typer.Typer(
    help="Versions the rollout judged worse: list them, or lift one with a reason.",
    no_args_is_help=True,
)


def _registry(ctx: typer.Context) -> MlflowRegistry:
    from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http

    settings = current_settings(ctx)
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    return MlflowRegistry(settings.mlflow_tracking_uri)


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Registered model (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The quarantined versions, with the reason, environment and time of each."""
    from controller.proposals.quarantine import quarantined_versions

    found = quarantined_versions(_registry(ctx), model)
    console = Console()
    if as_json:
        console.print_json(json.dumps([q.to_dict() for q in found]))
        return
    if not found:
        console.print(f"no quarantined versions{f' of {model}' if model else ''}")
        return
    table = Table("model", "version", "environment", "since", "reason", title="quarantined")
    for q in found:
        table.add_row(q.model, f"v{q.version}", q.environment or "-", q.since or "-", q.reason)
    console.print(table)


@quarantine_app.command("lift")
def quarantine_lift(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model.")],
    version: Annotated[int, typer.Argument(help="Version whose quarantine to lift.", min=1)],
    reason: Annotated[
        str, typer.Option("--reason", help="Why it may roll out again (recorded on the version).")
    ],
    by: Annotated[
        str | None,
        typer.Option("--by", help="Who lifts it (recorded; default: your user name)."),
    ] = None,
) -> None:
    """Lift a version's quarantine: it may be proposed and rolled out like any other."""
    from controller.proposals.quarantine import lift

    lifted = lift(
        _registry(ctx),
        model,
        version,
        reason=reason,
        by=by or getpass.getuser(),
        now=dt.datetime.now(dt.UTC),
    )
    Console().print(
        f"lifted the quarantine of {model} v{version} (was: {lifted.reason}); "
        f"propose it with `sluice propose {model} --env ENV --version {version}`",
        soft_wrap=True,  # the command stays one copyable line when piped
        markup=False,
        highlight=False,
    )
