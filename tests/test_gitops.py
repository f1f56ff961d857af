"""gitops/ renders, validates, and gives Argo CD exactly what the manifests need, nothing more."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from schemas import ROOT, render, schema_errors

from controller.manifests.environment import load_environment
from controller.manifests.render import render_overlay
from controller.settings import Settings
from controller.shadow.mirror import mirror_virtual_service, write_shadow_mirror
from controller.text.commit_message import ProposalMessage, render_proposal_message

#: Environments the ApplicationSet deploys; local is the embedded target of `sluice local up`.
CLUSTER_ENVIRONMENTS = ("staging", "production")
#: Kinds that have no namespace (the rendered manifests use no other cluster-scoped kind).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterServingRuntime"}
_PARAMETER = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def group_kind(document: dict[str, Any]) -> tuple[str, str]:
    group = document["apiVersion"].rpartition("/")[0]
    return group, document["kind"]


def wave(document: dict[str, Any]) -> int:
    annotations = document["metadata"].get("annotations") or {}
    return int(annotations.get("argocd.argoproj.io/sync-wave", "0"))


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def substitute(node: Any, parameters: dict[str, Any]) -> Any:
    """Argo CD's goTemplate for the one construct the ApplicationSet uses, ``{{ .name }}``,
    with ``missingkey=error``: an unknown parameter raises KeyError."""
    if isinstance(node, dict):
        return {key: substitute(value, parameters) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(value, parameters) for value in node]
    if not isinstance(node, str):
        return node

    def value(match: re.Match[str]) -> str:
        found = parameters[match.group(1)]
        return json.dumps(found) if isinstance(found, bool) else str(found)

    text = _PARAMETER.sub(value, node)
    assert "{{" not in text, f"template construct this test cannot evaluate: {node!r}"
    return text


def generate_applications(appset: dict[str, Any]) -> list[dict[str, Any]]:
    """The Applications the ApplicationSet's list generator makes."""
    spec = appset["spec"]
    assert spec["goTemplate"] is True
    assert "missingkey=error" in spec["goTemplateOptions"]
    (generator,) = spec["generators"]
    applications = []
    for element in generator["list"]["elements"]:
        template = substitute(copy.deepcopy(spec["template"]), element)
        if "templatePatch" in spec:
            deep_merge(template, yaml.safe_load(substitute(spec["templatePatch"], element)))
        metadata = {**template["metadata"], "namespace": appset["metadata"]["namespace"]}
        applications.append(
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": metadata,
                "spec": template["spec"],
            }
        )
    return applications


@pytest.fixture(scope="module")
def gitops() -> list[dict[str, Any]]:
    return render("gitops")


