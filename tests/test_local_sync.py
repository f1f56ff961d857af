"""One InferenceService the cluster cannot run does not stop the others (issue #14).

On a cluster Argo CD applies every resource of a commit on its own, and KServe judges each
InferenceService on its own: a manifest KServe's webhook refuses fails only its own sync
(``SyncFailed``, the operation Failed, the others applied and Synced); a predictor without a
``storageUri`` is accepted and its revision fails to load (Degraded, with a message naming the
fix). The local target must do the same, and a rollout of another model must read its own
InferenceService as synced. The pure pieces are tested with plain values; the last test runs
the runtime's sync on a real Git remote rendered by kustomize.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.gitops_repo import commit_to_remote
from support.gitrepo import create_git_remote
from support.runtime_loop import KUSTOMIZATION, OVERLAY

from controller.backends.argocd_health import inferenceservice_health
from controller.backends.kubernetes_target import observation_from, synced_revision
from controller.local import sync
from controller.local.applied import InferenceServiceRuntime
from controller.local.kserve_status import Revision, RevisionState
from controller.local.revisions import ModelServers, admit, unpinned_message
from controller.local.router import Router
from controller.local.runtime import LocalRuntime, RuntimeConfig

SHA_0, SHA_1 = "0" * 40, "1" * 40
NOW = "2026-12-05T01:00:00Z"
NS = "models-local"
URI = "file:///srv/models/diabetes/1"
UNPINNED = (
    "InferenceService fraud-detector has no storageUri: propose a version "
    "(sluice propose fraud-detector --env local)"
)


def manifest(name: str, uri: str | None = None, **spec: Any) -> dict[str, Any]:
    """An InferenceService as an overlay renders it (``uri`` None: no version pinned yet)."""
    model: dict[str, Any] = {"modelFormat": {"name": "mlflow"}}
    if uri is not None:
        model["storageUri"] = uri
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": NS,
            "annotations": {"sluice.dev/model-name": name},
        },
        "spec": {"predictor": {"model": model}, **spec},
    }


def refused_manifest(name: str) -> dict[str, Any]:
    """A canary KServe's webhook refuses: spec.canary beside canaryTrafficPercent."""
    document = manifest(name, URI, canary=[{"predictor": {"name": "v2"}, "trafficPercent": 10}])
    document["spec"]["predictor"]["canaryTrafficPercent"] = 10
    return document


# -- admission: which manifests the API server takes ---------------------------------------------


def test_only_the_manifest_kserve_refuses_is_left_out() -> None:
    """A pinned and an unpinned InferenceService are admitted; a canary KServe's webhook
    refuses and a manifest without spec.predictor are refused, each naming itself and the fix."""
    documents = [
        manifest("diabetes-regressor", URI),
        manifest("fraud-detector"),
        refused_manifest("scorer"),
        {"kind": "InferenceService", "metadata": {"name": "empty"}, "spec": {}},
    ]
    pinned, unpinned, canary, empty = admit(documents)
    assert pinned.plan is not None
    assert pinned.plan.predictors[0].storage_uri == URI
    assert unpinned.plan is not None
    assert unpinned.plan.predictors[0].storage_uri == ""
    assert (pinned.refused, unpinned.refused) == ("", "")
    assert canary.plan is None
    assert canary.refused.startswith("InferenceService scorer: spec.canary and ")
    assert canary.refused.endswith("; fix the manifest")
    assert empty.plan is None
    assert empty.refused == "InferenceService empty has no spec.predictor; fix the manifest"
    assert [a.name for a in (pinned, unpinned, canary, empty)] == [
        "diabetes-regressor", "fraud-detector", "scorer", "empty",
    ]  # fmt: skip


def test_the_fix_names_the_registered_model_and_the_environment() -> None:
    """`sluice propose` takes the model's name (sluice.dev/model-name), not the isvc's."""
    document = manifest("fraud-detector")
    assert unpinned_message(document, "local") == UNPINNED
    document["metadata"]["annotations"]["sluice.dev/model-name"] = "fraud"
    assert unpinned_message(document, "staging").endswith("(sluice propose fraud --env staging)")


