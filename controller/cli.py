"""The ``sluice`` command line: the composition root, and the only place errors become exit codes.

Every failure Sluice anticipates is a :class:`~controller.errors.SluiceError`; :func:`main` prints
it as one line on stderr (secrets redacted) and exits with its code. ``--verbose`` adds the
traceback for the cases where one line is not enough.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller import __version__
from controller.errors import ExitCode, SluiceError
from controller.redact import redact
from controller.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="sluice",
    help="GitOps deployment controller for ML models: registry -> Git -> gated canary.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect Sluice's configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_state: dict[str, object] = {"verbose": False, "config": None, "overrides": {}}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sluice {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
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
    _state["verbose"] = verbose
    _state["config"] = config
    _state["overrides"] = {"mlflow_tracking_uri": mlflow_tracking_uri}


def current_settings() -> Settings:
    """Settings from flags, ``--config`` (if given), the environment and the defaults."""
    config = _state["config"]
    overrides = _state["overrides"]
    return load_settings(
        config if isinstance(config, Path) else None,
        **(overrides if isinstance(overrides, dict) else {}),
    )


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the settings (every option, its type, default and meaning)."""
    typer.echo(json.dumps(Settings.model_json_schema(by_alias=False), indent=2))


@config_app.command("show")
def config_show() -> None:
    """Print the settings in effect, secrets masked."""
    settings = current_settings()
    typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its MLflow data and logs.")
    ] = Path(".sluice/demo"),
) -> None:
    """Run the loop on the embedded local stack and narrate it."""
    from controller.demo import run_demo

    run_demo(workdir=workdir, console=Console())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; :class:`SluiceError` becomes one line on stderr."""
    command = typer.main.get_command(app)
    try:
        # Standalone mode keeps click's own handling of usage errors (exit 2, usage shown).
        command.main(args=argv, prog_name="sluice", standalone_mode=True)
    except SluiceError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        sys.stderr.write(f"sluice: error: {redact(exc.message)}\n")
        return int(exc.exit_code)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return int(ExitCode.OK)
        return code if isinstance(code, int) else int(ExitCode.BAD_INPUT)
    return int(ExitCode.OK)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
