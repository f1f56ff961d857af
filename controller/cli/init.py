"""``sluice init``: onboard a registered model into an environment, or create a GitOps repository.

The work happens in :mod:`controller.commands.init` (a model) and
:mod:`controller.commands.init_repo` (a repository).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings, forge_name, forge_option
from controller.errors import InputError
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["init"]


def init(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(help="Registered model to onboard (omit with --repo DIR).")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            help="Environment to onboard MODEL into; with --repo DIR, each environment to "
            "create (default: local, staging, production).",
        ),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(help="Registry version to read (default: challenger, else the newest)."),
    ] = None,
    from_registry: Annotated[
        bool,
        typer.Option(
            "--from-registry",
            help="Read the model from the MLflow registry (the default, and today the only "
            "source).",
        ),
    ] = True,
    repo: Annotated[
        str | None,
        typer.Option(
            metavar="DIR|REMOTE",
            help="Without MODEL: an empty directory to make a GitOps repository of. With "
            "MODEL: the Git remote to onboard into (default: SLUICE_GIT_REMOTE, else origin).",
        ),
    ] = None,
    repo_url: Annotated[
        str | None,
        typer.Option(help="With --repo DIR: the URL Argo CD clones (default: the directory)."),
    ] = None,
    forge: Annotated[
        str,
        forge_option(
            "With MODEL: local: push the init branch and print the merge; github: open its "
            "pull request too."
        ),
    ] = "local",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the diff; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Onboard a registered model into an environment (a branch to merge; --forge github: a
    pull request), or create a GitOps repository with the layout Sluice expects (--repo DIR)."""
    from controller.commands.init import run_init_model
    from controller.commands.init_repo import run_init_repo

    envs = list(env or [])
    for name in envs:
        validate_environment_name(name)
    if model is None:
        if repo is None:
            raise InputError("give MODEL (with --env) to onboard, or --repo DIR to create a repo")
        if forge_name(forge) != "local":
            raise InputError(
                "--forge opens the pull request of an onboarding: give MODEL --env ENV with it, "
                "or drop --forge with --repo DIR"
            )
        run_init_repo(
            current_settings(ctx), directory=Path(repo), console=Console(),
            envs=envs or ["local", "staging", "production"], repo_url=repo_url,
        )  # fmt: skip
        return
    validate_model_name(model)
    if len(envs) != 1:
        raise InputError(f"give one environment to onboard {model} into (--env ENV)")
    run_init_model(
        current_settings(ctx), model=model, env=envs[0], version=version, remote=repo,
        dry_run=dry_run, as_json=as_json, console=Console(), forge=forge_name(forge),
    )  # fmt: skip
