"""``sluice propose``: wire the real backends to :func:`controller.proposals.propose.propose`
and report.

Kept out of :mod:`controller.cli` so the CLI module stays a thin table of commands; this is
the composition root of one command (the only place its concrete backends are named).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Literal

from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

from controller.backends.git_repo import GitWorkspace, Identity
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.errors import ConfigError
from controller.evidence.signing import load_evidence_signer
from controller.null_ports import NoForge
from controller.ports import Forge
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.settings import Settings

__all__ = [
    "build_forge",
    "default_remote",
    "gitops_workspace",
    "run_propose",
    "say",
    "say_pull_requests",
]


def default_remote() -> str:
    """The ``origin`` of the repository in the working directory."""
    try:
        out = subprocess.run(
            ["git", "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired):
        raise ConfigError(
            "no Git remote to propose to: run inside a clone with an `origin`, or set "
            "SLUICE_GIT_REMOTE (or --repo)"
        ) from None
    return out.stdout.strip()


def gitops_workspace(settings: Settings, remote: str | None) -> GitWorkspace:
    """The GitOps remote (``remote``, else the configured one, else ``origin`` here) in the
    state directory's clone, committing as the configured author."""
    return GitWorkspace(
        remote or settings.git_remote or default_remote(),
        settings.state_dir / "git",
        identity=Identity(settings.git_author_name, settings.git_author_email),
    )


def build_forge(settings: Settings, kind: str) -> Forge:
    """The forge proposals go to: none (:class:`NoForge`) for ``local``, GitHub otherwise."""
    if kind == "local":
        return NoForge()
    if settings.github_token is None:
        raise ConfigError("--forge github needs a token: set SLUICE_GITHUB_TOKEN or GITHUB_TOKEN")
    if not settings.github_repository:
        raise ConfigError(
            "--forge github needs the repository: set SLUICE_GITHUB_REPOSITORY (owner/name)"
        )
    from controller.backends.github_forge import GitHubForge

    return GitHubForge(
        api_url=settings.github_api_url,
        token=settings.github_token.get_secret_value(),
        repository=settings.github_repository,
    )


def say(console: Console, text: str) -> None:
    """One line as written: never wrapped, no markup (a subject or a path may hold ``[``)."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def say_pull_requests(
    console: Console, number: int | None, url: str | None, superseded: tuple[int, ...]
) -> None:
    """The pull request a proposal opened or found, and those it closed as superseded."""
    if url:
        say(console, f"Pull request #{number}: {url}")
    for closed in superseded:
        say(console, f"Closed superseded pull request #{closed}")


def _print(result: ProposalResult, console: Console) -> None:
    """The result for a person. The diff and the commands are printed as they are, never
    wrapped: piped (``| less``, a CI log, a file) at any width they stay copyable, and a
    terminal only colours the diff."""
    for note in result.notes:
        say(console, f"Note: {note}")
    for warning in result.warnings:
        say(console, f"Warning: {warning}")
    if result.status == "already-serving":
        say(
            console,
            f"{result.model} v{result.version} already serves in {result.environment}: "
            "nothing to propose",
        )
        return
    verb = {
        "proposed": "Proposed",
        "unchanged": "Already proposed (no new commit)",
        "dry-run": "Would propose (dry run, nothing changed)",
    }[result.status]
    console.print(Text.assemble((verb, "bold"), f": {result.subject}"), soft_wrap=True)
    if result.provenance and not result.warnings:
        say(console, result.provenance)
    for line in result.evidence:
        say(console, f"Evidence: {line}")
    say(
        console,
        f"branch {result.branch} → {result.base}"
        + (f" at {result.commit[:12]}" if result.commit else ""),
    )
    if result.diff and console.is_terminal:
        console.print(
            Syntax(
                result.diff, "diff", theme="ansi_dark", background_color="default", word_wrap=True
            )
        )
    elif result.diff:
        say(console, result.diff.rstrip("\n"))
    say_pull_requests(console, result.pull_request, result.pull_request_url, result.superseded)
    if result.merge_command:
        say(
            console,
            "To deploy, merge it as a pull request would:\n"
            f"  sluice local merge {result.model} --env {result.environment}\n"
            f"or with git, in a clone of the remote:\n  {result.merge_command}",
        )


def run_propose(
    settings: Settings,
    request: ProposalRequest,
    *,
    forge: Literal["github", "local"],
    remote: str | None,
    as_json: bool,
    console: Console,
) -> ProposalResult:
    """Build the backends from settings, propose, and print the result."""
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    workspace = gitops_workspace(settings, remote)
    result = propose(
        request,
        registry=MlflowRegistry(settings.mlflow_tracking_uri),
        workspace=workspace,
        forge=build_forge(settings, forge),
        attestations=MlflowAttestations(settings.mlflow_tracking_uri),
        evidence=MlflowEvidence(settings.mlflow_tracking_uri),
        # Only an override is signed here, so a key is read (and checked) only for one.
        evidence_signer=load_evidence_signer(os.environ) if request.override else None,
    )
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    else:
        _print(result, console)
    return result