# -- an unpinned InferenceService: accepted, and its revision fails ------------------------------


def applied(document: dict[str, Any]) -> InferenceServiceRuntime:
    isvc = InferenceServiceRuntime(document, Router(isvc=document["metadata"]["name"], port=1))
    (admission,) = admit([document])
    assert admission.plan is not None
    isvc.apply(document, admission.plan, unpinned=unpinned_message(document, "local"))
    return isvc


def test_an_unpinned_predictor_is_a_revision_that_fails_with_the_fix(tmp_path: Path) -> None:
    """KServe accepts a predictor without storageUri; its model server has nothing to load:
    the revision fails at once (no server is started), PredictorConfigurationReady says why,
    Argo CD's check says Degraded, and the runtime's one line names the fix."""
    isvc = applied(manifest("fraud-detector"))
    (record,) = isvc.records
    assert (record.name, record.storage_uri, record.failure) == (
        "fraud-detector-predictor-00001", "", UNPINNED,
    )  # fmt: skip
    servers = ModelServers(tmp_path, env={})
    revision = servers.observe(record, isvc.name)
    assert (revision.state, revision.message) == (RevisionState.FAILED, UNPINNED)
    assert servers.running() == {}
    isvc.status = isvc.reconcile([revision]).status
    conditions = {c["type"]: c for c in isvc.status["conditions"]}
    configuration = conditions["PredictorConfigurationReady"]
    assert (configuration["status"], configuration["reason"]) == ("False", "RevisionFailed")
    assert UNPINNED in configuration["message"]
    assert conditions["PredictorReady"]["status"] == "False"
    assert conditions["Ready"]["status"] == "False"
    health = inferenceservice_health(isvc.to_object())
    assert health.status == "Degraded"
    assert UNPINNED in health.message
    observed = observation_from(isvc.to_object(), None)
    assert observed.failure is not None
    assert UNPINNED in observed.failure
    assert (observed.latest_ready, observed.traffic) == (None, ())
    assert isvc.problem == UNPINNED


def test_pinning_it_later_serves_the_new_revision() -> None:
    """Once a version is merged, its revision is the next one and takes all traffic; the
    failed one is no longer live and the InferenceService has no problem left."""
    isvc = applied(manifest("fraud-detector"))
    failed = Revision(isvc.records[0].name, RevisionState.FAILED, UNPINNED)
    isvc.status = isvc.reconcile([failed]).status
    pinned = manifest("fraud-detector", URI)
    (admission,) = admit([pinned])
    assert admission.plan is not None
    (created,) = isvc.apply(pinned, admission.plan, unpinned=unpinned_message(pinned, "local"))
    assert (created.name, created.storage_uri, created.failure) == (
        "fraud-detector-predictor-00002", URI, "",
    )  # fmt: skip
    result = isvc.reconcile([failed, Revision(created.name, RevisionState.READY)])
    assert result.split == {created.name: 100}
    assert failed.name not in isvc.live(result)  # its record is retired
    assert isvc.problem == ""


# -- Argo CD: per-resource results, the operation and the health ---------------------------------


def synced_app() -> dict[str, Any]:
    """An Application whose last sync (of SHA_0) applied both InferenceServices."""
    app = sync.new_application("local", "/srv/gitops.git", "main", "manifests/overlays/local")
    sync.operation_started(app, SHA_0, NOW)
    sync.operation_finished(
        app,
        SHA_0,
        NOW,
        [
            sync.ResourceResult("diabetes-regressor", NS, "created"),
            sync.ResourceResult("fraud-detector", NS, "created"),
        ],
    )
    return app


REFUSAL = "InferenceService fraud-detector: spec.canary needs RawDeployment mode; fix the manifest"


