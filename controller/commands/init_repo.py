"""``sluice init --repo DIR``: a new GitOps repository with the layout Sluice expects.

The directory gets ``manifests/base``, an overlay per environment (its ``sluice.yaml`` and
kustomization), Sluice's serving runtime and the Argo CD Applications in ``gitops/``, each
overlay validated as Argo CD would render it, in one first commit on ``main``. Onboarding a
model into it is ``sluice init MODEL`` (:mod:`controller.commands.init`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rich.console import Console
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from controller.errors import ConfigError, InputError
from controller.manifests.environment import ENVIRONMENT_FILE
from controller.manifests.render import validate_rendered
from controller.scaffold import environment_file, serving_runtime_files
from controller.settings import Settings

__all__ = ["run_init_repo"]


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
