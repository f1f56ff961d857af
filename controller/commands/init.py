"""``sluice init``: onboard a registered model into an environment, or start a GitOps repository.

``sluice init MODEL --env ENV`` writes the release (:mod:`controller.onboard`) on the branch
``sluice/ENV/MODEL/init`` of the GitOps remote, validated as Argo CD would render it, and prints
the merge to run: onboarding is a reviewed change like every proposal, and ``sluice local
merge`` (or a pull request) lands it before the first version is proposed. With a forge
(``--forge github``) it opens that pull request, or updates the open one, as ``sluice propose``
does for a version: the same branch, the same merge. ``sluice init --repo
DIR`` turns an empty directory into a repository with the layout Sluice expects.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.syntax import Syntax
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from controller.backends.git_repo import GitWorkspace, Identity
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.propose import build_forge, default_remote
from controller.domain import ChangeRequest
from controller.environment import ENVIRONMENT_FILE, parse_environment
from controller.errors import ConfigError, InputError, ModelNotFound
from controller.forge_limits import fit_body
from controller.onboard import (
    RUNTIME_DIR,
    Onboarding,
    choose_format,
    inference_service_name,
    runtimes_in,
    scaffold_release,
)
from controller.ports import Forge
from controller.redact import redact
from controller.render import validate_rendered
from controller.scaffold import environment_file, serving_runtime_files
from controller.settings import Settings

__all__ = [
    "InitResult",
    "init_branch",
    "init_pull_request_body",
    "run_init_model",
    "run_init_repo",
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


def _environment_file(env: str) -> str:
    """The environment's sluice.yaml: this project's own for local/staging/production with no
    release, else a staging-like one."""
    text = environment_file(env) or environment_file("staging")
    assert text is not None, "the package ships the staging environment"
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    document = yaml.load(text)
    document["name"] = env
    document["releases"] = CommentedSeq()
    document.yaml_set_comment_before_after_key(
        "releases", before="Added by `sluice init MODEL --env " + env + "`, one per model."
    )
    from io import StringIO

    out = StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _repo_files(envs: list[str], repo_url: str) -> dict[str, str]:
    files: dict[str, str] = {
        "manifests/base/kustomization.yaml": (
            "# The InferenceServices every environment shares; `sluice init MODEL --env ENV`\n"
            "# adds one per model.\n"
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"
        ),
    }
    for name, text in serving_runtime_files().items():
        files[f"manifests/serving-runtime/{name}"] = text
    for env in envs:
        files[f"manifests/overlays/{env}/kustomization.yaml"] = (
            f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"namespace: models-{env}\nresources:\n  - ../../base\n"
            "# The model pins, one patch per release (added by `sluice init`); Sluice edits them.\n"
            "patches: []\n"
        )
        files[f"manifests/overlays/{env}/{ENVIRONMENT_FILE}"] = _environment_file(env)
    cluster = [env for env in envs if env != "local"]
    files.update(_gitops_files(cluster, repo_url))
    return files


def _gitops_files(envs: list[str], repo_url: str) -> dict[str, str]:
    elements = "".join(f"          - environment: {env}\n" for env in envs) or "          []\n"
    destinations = "".join(
        f"    - server: https://kubernetes.default.svc\n      namespace: models-{env}\n"
        for env in envs
    )
    namespaces = "".join(
        f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: models-{env}\n"
        '  annotations:\n    argocd.argoproj.io/sync-wave: "-2"\n'
        for env in envs
    )
    return {
        "gitops/kustomization.yaml": (
            "# Argo CD for this repository's environments: `kubectl apply -k gitops/` once.\n"
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
            "  - namespaces.yaml\n  - project-models.yaml\n  - serving-runtime.yaml\n"
            "  - applicationset-models.yaml\n"
        ),
        "gitops/namespaces.yaml": namespaces.removeprefix("---\n"),
        "gitops/project-models.yaml": (
            "# The model environments may hold InferenceServices (and the shadow phase's\n"
            "# VirtualService) in their models-ENV namespaces, from this repository only.\n"
            "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n"
            "  name: sluice-models\n  namespace: argocd\n"
            '  annotations:\n    argocd.argoproj.io/sync-wave: "-1"\n'
            "spec:\n  description: Sluice model environments\n"
            f"  sourceRepos:\n    - {repo_url}\n  destinations:\n{destinations}"
            "  clusterResourceWhitelist: []\n  namespaceResourceWhitelist:\n"
            "    - group: serving.kserve.io\n      kind: InferenceService\n"
            "    - group: networking.istio.io\n      kind: VirtualService\n"
        ),
        "gitops/serving-runtime.yaml": (
            "# Sluice's model server (manifests/serving-runtime), before the environments.\n"
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n"
            "  name: sluice-serving-runtime\n  namespace: argocd\n"
            '  annotations:\n    argocd.argoproj.io/sync-wave: "0"\n'
            "spec:\n  project: default\n  source:\n"
            f"    repoURL: {repo_url}\n    targetRevision: main\n"
            "    path: manifests/serving-runtime\n"
            "  destination:\n    server: https://kubernetes.default.svc\n"
            "  syncPolicy:\n    automated:\n      selfHeal: true\n"
        ),
        "gitops/applicationset-models.yaml": (
            "# One Application per environment (sluice-ENV, as `sluice rollout` looks it up),\n"
            "# syncing manifests/overlays/ENV into models-ENV.\n"
            "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n"
            "  name: sluice-models\n  namespace: argocd\n"
            '  annotations:\n    argocd.argoproj.io/sync-wave: "1"\n'
            "spec:\n  goTemplate: true\n"
            '  goTemplateOptions: ["missingkey=error"]\n'
            f"  generators:\n    - list:\n        elements:\n{elements}"
            "  syncPolicy:\n    preserveResourcesOnDeletion: true\n"
            "  template:\n    metadata:\n      name: sluice-{{ .environment }}\n"
            "    spec:\n      project: sluice-models\n      source:\n"
            f"        repoURL: {repo_url}\n        targetRevision: main\n"
            "        path: manifests/overlays/{{ .environment }}\n"
            "      destination:\n        server: https://kubernetes.default.svc\n"
            "        namespace: models-{{ .environment }}\n"
            "      syncPolicy:\n        automated:\n          selfHeal: true\n"
        ),
    }


def run_init_repo(
    settings: Settings,
    *,
    directory: Path,
    envs: list[str],
    repo_url: str | None,
    console: Console,
) -> list[str]:
    """Create the GitOps repository in ``directory`` (empty or absent); return the files."""
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(
            f"{directory} is not an empty directory; give a new or empty one (--repo DIR), "
            "or onboard a model into an existing repository with `sluice init MODEL --env ENV`"
        )
    if not envs:
        raise InputError("give at least one environment (--env)")
    files = _repo_files(envs, repo_url or directory.as_uri())
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for env in envs:  # what `sluice init MODEL` and Argo CD will read must be valid already
        validate_rendered(directory / "manifests" / "overlays" / env)
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": settings.git_author_name,
        "GIT_AUTHOR_EMAIL": settings.git_author_email,
        "GIT_COMMITTER_NAME": settings.git_author_name,
        "GIT_COMMITTER_EMAIL": settings.git_author_email,
    }
    git = shutil.which("git") or "git"
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        # Pushes to main (a merge) update this checkout when it is clean, as a forge would.
        ["config", "receive.denyCurrentBranch", "updateInstead"],
        ["add", "--all"],
        ["commit", "--quiet", "--no-verify", "-m", _REPO_MESSAGE.format(envs=", ".join(envs))],
    ):
        done = subprocess.run(
            [git, *args], cwd=directory, env=git_env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ConfigError(f"git {args[0]} in {directory} failed: {done.stderr.strip()}")
    console.print(
        f"Created the GitOps repository {directory} (branch main, environments {', '.join(envs)}):",
        highlight=False,
        soft_wrap=True,
    )
    for relative in files:
        console.print(f"  wrote {relative}", highlight=False, soft_wrap=True)
    first = "local" if "local" in envs else envs[0]
    console.print(
        "Next: onboard a registered model into it, then propose and merge a version:\n"
        f"  export SLUICE_GIT_REMOTE={directory}\n"
        f"  sluice init MODEL --env {first}\n"
        f"  sluice local merge MODEL --env {first}\n"
        + ("  (sluice local up --repo " + str(directory) + " serves it locally)\n")
        + "Argo CD: set repoURL in gitops/ to where you push it, then kubectl apply -k gitops/",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    return list(files)


_REPO_MESSAGE = """sluice init --repo: a GitOps repository for Sluice ({envs})

manifests/base for the InferenceServices, manifests/overlays/ENV per environment (its
sluice.yaml and kustomization), manifests/serving-runtime (Sluice's model server), and gitops/
with the Argo CD Applications that sync them."""