def test_a_refused_manifest_fails_only_its_own_sync() -> None:
    """The operation is Failed and names the refusal; fraud-detector is SyncFailed and
    OutOfSync, diabetes-regressor Synced; no history entry is added, so the Application reads
    OutOfSync, also when the poll compares the same tip again."""
    app = synced_app()
    sync.operation_started(app, SHA_1, NOW)
    results = [
        sync.ResourceResult("diabetes-regressor", NS, "configured"),
        sync.ResourceResult("fraud-detector", NS, REFUSAL, refused=True),
    ]
    sync.operation_finished(app, SHA_1, NOW, results)
    sync.set_comparison(app, SHA_1)
    status = app["status"]
    operation = status["operationState"]
    assert operation["phase"] == "Failed"
    assert operation["message"] == f"one or more objects failed to apply, reason: {REFUSAL}"
    assert operation["syncResult"]["revision"] == SHA_1
    assert [(r["name"], r["status"]) for r in operation["syncResult"]["resources"]] == [
        ("diabetes-regressor", "Synced"), ("fraud-detector", "SyncFailed"),
    ]  # fmt: skip
    assert [(r["name"], r["status"]) for r in status["resources"]] == [
        ("diabetes-regressor", "Synced"), ("fraud-detector", "OutOfSync"),
    ]  # fmt: skip
    assert (status["sync"]["status"], status["sync"]["revision"]) == ("OutOfSync", SHA_1)
    assert [entry["revision"] for entry in status["history"]] == [SHA_0]


def test_the_applied_one_reads_synced_and_the_refused_one_does_not() -> None:
    """What the rollout reads through the target: diabetes-regressor's rollout sees SHA_1
    applied; fraud-detector's still sees SHA_0, the last commit that applied it."""
    app = synced_app()
    sync.operation_started(app, SHA_1, NOW)
    sync.operation_finished(
        app,
        SHA_1,
        NOW,
        [
            sync.ResourceResult("diabetes-regressor", NS, "configured"),
            sync.ResourceResult("fraud-detector", NS, REFUSAL, refused=True),
        ],
    )
    diabetes = {**manifest("diabetes-regressor", URI), "status": {}}
    fraud = {**manifest("fraud-detector", URI), "status": {}}
    assert observation_from(diabetes, app).synced_revision == SHA_1
    assert observation_from(fraud, app).synced_revision == SHA_0


def test_a_sync_that_applies_everything_succeeds() -> None:
    """Nothing refused: Succeeded, Synced, one more history entry, every resource Synced."""
    app = synced_app()
    status = app["status"]
    assert status["operationState"]["phase"] == "Succeeded"
    assert status["operationState"]["message"] == (
        "successfully synced (applied diabetes-regressor, fraud-detector)"
    )
    assert (status["sync"]["status"], status["sync"]["revision"]) == ("Synced", SHA_0)
    assert [entry["revision"] for entry in status["history"]] == [SHA_0]
    assert {r["status"] for r in status["resources"]} == {"Synced"}


def test_a_render_failure_leaves_every_resource_at_the_last_sync() -> None:
    """A commit that does not render applies nothing: every InferenceService still reads as
    synced at SHA_0, not at the new tip."""
    app = synced_app()
    sync.operation_started(app, SHA_1, NOW)
    sync.operation_failed(app, SHA_1, NOW, "kustomize failed")
    diabetes = {**manifest("diabetes-regressor", URI), "status": {}}
    assert app["status"]["sync"]["status"] == "OutOfSync"
    assert observation_from(diabetes, app).synced_revision == SHA_0


