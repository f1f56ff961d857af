"""``sluice init``: onboard a registered model into an environment, or start a GitOps repository.

``sluice init MODEL --env ENV`` writes the release (:mod:`controller.manifests.onboard`) on the
branch ``sluice/ENV/MODEL/init`` of the GitOps remote, validated as Argo CD would render it, and
prints the merge to run: onboarding is a reviewed change like every proposal, and ``sluice local
merge`` (or a pull request) lands it before the first version is proposed. With a forge
(``--forge github``) it opens that pull request, or updates the open one, as ``sluice propose``
does for a version: the same branch, the same merge. ``sluice init --repo DIR`` turns an empty
directory into a repository with the layout Sluice expects (:mod:`controller.commands.init_repo`).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.syntax import Syntax

from controller.backends.git_repo import GitWorkspace, Identity
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.propose import build_forge, default_remote
from controller.domain import ChangeRequest
from controller.errors import ConfigError, InputError, ModelNotFound
from controller.manifests.environment import ENVIRONMENT_FILE, parse_environment
from controller.manifests.onboard import (
    RUNTIME_DIR,
    Onboarding,
    choose_format,
    inference_service_name,
    runtimes_in,
    scaffold_release,
)
from controller.manifests.render import validate_rendered
from controller.ports import Forge
from controller.redact import redact
from controller.settings import Settings
from controller.text.forge_limits import fit_body

__all__ = [
    "InitResult",
    "init_branch",
    "init_pull_request_body",
    "run_init_model",
]


def init_branch(environment: str, model: str) -> str:
    """The branch ``sluice init`` commits a release to (``sluice local merge`` merges it)."""
    return f"sluice/{environment}/{model}/init"


@dataclass(frozen=True)
class InitResult:
    """What ``sluice init MODEL`` did, as ``--json`` prints it."""

    status: str  # "initialized", "already-proposed", "unchanged" or "dry-run"
    model: str
    environment: str
    version: int
    model_format: str
    runtime: str
    payload_rows: int
    payload_from: str
    branch: str
    base: str
    commit: str | None
    files: list[str] = field(default_factory=list)
    diff: str = ""
    flavours: list[str] = field(default_factory=list)
    #: The pull request of the init branch (``--forge github``), opened or updated.
    pull_request: int | None = None
    pull_request_url: str | None = None


def _version(registry: MlflowRegistry, model: str, version: int | None) -> int:
    if version is not None:
        return registry.get_version(model, version).version
    versions = registry.versions(model)
    if not versions:
        raise ModelNotFound(
            f"model {model!r} is not in the registry at {redact(registry.tracking_uri)}; "
            f"register a version first (mlflow.<flavour>.log_model(..., "
            f'registered_model_name="{model}"))'
        )
    with_alias = [v for v in versions if "challenger" in v.aliases]
    return (with_alias or versions)[-1].version


def _read_model(
    registry: MlflowRegistry, model: str, version: int
) -> tuple[tuple[str, ...], list[dict[str, object]], str]:
    """The version's flavours, the rows its smoke will send, and where they come from."""
    mlmodel = registry.mlmodel(model, version)
    flavours = tuple(str(f) for f in (mlmodel.get("flavors") or {}))
    rows = registry.input_rows(model, version, 100)
    return (
        flavours,
        rows,
        "input example" if mlmodel.get("saved_input_example_info") else ("signature"),
    )


def _intent_to_add(worktree: Path) -> None:
    """Let ``git diff`` show new files (dry run only: the preview resets the tree after)."""
    subprocess.run(
        ["git", "add", "--intent-to-add", "--all"], cwd=worktree, check=True, capture_output=True
    )


def _subject(model: str, env: str, model_format: str, version: int) -> str:
    """The init commit's subject, and its pull request's title."""
    return f"sluice init: serve {model} in {env} ({model_format}, from v{version})"


