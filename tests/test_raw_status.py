"""KServe's RawDeployment canary on the local target: revisions, traffic and status, pure.

One rule per test: which predictors are revisions, how the HTTPRoute splits between the
primary and the canary Deployment, what KServe reports, and that the rollout reads the same
observation fields from it as in Serverless mode. Every status made is checked against the CRD.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from support.crd import status_errors

from controller.backends.argocd_health import inferenceservice_health
from controller.backends.kubernetes_target import observation_from
from controller.errors import ManifestInvalid
from controller.local.applied import InferenceServiceRuntime
from controller.local.kserve_status import IsvcStatus, PreviousStatus, Revision, RevisionState
from controller.local.raw_status import RawSpec, reconcile_raw_status
from controller.local.revisions import plan_revisions
from controller.local.router import Router

READY, LOADING, FAILED = RevisionState.READY, RevisionState.LOADING, RevisionState.FAILED
P1, C2, P3 = (f"fraud-predictor-0000{k}" for k in (1, 2, 3))
V1, V2 = "file:///models/v1", "file:///models/v2"
PRODUCED: list[dict[str, Any]] = []  # every status the tests made, checked against the CRD


def rev(name: str, state: RevisionState, message: str = "") -> Revision:
    return Revision(name, state, message, exit_code=1 if state is FAILED else None)


def reconcile(
    revisions: list[Revision],
    spec: RawSpec,
    previous: dict[str, Any] | None = None,
    *,
    url: str = "",
) -> IsvcStatus:
    result = reconcile_raw_status(
        "fraud", spec, revisions, PreviousStatus.from_dict(previous), now="2026-11-22T10:00:00Z",
        url=url,
    )  # fmt: skip
    PRODUCED.append(copy.deepcopy(result.status))
    return result


def canary(percent: int = 10) -> RawSpec:
    return RawSpec(P1, C2, "v2", percent)


def served() -> dict[str, Any]:
    """The status once the primary P1 serves alone."""
    return reconcile([rev(P1, READY)], RawSpec(P1)).status


def condition(result: IsvcStatus, type_: str) -> dict[str, str]:
    return next(c for c in result.status["conditions"] if c["type"] == type_)


def observe(result: IsvcStatus) -> Any:
    """What the rollout reads from this status (the cluster target's mapping)."""
    obj = {"metadata": {"name": "fraud"}, "status": result.status}
    return observation_from(obj, None, health=inferenceservice_health(obj))


# -- the traffic -----------------------------------------------------------------------------------


def test_primary_alone_takes_everything() -> None:
    """Without spec.canary the primary Deployment takes 100 % and is the latest revision."""
    result = reconcile([rev(P1, READY)], RawSpec(P1))
    assert result.split == {P1: 100}
    assert result.status["components"]["predictor"]["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": P1}
    ]
    assert "canaryStatuses" not in result.status


def test_ready_canary_takes_its_percent_beside_the_primary() -> None:
    """A ready canary gets trafficPercent, tagged latest; the primary the rest, tagged prev."""
    result = reconcile([rev(P1, READY), rev(C2, READY)], canary(10), served())
    assert result.split == {C2: 10, P1: 90}
    assert result.status["components"]["predictor"]["traffic"] == [
        {
            "latestRevision": True, "percent": 10, "revisionName": C2, "tag": "latest",
            "url": "http://fraud-v2-predictor.default.example.com",
        },
        {
            "latestRevision": False, "percent": 90, "revisionName": P1, "tag": "prev",
            "url": "http://fraud-predictor.default.example.com",
        },
    ]  # fmt: skip


def test_tag_routes_are_the_local_routers_when_it_has_a_url() -> None:
    """Locally each tag is a path of the InferenceService's router."""
    result = reconcile([rev(P1, READY), rev(C2, READY)], canary(), served(), url="http://r:1")
    assert [t.url for t in result.traffic] == ["http://r:1/_tag/latest", "http://r:1/_tag/prev"]


