"""``sluice propose``: a registry version proposed for an environment, as a branch and a PR.

The work happens in :mod:`controller.commands.propose`.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings, forge_name, forge_option
from controller.errors import InputError
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["propose"]


def propose(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")],
    version: Annotated[
        int | None, typer.Option(help="Registry version to propose (default: follow --alias).")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(help="Registry alias to resolve (default: the environment's, challenger)."),
    ] = None,
    forge: Annotated[
        str, forge_option("local: push a branch and print the merge; github: open a PR too.")
    ] = "local",
    repo: Annotated[
        str | None, typer.Option(help="Git remote (default: SLUICE_GIT_REMOTE, else origin).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff and message; change nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Propose past missing evidence of an environment with promotion:, with "
            "--reason; recorded as an override signed with SLUICE_EVIDENCE_KEY. Never past a "
            "quarantine (lift it: sluice quarantine lift), broken evidence or provenance.",
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why --force goes past the evidence (recorded, signed)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Propose a registry version for an environment: a branch and (GitHub) a pull request."""
    if version is not None and alias is not None:
        raise typer.BadParameter("give --version or --alias, not both")
    if force and not (reason or "").strip():
        raise InputError(
            "--force needs --reason TEXT: it proposes past missing evidence of an environment "
            "with promotion:, recorded as a signed override; it never proposes a quarantined "
            "version (lift it: `sluice quarantine lift MODEL VERSION --reason TEXT`), and a "
            "failed provenance check has no override"
        )
    if reason is not None and not force:
        raise typer.BadParameter("--reason goes with --force")
    validate_model_name(model)
    validate_environment_name(env)
    settings = current_settings(ctx)
    # Imported once the input is checked: bad input is refused in a fraction of a second.
    from controller.commands.propose import run_propose
    from controller.proposals.propose import ProposalRequest
    from controller.proposals.propose_evidence import Override

    run_propose(
        settings,
        ProposalRequest(
            model=model, environment=env, version=version, alias=alias,
            dry_run=dry_run, restart_merged=True,
            override=Override(by=getpass.getuser(), reason=reason or "") if force else None,
        ),
        forge=forge_name(forge),
        remote=repo,
        as_json=as_json,
        console=Console(),
    )  # fmt: skip
