"""KServe's canary and status rules (KSERVE_SEMANTICS.md), one rule per test, plus the CRD."""

from __future__ import annotations

import copy
from typing import Any

from support.crd import status_errors

from controller.local.kserve_status import (
    IsvcStatus,
    PredictorSpec,
    PreviousStatus,
    Revision,
    RevisionState,
    Rollout,
    TrafficTarget,
    desired_traffic,
    reconcile_status,
)

READY, LOADING, FAILED = RevisionState.READY, RevisionState.LOADING, RevisionState.FAILED
R1, R2, R3 = (f"fraud-predictor-0000{k}" for k in (1, 2, 3))
PRODUCED: list[dict[str, Any]] = []  # every status the tests made, checked against the CRD


def rev(name: str, state: RevisionState, message: str = "") -> Revision:
    return Revision(name, state, message, exit_code=1 if state is FAILED else None)


def reconcile(
    revisions: list[Revision],
    previous: dict[str, Any] | None = None,
    percent: int | None = None,
    *,
    tags: bool = False,
    now: str = "2026-11-22T10:00:00Z",
) -> IsvcStatus:
    result = reconcile_status(
        "fraud",
        PredictorSpec(percent, tags),
        revisions,
        PreviousStatus.from_dict(previous),
        now=now,
    )
    PRODUCED.append(copy.deepcopy(result.status))
    return result


def rolled_out(*names: str) -> dict[str, Any]:
    """The status after rolling out ``names`` one after another, each to 100 %."""
    status: dict[str, Any] | None = None
    for k in range(1, len(names) + 1):
        status = reconcile([rev(n, READY) for n in names[:k]], status).status
    assert status is not None
    return status


def condition(result: IsvcStatus, type_: str) -> dict[str, str]:
    return next(c for c in result.status["conditions"] if c["type"] == type_)


def traffic(result: IsvcStatus) -> list[dict[str, Any]]:
    return list(result.status["components"]["predictor"].get("traffic", []))


# -- the traffic KServe asks Knative for ---------------------------------------------------------


def test_canary_percent_splits_latest_and_previous_rollout() -> None:
    """With N set and a rolled-out R, latest gets N % and R gets the rest tagged prev."""
    assert desired_traffic(PredictorSpec(10), Rollout(R1)) == [
        TrafficTarget(10, True),
        TrafficTarget(90, False, R1, tag="prev"),
    ]


def test_latest_is_tagged_only_with_tag_routing_enabled() -> None:
    """The latest target is tagged `latest` only under serving.kserve.io/enable-tag-routing."""
    assert desired_traffic(PredictorSpec(10, enable_tag_routing=True), Rollout(R1))[0].tag == (
        "latest"
    )
    assert desired_traffic(PredictorSpec(10), Rollout(R1))[0].tag == ""


def test_canary_of_100_percent_has_no_previous_target() -> None:
    """N = 100 sends everything to latest with no prev entry."""
    assert desired_traffic(PredictorSpec(100), Rollout(R1)) == [TrafficTarget(100, True)]


def test_no_canary_percent_sends_everything_to_latest() -> None:
    """Without N the latest revision gets 100 %."""
    assert desired_traffic(PredictorSpec(None), Rollout(R1)) == [TrafficTarget(100, True)]


def test_first_rollout_ignores_canary_percent() -> None:
    """On the very first rollout (no R yet) N is ignored."""
    result = reconcile([rev(R1, READY)], None, percent=10)
    assert traffic(result) == [{"latestRevision": True, "percent": 100, "revisionName": R1}]
    assert result.split == {R1: 100}


def test_canary_percent_is_not_range_checked() -> None:
    """KServe passes N through unchecked; only Knative would refuse a route over 100 %."""
    assert desired_traffic(PredictorSpec(150), Rollout(R1)) == [TrafficTarget(150, True)]


# -- what Knative makes of it ------------------------------------------------------------------


def test_ready_canary_gets_its_share() -> None:
    """A ready canary gets N % and the previous rollout keeps the rest."""
    result = reconcile([rev(R1, READY), rev(R2, READY)], rolled_out(R1), percent=10)
    assert result.split == {R2: 10, R1: 90}
    assert traffic(result)[1] == {
        "latestRevision": False,
        "percent": 90,
        "revisionName": R1,
        "tag": "prev",
        "url": "http://prev-fraud-predictor.default.example.com",
    }