@pytest.mark.parametrize("state", [LOADING, FAILED])
def test_canary_that_is_not_ready_gets_nothing(state: RevisionState) -> None:
    """KServe routes a canary only once its pods are ready: the primary keeps every request."""
    result = reconcile([rev(P1, READY), rev(C2, state, "boom")], canary(), served())
    assert result.split == {P1: 100}
    assert [(t.revision_name, t.tag, t.latest_revision) for t in result.traffic] == [
        (P1, "prev", False)
    ]
    assert result.status["canaryStatuses"][0]["trafficPercent"] == 0


def test_zero_percent_sends_everything_to_the_primary_at_once() -> None:
    """trafficPercent 0 keeps the canary Deployment but routes it nothing."""
    result = reconcile([rev(P1, READY), rev(C2, READY)], canary(0), served())
    assert result.split == {P1: 100}
    assert [t.percent for t in result.traffic] == [0, 100]  # tags still reach both


def test_changed_primary_is_a_rolling_update() -> None:
    """A new primary template serves only once ready; the old pods serve until then."""
    loading = reconcile([rev(P1, READY), rev(P3, LOADING)], RawSpec(P3), served())
    assert loading.split == {P1: 100}
    assert (loading.latest_created, loading.latest_ready) == (P3, P1)
    assert loading.traffic[0].latest_revision is False
    done = reconcile([rev(P1, READY), rev(P3, READY)], RawSpec(P3), loading.status)
    assert done.split == {P3: 100}
    assert done.rollout.latest == P3


# -- what KServe reports ---------------------------------------------------------------------------


def test_canary_status_and_condition_when_ready() -> None:
    """canaryStatuses names the canary with its traffic; CanaryPredictorReady is True."""
    result = reconcile([rev(P1, READY), rev(C2, READY)], canary(10), served())
    (status,) = result.status["canaryStatuses"]
    assert (status["name"], status["ready"], status["trafficPercent"]) == ("v2", True, 10)
    assert status["modelStatus"]["transitionStatus"] == "UpToDate"
    ready = condition(result, "CanaryPredictorReady")
    assert (ready["status"], ready["reason"], ready["severity"]) == (
        "True",
        "AllCanariesReady",
        "Info",
    )
    assert result.status["deploymentMode"] == "RawDeployment"


def test_loading_canary_is_progressing_and_keeps_ready() -> None:
    """While the canary loads the service stays Ready (the primary serves): Progressing."""
    result = reconcile([rev(P1, READY), rev(C2, LOADING)], canary(), served())
    assert condition(result, "Ready")["status"] == "True"
    assert condition(result, "CanaryPredictorReady")["status"] == "Unknown"
    assert result.status["modelStatus"]["transitionStatus"] == "InProgress"
    assert observe(result).health == "Progressing"


def test_failed_canary_is_degraded_and_a_failure_the_rollout_sees() -> None:
    """A canary that cannot load blocks the model status: Degraded, with the failure message."""
    result = reconcile([rev(P1, READY), rev(C2, FAILED, "no model")], canary(), served())
    assert condition(result, "CanaryPredictorReady")["status"] == "False"
    info = result.status["modelStatus"]["lastFailureInfo"]
    assert (info["reason"], info["message"]) == ("ModelLoadFailed", "no model")
    seen = observe(result)
    assert (seen.health, seen.failure) == ("Degraded", "no model")
    assert (seen.latest_created, seen.latest_ready) == (C2, P1)


def test_primary_that_is_not_available_is_not_ready() -> None:
    """Before the first primary is ready, nothing is routed and Ready is False."""
    result = reconcile([rev(P1, LOADING)], RawSpec(P1))
    assert result.split == {}
    assert (condition(result, "Ready")["status"], result.ready) == ("False", False)
    assert condition(result, "PredictorReady")["reason"] == "MinimumReplicasUnavailable"


def test_rollout_reads_the_canary_as_in_serverless_mode() -> None:
    """latest_created and latest_ready name the canary; its entry is latest at the step."""
    seen = observe(reconcile([rev(P1, READY), rev(C2, READY)], canary(50), served()))
    assert (seen.latest_created, seen.latest_ready, seen.health) == (C2, C2, "Healthy")
    latest = next(t for t in seen.traffic if t.latest)
    assert (latest.revision, latest.percent, latest.tag) == (C2, 50, "latest")
    assert seen.tagged("prev") is not None
    assert seen.tagged("prev").revision == P1  # type: ignore[union-attr]


