"""The ``sluice`` Typer app: its root options, and every verb in the order help lists them.

Each verb lives in a module of its own (:mod:`controller.cli.propose`, :mod:`controller.cli.local`,
...) and leaves the work to its module in :mod:`controller.commands`; this one names them all.
The root callback records the root options in the click context's object
(:class:`~controller.cli.options.RootOptions`), where every verb reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller import __version__
from controller.cli.config import config_app
from controller.cli.demo import demo
from controller.cli.drift import drift
from controller.cli.evidence import evidence_app
from controller.cli.feedback import feedback
from controller.cli.graph import graph_app
from controller.cli.init import init
from controller.cli.lineage import lineage
from controller.cli.local import local_app
from controller.cli.options import RootOptions
from controller.cli.propose import propose
from controller.cli.provenance import provenance_app
from controller.cli.quarantine import quarantine_app
from controller.cli.retrain import retrain_app
from controller.cli.rollout import rollout_app
from controller.cli.serve import serve

__all__ = ["app"]

app = typer.Typer(
    name="sluice",
    help="GitOps deployment controller for ML models: registry -> Git -> gated canary.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sluice {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks with errors.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML config file (default: ./sluice.yaml if present, or $SLUICE_CONFIG).",
            dir_okay=False,
        ),
    ] = None,
    mlflow_tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--mlflow-tracking-uri",
            help="MLflow tracking server (overrides MLFLOW_TRACKING_URI and the config file).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    # Into the object main() handed the context (a fresh one when something else invokes the
    # app), so main() still sees them once the command has ended, in error or not.
    options = ctx.ensure_object(RootOptions)
    options.verbose = verbose
    options.config = config
    options.mlflow_tracking_uri = mlflow_tracking_uri


# Typer lists a group's own commands first, then its sub-apps in the order they were added.
for command in (propose, serve, drift, feedback, lineage, init, demo):
    app.command()(command)
app.add_typer(config_app, name="config")
app.add_typer(rollout_app)  # rollout, rollback, status
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(provenance_app, name="provenance")
app.add_typer(evidence_app, name="evidence")
app.add_typer(graph_app, name="graph")
app.add_typer(retrain_app, name="retrain")
app.add_typer(local_app, name="local")