def test_failed_canary_gets_no_traffic_although_its_entry_says_n() -> None:
    """latestRevision resolves to the latest ready revision, so a failed canary gets nothing."""
    result = reconcile([rev(R1, READY), rev(R2, FAILED, "boom")], rolled_out(R1), percent=10)
    assert traffic(result)[0] == {"latestRevision": True, "percent": 10, "revisionName": R1}
    assert result.split == {R1: 100}


def test_loading_canary_gets_no_traffic_yet() -> None:
    """Until the new revision is ready, every request still reaches the last ready one."""
    result = reconcile([rev(R1, READY), rev(R2, LOADING)], rolled_out(R1), percent=10)
    assert result.split == {R1: 100}


def test_without_canary_percent_traffic_moves_once_the_new_revision_is_ready() -> None:
    """With no N, the old revision serves until the new one is ready, then the new one all."""
    before = reconcile([rev(R1, READY), rev(R2, LOADING)], rolled_out(R1))
    assert before.split == {R1: 100}
    after = reconcile([rev(R1, READY), rev(R2, READY)], before.status)
    assert after.split == {R2: 100}


def test_first_rollout_has_no_traffic_until_ready() -> None:
    """Before any revision is ready there is no traffic and the route waits."""
    result = reconcile([rev(R1, LOADING)])
    assert result.split == {}
    route = condition(result, "PredictorRouteReady")
    assert (route["status"], route["reason"]) == ("Unknown", "RevisionMissing")
    assert route["message"] == (
        'Configuration "fraud-predictor" is waiting for a Revision to become ready.'
    )


# -- bookkeeping of rollouts ---------------------------------------------------------------------


def test_revision_names_are_reported() -> None:
    """latestCreatedRevision and latestReadyRevision mirror Knative's service status."""
    predictor = reconcile([rev(R1, READY), rev(R2, LOADING)], rolled_out(R1), 10).status[
        "components"
    ]["predictor"]
    assert predictor["latestCreatedRevision"] == R2
    assert predictor["latestReadyRevision"] == R1


def test_full_traffic_promotes_the_latest_ready_revision() -> None:
    """At 100 % the latest ready revision becomes latestRolledout and the old one previous."""
    canary = reconcile([rev(R1, READY), rev(R2, READY)], rolled_out(R1), percent=10)
    assert canary.rollout == Rollout(R1, "")
    promoted = reconcile([rev(R1, READY), rev(R2, READY)], canary.status, percent=100)
    assert promoted.rollout == Rollout(R2, R1)
    assert promoted.split == {R2: 100}


def test_canary_share_below_100_does_not_promote() -> None:
    """A canary at N < 100 stays a canary however often it is reconciled."""
    status = rolled_out(R1)
    for _ in range(3):
        result = reconcile([rev(R1, READY), rev(R2, READY)], status, percent=50)
        status = result.status
    assert result.rollout == Rollout(R1, "")


def test_zero_after_promotion_rolls_back_in_two_passes() -> None:
    """N = 0 after a promotion routes back to the previous rollout in two passes."""
    revisions = [rev(R1, READY), rev(R2, READY)]
    promoted = rolled_out(R1, R2)
    first = reconcile(revisions, promoted, percent=0)
    assert first.split == {R2: 100}  # prev is R2 itself on this pass
    assert first.rollout == Rollout(R1, R1)
    second = reconcile(revisions, first.status, percent=0)
    assert second.split == {R1: 100}
    assert second.rollout == Rollout(R1, R1)
    third = reconcile(revisions, second.status, percent=0)
    assert third.split == {R1: 100}


def test_rollback_needs_a_previous_rollout() -> None:
    """Without a previous rollout N = 0 has nothing to go back to."""
    result = reconcile([rev(R1, READY)], rolled_out(R1), percent=0)
    assert result.rollout == Rollout(R1, "")
    assert result.split == {R1: 100}


# -- conditions and model status -----------------------------------------------------------------


def test_served_revision_is_ready_and_up_to_date() -> None:
    """All conditions are True and the model is UpToDate once the latest revision serves."""
    result = reconcile([rev(R1, READY)])
    assert {c["type"]: c["status"] for c in result.status["conditions"]} == {
        "IngressReady": "True",
        "LatestDeploymentReady": "True",
        "PredictorConfigurationReady": "True",
        "PredictorReady": "True",
        "PredictorRouteReady": "True",
        "Ready": "True",
        "RoutesReady": "True",
    }
    assert result.status["modelStatus"]["transitionStatus"] == "UpToDate"
    assert result.ready