# -- revisions of an applied manifest -------------------------------------------------------------


def manifest(
    primary: str = V1, *, name: str = "", canary: dict[str, Any] | None = None
) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "minReplicas": 1,
        "model": {
            "modelFormat": {"name": "mlflow"},
            "runtime": "sluice-mlflow",
            "storageUri": primary,
        },
    }
    if name:
        predictor["name"] = name
    spec: dict[str, Any] = {"predictor": predictor}
    if canary is not None:
        spec["canary"] = [canary]
    annotations = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    return {"metadata": {"name": "fraud", "annotations": annotations}, "spec": spec}


def canary_entry(percent: int = 10, uri: str = V2) -> dict[str, Any]:
    model = {"name": "kserve-container", "modelFormat": {"name": "mlflow"}, "storageUri": uri}
    return {"trafficPercent": percent, "predictor": {"name": "v2", "model": model}}


def test_canary_is_the_primary_template_with_its_fields_laid_over() -> None:
    """The canary's revision runs its storageUri with everything else of the primary."""
    plan = plan_revisions(manifest(canary=canary_entry()))
    assert plan.mode == "RawDeployment"
    assert [(p.storage_uri, p.canary) for p in plan.predictors] == [(V1, ""), (V2, "v2")]
    assert plan.traffic_percent == 10


def test_weight_alone_makes_no_new_revision() -> None:
    """Changing trafficPercent (or replicas) keeps both revisions."""
    before = plan_revisions(manifest(canary=canary_entry(10)))
    after = manifest(canary=canary_entry(50))
    after["spec"]["predictor"]["minReplicas"] = 3
    assert [p.fingerprint for p in plan_revisions(after).predictors] == [
        p.fingerprint for p in before.predictors
    ]


def test_refused_canary_fails_the_sync() -> None:
    """A manifest KServe's webhook would refuse is never applied."""
    document = manifest(canary=canary_entry())
    document["spec"]["canary"][0]["predictor"].pop("name")
    with pytest.raises(ManifestInvalid, match=r"predictor\.name is required"):
        plan_revisions(document)


def applied_runtime() -> InferenceServiceRuntime:
    isvc = InferenceServiceRuntime(manifest(), Router(isvc="fraud", namespace="default", port=1))
    isvc.apply(isvc.document, plan_revisions(isvc.document))
    return isvc


def test_promotion_keeps_the_canarys_revision_and_retires_the_old_primary() -> None:
    """Promoted (canary's name and storage moved to the primary), the canary serves on as is."""
    isvc = applied_runtime()
    with_canary = manifest(canary=canary_entry())
    assert [r.name for r in isvc.apply(with_canary, plan_revisions(with_canary))] == [C2]
    promoted = manifest(V2, name="v2")
    assert isvc.apply(promoted, plan_revisions(promoted)) == []
    result = isvc.reconcile([rev(P1, READY), rev(C2, READY)])
    assert result.split == {C2: 100}
    assert isvc.live(result) - {""} == {C2}


def test_restore_after_rollback_keeps_the_primary_and_retires_the_canary() -> None:
    """Removing spec.canary leaves the primary's revision serving and the canary's retired."""
    isvc = applied_runtime()
    created = [
        record.name
        for document in (
            manifest(canary=canary_entry()),
            manifest(canary=canary_entry(0)),
            manifest(),
        )
        for record in isvc.apply(document, plan_revisions(document))
    ]
    assert created == [C2]
    result = isvc.reconcile([rev(P1, READY), rev(C2, READY)])
    assert result.split == {P1: 100}
    assert isvc.live(result) - {""} == {P1}


def test_every_status_made_here_fits_the_crd() -> None:
    """Every RawDeployment status these tests produced validates against KServe's CRD."""
    assert len(PRODUCED) > 10
    for status in PRODUCED:
        errors = status_errors(status)
        assert not errors, errors