@pytest.mark.parametrize(
    ("healths", "expected"),
    [
        ({"a": "Healthy", "b": "Progressing", "c": "Degraded"}, "Degraded"),
        ({"a": "Healthy", "b": "Progressing"}, "Progressing"),
        ({"a": "Healthy"}, "Healthy"),
    ],
)
def test_application_health_is_the_worst_and_a_missing_resource_does_not_count(
    healths: dict[str, str], expected: str
) -> None:
    """Degraded beats Progressing beats Healthy; ``d``, refused before it ever existed, is
    Missing on its resource and left out of the Application's health, as Argo CD does for a
    kind without a built-in Go health check."""
    app = sync.new_application("local", "/srv/gitops.git", "main", "manifests/overlays/local")
    sync.operation_started(app, SHA_0, NOW)
    results = [sync.ResourceResult(n, NS, "created") for n in healths]
    results.append(sync.ResourceResult("d", NS, "refused", refused=True))
    sync.operation_finished(app, SHA_0, NOW, results)
    sync.application_health(app, {n: (h, f"{n} is {h}") for n, h in healths.items()}, healths)
    assert app["status"]["health"]["status"] == expected
    resources = {r["name"]: r["health"] for r in app["status"]["resources"]}
    assert resources["d"] == {"status": "Missing", "message": ""}
    assert {n: resources[n]["status"] for n in healths} == healths


def test_a_graph_is_a_resource_of_its_own_kind_whose_health_counts() -> None:
    """An InferenceGraph beside an InferenceService of the same name is its own resource
    (serving.kserve.io/v1alpha1), with its own health; the worse one is the Application's."""
    app = sync.new_application("local", "/srv/gitops.git", "main", "manifests/overlays/local")
    sync.operation_started(app, SHA_0, NOW)
    results = [
        sync.ResourceResult("regime", NS, "created"),
        sync.ResourceResult("regime", NS, "created", kind="InferenceGraph"),
        sync.ResourceResult("gone", NS, "refused", refused=True, kind="InferenceGraph"),
    ]
    sync.operation_finished(app, SHA_0, NOW, results)
    sync.application_health(
        app,
        {"regime": ("Healthy", "")},
        {"regime"},
        graphs={"regime": ("Progressing", "Waiting")},
        live_graphs={"regime"},
    )
    resources = app["status"]["resources"]
    assert [(r["kind"], r["version"], r["name"], r["health"]["status"]) for r in resources] == [
        ("InferenceGraph", "v1alpha1", "gone", "Missing"),
        ("InferenceGraph", "v1alpha1", "regime", "Progressing"),
        ("InferenceService", "v1beta1", "regime", "Healthy"),
    ]
    assert app["status"]["health"] == {
        "status": "Progressing",
        "message": "InferenceGraph regime: Waiting",
    }
    refused = app["status"]["operationState"]["syncResult"]["resources"][2]
    assert (refused["kind"], refused["status"]) == ("InferenceGraph", "SyncFailed")


# -- the cluster target reads the same per-resource sync ------------------------------------------


def argo_status(sync_status: str, **resources: str) -> dict[str, Any]:
    """An Argo CD Application status compared at SHA_1 whose last full sync was SHA_0."""
    return {
        "sync": {"status": sync_status, "revision": SHA_1},
        "resources": [
            {"kind": "InferenceService", "namespace": NS, "name": name, "status": status}
            for name, status in resources.items()
        ],
        "history": [{"id": 0, "revision": SHA_0}],
    }


def test_cluster_reads_a_synced_resource_of_an_out_of_sync_application() -> None:
    """On a cluster, an Application OutOfSync because of fraud-detector still has
    diabetes-regressor synced at the compared commit; fraud-detector, an unnamed resource and
    an Application Argo CD could not compare (Unknown) fall back to the last full sync."""
    resources = {"diabetes-regressor": "Synced", "fraud-detector": "OutOfSync"}
    status = argo_status("OutOfSync", **resources)
    assert synced_revision(status, "diabetes-regressor", NS) == SHA_1
    assert synced_revision(status, "fraud-detector", NS) == SHA_0
    assert synced_revision(status, "scorer", NS) == SHA_0
    assert synced_revision(status) == SHA_0
    unknown = argo_status("Unknown", **{"diabetes-regressor": "Synced"})
    assert synced_revision(unknown, "diabetes-regressor", NS) == SHA_0
    assert synced_revision(argo_status("Synced"), "fraud-detector", NS) == SHA_1