def init_pull_request_body(result: InitResult) -> str:
    """The init pull request's body: what the onboarding adds and from which version, the
    files, the diff, and the next step (a hidden marker names model, environment, version)."""
    files = "\n".join(f"- `{path}`" for path in result.files)
    flavours = ", ".join(result.flavours) or "none"
    return fit_body(
        f"<!-- sluice:init model={result.model} env={result.environment} "
        f"version={result.version} -->\n"
        f"## Onboard {result.model} into {result.environment}\n\n"
        f"Adds the `{result.model}` release to `{result.environment}` (branch "
        f"`{result.base}`), read from the registry's **v{result.version}**:\n\n"
        f"| | |\n|---|---|\n"
        f"| model | `{result.model}` |\n"
        f"| environment | `{result.environment}` |\n"
        f"| version read | v{result.version} |\n"
        f"| MLflow flavours | {flavours} |\n"
        f"| modelFormat, runtime | `{result.model_format}`, `{result.runtime}` |\n"
        f"| smoke and load-test rows | {result.payload_rows}, from its {result.payload_from} |\n"
        "\nThe release serves no version yet: once this is merged, propose one with "
        f"`sluice propose {result.model} --env {result.environment}`. The rendered overlay "
        "validates against KServe's InferenceService schema (status `sluice/validate`).\n\n"
        f"### Files\n\n{files}\n\n"
        f"### Diff\n\n```diff\n{result.diff.rstrip()}\n```\n"
    )


def _open_pull_request(forge: Forge, result: InitResult) -> InitResult:
    """Open the init branch's pull request, or update the open one (never a second)."""
    assert result.commit is not None
    pull = forge.open_or_update(
        ChangeRequest(
            branch=result.branch,
            base=result.base,
            title=_subject(result.model, result.environment, result.model_format, result.version),
            body=init_pull_request_body(result),
            labels=("sluice", f"model:{result.model}", f"env:{result.environment}"),
            head_sha=result.commit,
            # An onboarding supersedes nothing (an empty prefix closes no pull request).
            supersedes_prefix="",
        )
    )
    forge.report_status(
        result.commit,
        context="sluice/validate",
        state="success",
        description="Rendered overlay validates against KServe's InferenceService schema",
    )
    return InitResult(
        **{**asdict(result), "pull_request": pull.number, "pull_request_url": pull.url}
    )