@pytest.fixture(scope="module")
def model_applications(gitops: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (appset,) = by_kind(gitops, "ApplicationSet").values()
    return {a["metadata"]["name"]: a for a in generate_applications(appset)}


@pytest.fixture(scope="module")
def platform_applications(gitops: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_kind(gitops, "Application")


def produced(path: str, destination_namespace: str) -> tuple[set[tuple[str, str]], ...]:
    """Namespaced kinds, cluster-scoped kinds and namespaces that ``path`` renders to."""
    namespaced, cluster, namespaces = set(), set(), set()
    for document in render(path):
        if document["kind"] in CLUSTER_SCOPED:
            cluster.add(group_kind(document))
        else:
            namespaced.add(group_kind(document))
            namespaces.add(document["metadata"].get("namespace", destination_namespace))
    return namespaced, cluster, namespaces


def produced_in_shadow(path: str, destination_namespace: str, tmp: Path) -> set[tuple[str, str]]:
    """Kinds ``path`` renders to while a shadow phase's mirror is in it, as the rollout writes
    it (into a copy of manifests/)."""
    shutil.copytree(ROOT / "manifests", tmp / "manifests")
    overlay = tmp / path
    for name in by_kind(render(path), "InferenceService"):
        mirror = mirror_virtual_service(
            name, destination_namespace, f"{name}-predictor-00001", f"{name}-predictor-00002", 100
        )
        write_shadow_mirror(overlay, mirror)
    return {group_kind(document) for document in render_overlay(overlay)}


def allowed(project: dict[str, Any], key: str) -> set[tuple[str, str]]:
    return {(entry["group"], entry["kind"]) for entry in project["spec"].get(key, [])}


def test_gitops_renders_and_every_object_validates(gitops: list[dict[str, Any]]) -> None:
    """gitops/ renders with kubectl kustomize and each object passes its kind's schema."""
    assert {d["kind"] for d in gitops} == {
        "Namespace", "AppProject", "Application", "ApplicationSet", "ConfigMap",
    }  # fmt: skip
    assert [e for d in gitops for e in schema_errors(d)] == []


@pytest.mark.parametrize("environment", ["local", "staging", "production"])
def test_every_overlay_validates_against_the_upstream_crd(environment: str) -> None:
    """Each overlay renders to InferenceServices KServe's CRD accepts, unknown fields refused."""
    documents = render(f"manifests/overlays/{environment}")
    assert {d["kind"] for d in documents} == {"InferenceService"}
    assert [e for d in documents for e in schema_errors(d)] == []


def test_applicationset_makes_one_application_per_cluster_environment(
    model_applications: dict[str, dict[str, Any]],
) -> None:
    """sluice-staging and sluice-production, as `sluice rollout` names them, each valid."""
    naming = Settings.model_fields["argocd_application"].default
    assert set(model_applications) == {naming.format(environment=e) for e in CLUSTER_ENVIRONMENTS}
    assert [e for a in model_applications.values() for e in schema_errors(a)] == []


@pytest.mark.parametrize("environment", CLUSTER_ENVIRONMENTS)
def test_each_application_syncs_its_overlay_into_its_namespace(
    environment: str, model_applications: dict[str, dict[str, Any]]
) -> None:
    """The Application's path renders to objects in exactly its destination namespace, from the
    branch the environment's sluice.yaml names."""
    spec = model_applications[f"sluice-{environment}"]["spec"]
    assert spec["source"]["path"] == f"manifests/overlays/{environment}"
    assert spec["source"]["targetRevision"] == load_environment(ROOT, environment).branch
    namespaces = {d["metadata"]["namespace"] for d in render(spec["source"]["path"])}
    assert namespaces == {spec["destination"]["namespace"]}
    assert (
        Settings.model_fields["kubernetes_namespace"].default.format(environment=environment)
        == spec["destination"]["namespace"]
    )


def test_staging_prunes_and_heals_production_heals_without_pruning(
    model_applications: dict[str, dict[str, Any]],
) -> None:
    """Both sync automatically; only staging deletes what Git no longer has."""
    staging = model_applications["sluice-staging"]["spec"]["syncPolicy"]["automated"]
    production = model_applications["sluice-production"]["spec"]["syncPolicy"]["automated"]
    assert staging == {"prune": True, "selfHeal": True}
    assert production == {"prune": False, "selfHeal": True}


def test_models_project_permits_exactly_what_the_overlays_produce(
    gitops: list[dict[str, Any]], model_applications: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The kinds and namespaces the overlays render to, with or without the shadow phase's
    mirror in them, are all the project allows."""
    project = by_kind(gitops, "AppProject")["sluice-models"]
    kinds: set[tuple[str, str]] = set()
    namespaces: set[str] = set()
    for name, application in model_applications.items():
        assert application["spec"]["project"] == "sluice-models"
        path = application["spec"]["source"]["path"]
        namespace = application["spec"]["destination"]["namespace"]
        namespaced, cluster, used = produced(path, namespace)
        assert cluster == set()
        kinds |= namespaced | produced_in_shadow(path, namespace, tmp_path / name)
        namespaces |= used
    assert allowed(project, "namespaceResourceWhitelist") == kinds
    assert allowed(project, "clusterResourceWhitelist") == set()
    assert {d["namespace"] for d in project["spec"]["destinations"]} == namespaces


def test_platform_project_permits_exactly_what_the_platform_renders(
    gitops: list[dict[str, Any]], platform_applications: dict[str, dict[str, Any]]
) -> None:
    """Serving runtime, controller and monitoring: their kinds and namespaces, and no more."""
    project = by_kind(gitops, "AppProject")["sluice-platform"]
    assert {a["spec"]["source"]["path"] for a in platform_applications.values()} == {
        "manifests/serving-runtime", "manifests/controller", "manifests/monitoring",
        "manifests/monitoring/knative",
    }  # fmt: skip
    namespaced: set[tuple[str, str]] = set()
    cluster: set[tuple[str, str]] = set()
    namespaces: set[str] = set()
    for application in platform_applications.values():
        assert application["spec"]["project"] == "sluice-platform"
        kinds, cluster_kinds, used = produced(
            application["spec"]["source"]["path"], application["spec"]["destination"]["namespace"]
        )
        namespaced |= kinds
        cluster |= cluster_kinds
        namespaces |= used
    assert allowed(project, "namespaceResourceWhitelist") == namespaced
    assert allowed(project, "clusterResourceWhitelist") == cluster
    assert {d["namespace"] for d in project["spec"]["destinations"]} == namespaces


def test_every_application_is_permitted_by_its_project(
    gitops: list[dict[str, Any]],
    model_applications: dict[str, dict[str, Any]],
    platform_applications: dict[str, dict[str, Any]],
) -> None:
    """Source repository and destination of each Application are listed in its project."""
    projects = by_kind(gitops, "AppProject")
    for application in [*model_applications.values(), *platform_applications.values()]:
        spec = application["spec"]
        project = projects[spec["project"]]["spec"]
        assert spec["source"]["repoURL"] in project["sourceRepos"]
        assert spec["destination"] in project["destinations"]
        assert (ROOT / spec["source"]["path"] / "kustomization.yaml").is_file()


def test_one_repository_url_everywhere(
    gitops: list[dict[str, Any]], model_applications: dict[str, dict[str, Any]]
) -> None:
    """The fork's URL is the same in the projects, the Applications and the controller's config,
    so adopting Sluice is one search-and-replace."""
    urls = {a["spec"]["source"]["repoURL"] for a in model_applications.values()}
    urls |= {a["spec"]["source"]["repoURL"] for a in by_kind(gitops, "Application").values()}
    for project in by_kind(gitops, "AppProject").values():
        urls |= set(project["spec"]["sourceRepos"])
    config = yaml.safe_load((ROOT / "manifests/controller/sluice.yaml").read_text())
    urls.add(config["git_remote"])
    assert len(urls) == 1
    (url,) = urls
    assert (
        url.removeprefix("https://github.com/").removesuffix(".git") == config["github_repository"]
    )


def test_sync_waves_put_projects_first_and_the_runtime_before_the_models(
    gitops: list[dict[str, Any]],
) -> None:
    """Namespaces, then projects and notifications, then the platform, then the models."""
    namespaces = [wave(d) for d in gitops if d["kind"] == "Namespace"]
    projects = [wave(d) for d in gitops if d["kind"] in ("AppProject", "ConfigMap")]
    runtime = wave(by_kind(gitops, "Application")["sluice-serving-runtime"])
    models = wave(by_kind(gitops, "ApplicationSet")["sluice-models"])
    assert max(namespaces) < min(projects)
    assert max(projects) < runtime < models


def test_namespaces_are_created_by_the_bootstrap_not_by_a_project(
    gitops: list[dict[str, Any]],
) -> None:
    """Every destination namespace is a Namespace of gitops/ (or Knative's own, which its
    installer creates), and neither project may create one."""
    created = set(by_kind(gitops, "Namespace")) | {"knative-serving"}
    for project in by_kind(gitops, "AppProject").values():
        assert {d["namespace"] for d in project["spec"]["destinations"]} <= created
        assert ("", "Namespace") not in allowed(project, "clusterResourceWhitelist")


# Argo CD Notifications ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def notifications(gitops: list[dict[str, Any]]) -> dict[str, Any]:
    data = by_kind(gitops, "ConfigMap")["argocd-notifications-cm"]["data"]
    return {key: yaml.safe_load(value) for key, value in data.items()}


def test_notification_triggers_send_existing_templates(notifications: dict[str, Any]) -> None:
    """Synced, degraded and rollback triggers exist, and each sends a template that exists."""
    triggers = {k.removeprefix("trigger."): v for k, v in notifications.items() if "trigger." in k}
    assert set(triggers) == {"on-sync-succeeded", "on-health-degraded", "on-rollback-synced"}
    for conditions in triggers.values():
        for condition in conditions:
            assert condition["when"]
            for template in condition["send"]:
                assert f"template.{template}" in notifications
    (subscription,) = notifications["subscriptions"]
    assert set(subscription["triggers"]) == set(triggers)


def test_rollback_trigger_reads_the_commit_subject(notifications: dict[str, Any]) -> None:
    """A synced commit whose subject starts with "rollback" is the rollback trigger's, not the
    sync trigger's."""
    (rollback,) = notifications["trigger.on-rollback-synced"]
    (synced,) = notifications["trigger.on-sync-succeeded"]
    test = "repo.GetCommitMetadata(app.status.operationState.syncResult.revision).Message"
    assert f"{test} startsWith 'rollback'" in rollback["when"]
    assert f"not ({test} startsWith 'rollback')" in synced["when"]
    assert (
        rollback["oncePer"]
        == synced["oncePer"]
        == "app.status.operationState?.syncResult?.revision"
    )


def model_and_version(template: str, message: str) -> tuple[str, str]:
    """What the template's regexFind / trimPrefix / trim pipeline (sprig, RE2) makes of a
    commit message: the trailers, else the proposal branch of a merge commit."""
    patterns = re.findall(r"regexFind `([^`]+)`", template)
    assert 'trimPrefix "Sluice-Model:" | trim' in template
    assert 'trimPrefix "Sluice-Version:" | trim' in template

    def find(pattern: str) -> str:
        match = re.search(pattern, message)
        return match.group(0) if match else ""

    model = find(patterns[0]).removeprefix("Sluice-Model:").strip()
    version = find(patterns[1]).removeprefix("Sluice-Version:").strip()
    if not model and len(patterns) > 2 and (branch := find(patterns[2])):
        parts = branch.split("/")
        model, version = parts[2], parts[3].removeprefix("v")
    return model, version


def proposal_commit() -> str:
    return render_proposal_message(
        ProposalMessage(
            model="fraud-detector", version=8, environment="staging", previous_version=7,
            canary_percent=10, storage_uri="s3://sluice-models/8/model", run_id="abc123",
            run_url="http://mlflow/#/experiments/1/runs/abc123", metrics={"roc_auc": 0.93},
        )
    )  # fmt: skip


@pytest.mark.parametrize(
    "template", ["sluice-model-synced", "sluice-model-degraded", "sluice-model-rollback"]
)
def test_templates_name_model_and_version_of_a_sluice_commit(
    template: str, notifications: dict[str, Any]
) -> None:
    """Each template finds model and version in the trailers Sluice writes with the pin's
    sluice.dev/model-name and sluice.dev/model-version."""
    message = notifications[f"template.{template}"]["message"]
    assert model_and_version(message, proposal_commit()) == ("fraud-detector", "8")
    rollback = (
        "rollback fraud-detector v8: success rate 91% < 99% (staging)\n\n"
        "Sluice-Model: fraud-detector\nSluice-Version: 8\nSluice-Env: staging\n"
    )
    assert model_and_version(message, rollback) == ("fraud-detector", "8")


@pytest.mark.parametrize("template", ["sluice-model-synced", "sluice-model-degraded"])
def test_templates_read_a_merge_commit_by_its_proposal_branch(
    template: str, notifications: dict[str, Any]
) -> None:
    """A pull request merged with a merge commit has no trailers; its branch names the release."""
    message = notifications[f"template.{template}"]["message"]
    merge = (
        "Merge pull request #12 from example-org/sluice/staging/fraud-detector/v8\n\n"
        "fraud-detector v8 → staging (canary 10%)"
    )
    assert model_and_version(message, merge) == ("fraud-detector", "8")
    assert model_and_version(message, "Fix a typo in the README") == ("", "")


def test_gitops_readme_explains_the_bootstrap() -> None:
    """gitops/README.md says how to apply this directory and which secrets it needs."""
    text = Path(ROOT / "gitops/README.md").read_text(encoding="utf-8")
    for needle in ("kubectl apply -k gitops/", "argocd-notifications-secret", "health.lua"):
        assert needle in text