# -- the runtime's sync, on a real remote rendered by kustomize ----------------------------------


def test_the_runtime_applies_every_inference_service_it_can(tmp_path: Path) -> None:
    """A commit with an unpinned fraud-detector and a refused scorer: fraud-detector is applied
    and Degraded with the fix in its message, scorer's refusal fails the operation and names
    it; a commit that fixes scorer syncs in full; one that breaks fraud-detector leaves it
    running its last applied manifest, saying why, while scorer reads synced at the new tip."""
    remote = create_git_remote(tmp_path)

    def overlay(*documents: dict[str, Any]) -> Any:
        def change(tree: Path) -> None:
            directory = tree / OVERLAY
            directory.mkdir(parents=True, exist_ok=True)
            for old in directory.glob("*.yaml"):
                old.unlink()
            for document in documents:
                name = document["metadata"]["name"]
                (directory / f"{name}.yaml").write_text(json.dumps(document))
            resources = "".join(f"  - {d['metadata']['name']}.yaml\n" for d in documents)
            (directory / "kustomization.yaml").write_text(KUSTOMIZATION + resources)

        return change

    first = commit_to_remote(
        remote, tmp_path / "work", "Onboard two models",
        overlay(manifest("fraud-detector"), refused_manifest("scorer")),
    )  # fmt: skip
    runtime = LocalRuntime(RuntimeConfig(tmp_path / "state", remote.url, "local"))
    try:
        runtime.poll()
        runtime.reconcile()
        runtime.save()
        saved = json.loads(runtime.state_file.read_text())
        app = saved["application"]["status"]
        assert app["operationState"]["phase"] == "Failed"
        assert "InferenceService scorer: spec.canary and " in app["operationState"]["message"]
        assert app["sync"]["status"] == "OutOfSync"
        assert app["health"]["status"] == "Degraded"
        assert set(saved["inferenceServices"]) == {"fraud-detector"}
        entry = saved["inferenceServices"]["fraud-detector"]
        assert entry["health"]["status"] == "Degraded"
        assert entry["message"] == UNPINNED
        assert entry["url"] is None  # no router to offer until it has served
        observed = observation_from(entry["object"], saved["application"])
        assert observed.synced_revision == first
        assert saved["servers"] == {}

        fixed = commit_to_remote(
            remote, tmp_path / "work", "Fix scorer",
            overlay(manifest("fraud-detector"), manifest("scorer")),
        )  # fmt: skip
        runtime.poll()
        runtime.reconcile()
        app = runtime.application["status"]
        assert app["operationState"]["phase"] == "Succeeded"
        assert (app["sync"]["status"], app["sync"]["revision"]) == ("Synced", fixed)
        assert [entry["revision"] for entry in app["history"]] == [fixed]
        assert set(runtime.isvcs) == {"fraud-detector", "scorer"}
        assert runtime.isvcs["fraud-detector"].counter == 1  # the same manifest: no new revision

        # A refused change to one that runs: it keeps its applied manifest and says why.
        broken = commit_to_remote(
            remote, tmp_path / "work", "Break fraud-detector",
            overlay(refused_manifest("fraud-detector"), manifest("scorer")),
        )  # fmt: skip
        runtime.poll()
        runtime.reconcile()
        fraud = runtime.isvcs["fraud-detector"]
        assert fraud.document == manifest("fraud-detector")
        assert fraud.problem.startswith("not applied: InferenceService fraud-detector: spec.canary")
        app = runtime.application
        assert app["status"]["operationState"]["phase"] == "Failed"
        scorer = {**manifest("scorer"), "status": {}}
        assert observation_from(scorer, app).synced_revision == broken
        assert observation_from(fraud.to_object(), app).synced_revision == fixed
    finally:
        runtime.shutdown()
