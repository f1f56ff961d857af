"""``sluice config schema`` and ``show``: the settings' JSON schema, and the values in effect."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from controller.cli.options import current_settings, current_sources
from controller.settings import Settings

__all__ = ["SchemaKind", "config_app"]

config_app = typer.Typer(help="Inspect Sluice's configuration.", no_args_is_help=True)


class SchemaKind(StrEnum):
    """Which configuration's schema to print."""

    settings = "settings"
    environment = "environment"


@config_app.command("schema")
def config_schema(
    kind: Annotated[
        SchemaKind,
        typer.Argument(help="settings (sluice.yaml, env) or environment (overlay sluice.yaml)."),
    ] = SchemaKind.settings,
) -> None:
    """Print a JSON schema: every option, its type, default and meaning."""
    if kind is SchemaKind.environment:
        from controller.manifests.environment import EnvironmentConfig

        typer.echo(json.dumps(EnvironmentConfig.model_json_schema(by_alias=True), indent=2))
        return
    typer.echo(json.dumps(Settings.model_json_schema(by_alias=False), indent=2))


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the values only, as JSON.")
    ] = False,
) -> None:
    """Print the settings in effect, secrets masked, and where each came from (flag, env,
    config file, local stack, default)."""
    settings = current_settings(ctx)
    values = settings.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    sources = current_sources(ctx, settings)
    for name, value in values.items():
        typer.echo(f"{name:<34} {json.dumps(value)}  ({sources[name]})")
