"""``sluice evidence show``, ``check`` and ``record-approval``: a version's signed evidence,
whether it may be proposed to an environment, and the approval of its pull request recorded.

A table of commands only, merged into :data:`controller.cli.app.app` as the ``evidence``
group; the work is :mod:`controller.commands.evidence`'s and
:mod:`controller.commands.approval`'s. ``check`` exits 0 (the version may be proposed), 1
(evidence missing: one line per piece) or 2 (bad input: an unknown environment, model or
version, a controller key missing from Git); ``record-approval`` 0 (recorded, now or before),
1 (no approval counts yet) or 2; both 3 when Git, the registry or GitHub does not answer.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from controller.cli.options import current_settings
from controller.text.ref_names import validate_environment_name, validate_model_name

__all__ = ["evidence_app"]

evidence_app = typer.Typer(
    help="Signed evidence of model versions (promotion by evidence): list it, check it, "
    "record a pull request's approval.",
    no_args_is_help=True,
)

_REPO_HELP = "Git remote (default: SLUICE_GIT_REMOTE, else origin)."


@evidence_app.command("show")
def show(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model.")],
    version: Annotated[int, typer.Option("--version", help="Version to show.", min=1)],
    repo: Annotated[str | None, typer.Option(help=_REPO_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every piece of evidence on a version: kind, environment, when, the signer's key, its
    numbers, and whether it verifies against that environment's controller keys and the
    version's bytes as served now (or the link that failed)."""
    validate_model_name(model)
    settings = current_settings(ctx)
    from controller.commands.evidence import evidence_sources, run_evidence_show

    run_evidence_show(
        evidence_sources(settings, repo), model, version, as_json=as_json, console=Console()
    )


@evidence_app.command("check")
def check(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model.")],
    env: Annotated[str, typer.Option("--env", help="Environment (manifests/overlays/ENV).")],
    version: Annotated[
        int | None, typer.Option("--version", help="Version to check.", min=1)
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--alias", help="Registry alias naming the version instead.")
    ] = None,
    with_approval: Annotated[
        bool,
        typer.Option(
            "--with-approval",
            help="Require the pull request's approval too, when the policy asks for one "
            "(as a merge would); without it the check is a proposal's.",
        ),
    ] = False,
    repo: Annotated[str | None, typer.Option(help=_REPO_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether a version may be proposed to ENV under its promotion: policy: exit 0 when its
    evidence is complete (or an override by hand is recorded), 1 with one line per piece
    missing, 2 on bad input."""
    if (version is None) == (alias is None):
        raise typer.BadParameter("give --version or --alias (one of them)")
    validate_model_name(model)
    validate_environment_name(env)
    settings = current_settings(ctx)
    from controller.commands.evidence import evidence_sources, run_evidence_check

    run_evidence_check(
        evidence_sources(settings, repo), model, version=version, alias=alias, environment=env,
        as_json=as_json, console=Console(), with_approval=with_approval,
    )  # fmt: skip


@evidence_app.command("record-approval")
def record_approval(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", help="Environment the pull request proposes to.")],
    pr: Annotated[int, typer.Option("--pr", help="The proposal's pull request number.", min=1)],
    repo: Annotated[str | None, typer.Option(help=_REPO_HELP)] = None,
) -> None:
    """Record the approval of a proposal's pull request in ENV as signed approval evidence,
    as sluice serve does (the Promote workflow runs it when a review approves one): signed
    with SLUICE_EVIDENCE_KEY, once (a second run records nothing), then the pull request's
    sluice/evidence status and Evidence section updated. Exit 0 when recorded (now or
    before), 1 when no approval counts yet, 2 on bad input. Needs SLUICE_GITHUB_TOKEN."""
    validate_environment_name(env)
    settings = current_settings(ctx)
    from controller.commands.approval import approval_sources, run_record_approval

    run_record_approval(
        approval_sources(settings, repo), environment=env, number=pr, console=Console()
    )