def run_init_model(
    settings: Settings,
    *,
    model: str,
    env: str,
    version: int | None,
    remote: str | None,
    dry_run: bool,
    as_json: bool,
    console: Console,
    forge: Literal["local", "github"] = "local",
) -> InitResult:
    """Scaffold ``model``'s release in ``env`` on its init branch and, with ``forge``
    ``github``, open (or update) its pull request; print what was written."""
    github = build_forge(settings, forge)  # a missing token fails before anything is read
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    number = _version(registry, model, version)
    flavours, rows, rows_from = _read_model(registry, model, number)
    workspace = GitWorkspace(
        remote or settings.git_remote or default_remote(),
        settings.state_dir / "git",
        identity=Identity(settings.git_author_name, settings.git_author_email),
    )
    branch = init_branch(env, model)
    with workspace.locked():
        workspace.sync()
        default = workspace.default_branch()
        env_path = f"manifests/overlays/{env}/{ENVIRONMENT_FILE}"
        text = workspace.read(default, env_path)
        if text is None:
            known = workspace.list_dir(default, "manifests/overlays")
            raise ConfigError(
                f"unknown environment {env!r}: {env_path} is not on {default} of "
                f"{redact(workspace.remote_url)} (known: {', '.join(sorted(known)) or 'none'}); "
                "give one of them (--env)"
            )
        base = parse_environment(text, source=f"{env_path}@{default}", environment=env).branch
        names = [n for n in workspace.list_dir(base, RUNTIME_DIR) if n.endswith((".yaml", ".yml"))]
        texts = workspace.read_many(base, [f"{RUNTIME_DIR}/{n}" for n in names])
        runtimes = runtimes_in(text for text in texts.values() if text is not None)
        model_format, runtime = choose_format(model, number, flavours, runtimes)
        if not rows:
            raise InputError(
                f"{model} v{number} logged neither an input example nor a column signature, "
                "so the smoke and the load test would have nothing to send; log the model with "
                "input_example=<a few rows> (or signature=...) and register it again"
            )
        plan = Onboarding(
            model=model,
            environment=env,
            version=number,
            inference_service=inference_service_name(model),
            flavours=flavours,
            model_format=model_format,
            runtime=runtime,
            rows=tuple(rows),
            rows_from=rows_from,
        )
        written: list[str] = []

        def edit(worktree: Path, *, preview: bool = False) -> None:
            written[:] = scaffold_release(worktree, plan)
            if written:
                validate_rendered(worktree / "manifests" / "overlays" / env)
            if preview:
                _intent_to_add(worktree)

        # Already on the environment's branch: nothing to do, and no branch to push.
        workspace.preview(branch=base, base=base, edit=edit, path="manifests")
        result = InitResult(
            status="unchanged",
            model=model,
            environment=env,
            version=number,
            model_format=model_format,
            runtime=runtime.name,
            payload_rows=len(plan.rows),
            payload_from=plan.rows_from,
            branch=branch,
            base=base,
            commit=workspace.remote_sha(base),
            flavours=list(plan.flavours),
        )
        if written and dry_run:
            diff = workspace.preview(
                branch=branch,
                base=base,
                edit=lambda tree: edit(tree, preview=True),
                path="manifests",
            )
            result = InitResult(
                **{**asdict(result), "status": "dry-run", "files": list(written), "diff": diff}
            )
        elif written:
            files = list(written)
            github.check_access()  # a bad token or repository fails before the push
            outcome = workspace.commit_and_push(
                branch=branch,
                base=base,
                edit=edit,
                message=(
                    f"{_subject(model, env, model_format, number)}\n\n"
                    f"Adds the {model} release: base InferenceService (modelFormat "
                    f"{model_format}, runtime {runtime.name}, from the MLmodel's flavours "
                    f"{', '.join(plan.flavours)}), the {env} pin and patch, the release in "
                    f"{ENVIRONMENT_FILE}, and a V1 request body from v{number}'s "
                    f"{plan.rows_from}.\n\nFiles: {', '.join(files)}"
                ),
            )
            result = InitResult(
                **{
                    **asdict(result),
                    "status": "initialized" if outcome.committed else "already-proposed",
                    "commit": outcome.sha,
                    "files": files,
                    "diff": workspace.diff(f"refs/remotes/origin/{base}", outcome.sha, "manifests"),
                }
            )
    if github.opens_pull_requests and result.status in ("initialized", "already-proposed"):
        result = _open_pull_request(github, result)
    if as_json:
        console.print_json(json.dumps(asdict(result)))
    else:
        _print(result, console)
    return result


def _print(result: InitResult, console: Console) -> None:
    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True, markup=False)

    what = (
        f"{result.model} (v{result.version}: modelFormat {result.model_format}, runtime "
        f"{result.runtime}; {result.payload_rows} payload rows from its {result.payload_from})"
    )
    if result.status == "unchanged":
        say(f"{what} is already set up in {result.environment} on {result.base}: nothing to do")
        return
    verb = {
        "initialized": "Onboarded",
        "already-proposed": "Already onboarded (no new commit)",
        "dry-run": "Would onboard (dry run, nothing written)",
    }[result.status]
    at = f" at {result.commit[:12]}" if result.commit and result.status != "dry-run" else ""
    say(f"{verb} {what} into {result.environment}: branch {result.branch} → {result.base}{at}")
    for path in result.files:
        say(f"  {'would write' if result.status == 'dry-run' else 'wrote'} {path}")
    if result.diff:
        console.print(
            Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"),
            soft_wrap=True,
        )
    if result.pull_request_url:
        say(f"Pull request #{result.pull_request}: {result.pull_request_url}")
        say(
            "Next: review and merge the pull request (or, on the local stack, "
            f"`sluice local merge {result.model} --env {result.environment} --forge github`), "
            "then propose a version:\n"
            f"  sluice propose {result.model} --env {result.environment} --forge github"
        )
    elif result.status != "dry-run":
        say(
            "Next: merge it as a pull request would, then propose a version:\n"
            f"  sluice local merge {result.model} --env {result.environment}\n"
            f"  sluice propose {result.model} --env {result.environment}"
        )


# -- sluice init --repo DIR --------------------------------------------------------------------