def test_loading_revision_is_in_progress() -> None:
    """While the latest revision loads, the model is InProgress and Ready is Unknown."""
    result = reconcile([rev(R1, READY), rev(R2, LOADING)], rolled_out(R1), 10)
    assert result.status["modelStatus"]["transitionStatus"] == "InProgress"
    assert condition(result, "Ready")["status"] == "Unknown"
    assert condition(result, "PredictorConfigurationReady")["status"] == "Unknown"


def test_failed_revision_conditions() -> None:
    """A failed revision: configuration and predictor False (RevisionFailed), route True."""
    result = reconcile(
        [rev(R1, READY), rev(R2, FAILED, "Container failed with: no model")], rolled_out(R1), 10
    )
    message = f'Revision "{R2}" failed with message: Container failed with: no model.'
    for type_ in ("PredictorConfigurationReady", "PredictorReady"):
        c = condition(result, type_)
        assert (c["status"], c["reason"], c["message"]) == ("False", "RevisionFailed", message)
    assert condition(result, "PredictorRouteReady")["status"] == "True"
    assert condition(result, "IngressReady")["status"] == "False"
    assert condition(result, "Ready")["status"] == "False"
    assert not result.ready


def test_failed_revision_blocks_the_model_with_load_failure() -> None:
    """A failed revision makes the model BlockedByFailedLoad with reason ModelLoadFailed."""
    result = reconcile([rev(R1, READY), rev(R2, FAILED, "no model")], rolled_out(R1), 10)
    model = result.status["modelStatus"]
    assert model["transitionStatus"] == "BlockedByFailedLoad"
    assert model["lastFailureInfo"] == {
        "reason": "ModelLoadFailed",
        "message": "no model",
        "exitCode": 1,
    }


def test_last_failure_stays_after_a_later_revision_serves() -> None:
    """KServe never clears lastFailureInfo: UpToDate can still carry an old failure."""
    failed = reconcile([rev(R1, READY), rev(R2, FAILED, "no model")], rolled_out(R1), 10)
    fixed = reconcile([rev(R1, READY), rev(R2, FAILED), rev(R3, READY)], failed.status, 100)
    assert fixed.status["modelStatus"]["transitionStatus"] == "UpToDate"
    assert fixed.status["modelStatus"]["lastFailureInfo"]["message"] == "no model"


def test_first_rollout_failure_has_no_ready_revision() -> None:
    """When the only revision fails, the route says no revision is ready."""
    result = reconcile([rev(R1, FAILED, "no model")])
    c = condition(result, "PredictorReady")
    assert (c["status"], c["reason"]) == ("False", "RevisionMissing")
    assert c["message"] == 'Configuration "fraud-predictor" does not have any ready Revision.'


def test_transition_time_is_kept_while_a_condition_holds() -> None:
    """A condition's lastTransitionTime changes only when the condition does."""
    first = reconcile([rev(R1, READY)], now="2026-11-22T10:00:00Z")
    second = reconcile([rev(R1, READY), rev(R2, LOADING)], first.status, now="2026-11-22T10:05:00Z")
    assert condition(second, "PredictorRouteReady")["lastTransitionTime"] == "2026-11-22T10:00:00Z"
    assert condition(second, "Ready")["lastTransitionTime"] == "2026-11-22T10:05:00Z"


def test_local_url_replaces_kserve_hostnames() -> None:
    """Given the router's URL, status URLs and tag URLs point at it."""
    result = reconcile_status(
        "fraud",
        PredictorSpec(10),
        [rev(R1, READY), rev(R2, READY)],
        PreviousStatus.from_dict(rolled_out(R1)),
        now="2026-11-22T10:00:00Z",
        url="http://127.0.0.1:9000",
    )
    assert result.status["url"] == "http://127.0.0.1:9000"
    assert result.traffic[1].url == "http://127.0.0.1:9000/_tag/prev"


# -- the CustomResourceDefinition ------------------------------------------------------------------


def test_every_produced_status_fits_the_crd() -> None:
    """Each status the cases above produced validates against the CRD (unknown fields refused)."""
    assert PRODUCED, "run with the cases above"
    for status in PRODUCED:
        errors = status_errors(status)
        assert not errors, errors
