"""``sluice lineage MODEL --env ENV``: from what serves back to the data, each link checked.

A command only, added to :data:`controller.cli.app.app`; the chain is read by
:mod:`controller.commands.lineage` and checked by :mod:`controller.provenance.lineage`. Exit 0
when no link is broken, 1 naming the first broken one, 2 on bad input (an unknown environment
or model, an unreadable key), 3 when Git or the registry does not answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import TARGET_OPTION_HELP, TargetChoice, current_settings
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["lineage"]


def lineage(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model.")],
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")],
    keys: Annotated[
        list[Path] | None,
        typer.Option(
            "--key",
            help="Trusted public key (PEM) the attestation must be signed by; repeatable. "
            "Without one the signature is shown, not checked.",
        ),
    ] = None,
    target: Annotated[
        TargetChoice, typer.Option(metavar="[local|kubernetes]", help=TARGET_OPTION_HELP)
    ] = TargetChoice.local,
    repo: Annotated[
        str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the chain as JSON.")] = False,
) -> None:
    """Trace what serves MODEL in ENV back to its data: revision, pin commit, registry version,
    training run, code commit, datasets and the signed attestation, checking each link."""
    validate_model_name(model)
    validate_environment_name(env)
    from controller.provenance.signing import load_key_options

    trusted = load_key_options(keys or [])
    settings = current_settings(ctx)
    from controller.commands.lineage import run_lineage

    run_lineage(
        settings, model=model, environment=env, target=target.value, remote=repo,
        trusted_keys=trusted, as_json=as_json, console=Console(),
    )  # fmt: skip
