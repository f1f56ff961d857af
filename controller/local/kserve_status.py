"""What KServe (Serverless mode, on Knative) would report for an InferenceService: pure functions.

(RawDeployment mode, with Deployments instead of Knative revisions, is
:mod:`controller.local.raw_status`; it shares the conditions' time stamps and ``modelStatus``.)

The local target stands in for a cluster, so the rollout logic must see the same ``status`` a
real KServe writes, including its quirks: N is ignored on the first rollout, a failed canary
gets no traffic although its entry still says N %, and N = 0 after a promotion walks back to
the previous rollout in two passes. Each function mirrors one piece of upstream code
(kserve/kserve ``createKnativeService``, ``PropagateStatus``, ``PropagateModelStatus``,
``PropagateCrossComponentStatus``, the Serverless ingress reconciler; knative/serving's
configuration and route status; knative/pkg's living condition set). One pass assumes Knative
has converged on the spec KServe just wrote; the clock is an argument.

::

    desired_traffic(spec, rollout)        KServe -> Knative route spec
    resolve_traffic(...)                  Knative: latestRevision -> latest *ready* revision
    effective_split(traffic)              what the router does: revision -> percent
    next_rollout(...)                     KServe's promote and rollback rules
    reconcile_status(...)                 all of it, as a KServe-shaped ``status`` dict
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from controller.local.kserve_conditions import (
    configuration_ready,
    isvc_conditions,
    stamp_conditions,
)
from controller.local.kserve_status_values import (
    FALSE,
    TRUE,
    UNKNOWN,
    Condition,
    IsvcStatus,
    PredictorSpec,
    PreviousStatus,
    Revision,
    RevisionState,
    Rollout,
    TrafficTarget,
)

__all__ = [
    "Condition",
    "IsvcStatus",
    "PredictorSpec",
    "PreviousStatus",
    "Revision",
    "RevisionState",
    "Rollout",
    "TrafficTarget",
    "desired_traffic",
    "effective_split",
    "latest_ready_revision",
    "model_status",
    "next_rollout",
    "reconcile_status",
    "resolve_traffic",
    "stamp_conditions",
]


# -- the traffic ---------------------------------------------------------------------------------


def desired_traffic(spec: PredictorSpec, rollout: Rollout) -> list[TrafficTarget]:
    """The Knative route spec KServe writes (``createKnativeService``).

    With N set and a previous rollout R: ``latest`` gets N %, R gets the rest tagged ``prev``.
    Otherwise (no N, or the first rollout) the latest revision gets 100 %.
    """
    latest_tag = "latest" if spec.enable_tag_routing else ""
    percent = spec.canary_traffic_percent
    if percent is None or not rollout.latest:
        return [TrafficTarget(100, True, tag=latest_tag)]
    targets = [TrafficTarget(percent, True, tag=latest_tag)]
    if percent < 100:
        targets.append(TrafficTarget(100 - percent, False, rollout.latest, tag="prev"))
    return targets


def latest_ready_revision(revisions: list[Revision]) -> str:
    """Knative's ``latestReadyRevisionName``: the newest revision that became ready ("" if none)."""
    ready = [r.name for r in revisions if r.state is RevisionState.READY]
    return ready[-1] if ready else ""


def resolve_traffic(
    desired: list[TrafficTarget],
    revisions: list[Revision],
    previous: tuple[TrafficTarget, ...],
    tag_url: Callable[[str], str],
) -> tuple[tuple[TrafficTarget, ...], Condition]:
    """Knative's route: name the revision behind each target, or keep the old traffic.

    Returns the status traffic and the route's Ready condition. ``latestRevision: true`` means
    the latest *ready* revision; with none, the route is not ready and its status traffic is
    left as it was.
    """
    latest_ready = latest_ready_revision(revisions)
    states = {r.name: r.state for r in revisions}
    config = f'"{_configuration(revisions)}"'
    resolved = []
    for target in desired:
        name = latest_ready if target.latest_revision else target.revision_name
        if target.latest_revision and not name:
            if revisions and revisions[-1].state is RevisionState.FAILED:
                message = f"Configuration {config} does not have any ready Revision."
                return previous, Condition("RoutesReady", FALSE, "RevisionMissing", message)
            message = f"Configuration {config} is waiting for a Revision to become ready."
            return previous, Condition("RoutesReady", UNKNOWN, "RevisionMissing", message)
        if states.get(name) is not RevisionState.READY:
            message = f'Revision "{name}" referenced in traffic not found.'
            return previous, Condition("RoutesReady", FALSE, "RevisionMissing", message)
        url = tag_url(target.tag) if target.tag else ""
        resolved.append(replace(target, revision_name=name, url=url))
    return tuple(resolved), Condition("RoutesReady", TRUE)


def effective_split(traffic: tuple[TrafficTarget, ...] | list[TrafficTarget]) -> dict[str, int]:
    """Percent of requests each revision receives (targets naming one revision add up).

    Revisions at 0 % are left out; a router also needs the tagged targets of ``traffic``.
    """
    split: dict[str, int] = {}
    for target in traffic:
        if target.revision_name:
            split[target.revision_name] = split.get(target.revision_name, 0) + target.percent
    return {name: percent for name, percent in split.items() if percent}


def next_rollout(
    rollout: Rollout,
    traffic: tuple[TrafficTarget, ...],
    *,
    latest_ready: str,
    latest_created: str,
) -> Rollout:
    """KServe's ``PropagateStatus`` bookkeeping of rolled-out revisions.

    Promote: the latest-ready target at 100 % that is not yet the latest rollout becomes it,
    and the old one becomes the previous. Roll back: the latest rollout is also latest ready
    and created, its ``latestRevision`` entry is under 100 % but the revision still gets 100 %
    in total (N < 100 routes ``prev`` to itself), and a previous exists: go back to it.
    """
    totals = effective_split(traffic)
    for target in traffic:
        if not (target.latest_revision and target.revision_name == latest_ready):
            continue
        if rollout.latest != latest_ready:
            if target.percent == 100:
                rollout = Rollout(latest_ready, rollout.latest)
        elif (
            latest_ready == latest_created
            and target.percent < 100
            and totals.get(target.revision_name) == 100
            and rollout.previous
        ):
            rollout = Rollout(rollout.previous, rollout.previous)
    return rollout


def _configuration(revisions: list[Revision]) -> str:
    """Knative configuration name: the revision name without its ``-0000K`` suffix."""
    return revisions[-1].name.rsplit("-", 1)[0] if revisions else ""


# -- the whole status ----------------------------------------------------------------------------


def model_status(
    latest: Revision, ready: bool, previous: PreviousStatus, *, loaded_copies: int
) -> dict[str, Any]:
    """KServe's ``PropagateModelStatus`` for the latest created revision's model server."""
    failure = previous.last_failure_info  # KServe never clears it
    if ready and latest.state is RevisionState.READY:
        transition, target = "UpToDate", "Loaded"
    elif latest.state is RevisionState.FAILED:
        transition, target = "BlockedByFailedLoad", "FailedToLoad"
        failure = {"reason": "ModelLoadFailed", "message": latest.message}
        if latest.exit_code is not None:
            failure["exitCode"] = latest.exit_code
    else:
        transition, target = "InProgress", "Loading"
    active = "Loaded" if target == "Loaded" else previous.active_model_state
    copies = {"failedCopies": 0} | ({"totalCopies": loaded_copies} if loaded_copies else {})
    status: dict[str, Any] = {
        "transitionStatus": transition,
        "states": {"activeModelState": active, "targetModelState": target},
        "copies": copies,
    }
    if failure:
        status["lastFailureInfo"] = dict(failure)
    return status


def reconcile_status(
    name: str,
    spec: PredictorSpec,
    revisions: list[Revision],
    previous: PreviousStatus,
    *,
    now: str,
    namespace: str = "default",
    domain: str = "example.com",
    url: str = "",
    generation: int | None = None,
) -> IsvcStatus:
    """One KServe reconcile of InferenceService ``name`` whose revisions are ``revisions``
    (oldest first, the last one being the latest created).

    ``now`` is the RFC 3339 time stamped on conditions that change. ``url`` is where the
    service answers (the local router); without it, URLs are KServe's
    ``http://<name>-predictor.<namespace>.<domain>`` form. Tagged traffic gets
    ``<url>/_tag/<tag>`` locally, ``http://<tag>-<name>-predictor.<namespace>.<domain>`` else.
    """
    if not revisions:
        raise ValueError(f"InferenceService {name!r} has no revision to report on")
    host = f"{name}-predictor.{namespace}.{domain}"

    def tag_url(tag: str) -> str:
        return f"{url}/_tag/{tag}" if url else f"http://{tag}-{host}"

    latest_created = revisions[-1].name
    latest_ready = latest_ready_revision(revisions)
    desired = desired_traffic(spec, previous.rollout)
    traffic, route = resolve_traffic(desired, revisions, previous.traffic, tag_url)
    rollout = next_rollout(
        previous.rollout, traffic, latest_ready=latest_ready, latest_created=latest_created
    )
    merged = isvc_conditions(configuration_ready(revisions), route)
    conditions = stamp_conditions(merged, previous.conditions, now)
    ready = merged["Ready"].status == TRUE
    predictor_ready = merged["PredictorReady"].status == TRUE
    predictor_url = (url or f"http://{host}") if predictor_ready else previous.predictor_url

    fields = {
        "latestCreatedRevision": latest_created,
        "latestReadyRevision": latest_ready,
        "latestRolledoutRevision": rollout.latest,
        "previousRolledoutRevision": rollout.previous,
        "url": predictor_url,
        "traffic": [t.to_dict() for t in traffic],
    }
    predictor = {key: value for key, value in fields.items() if value}
    status: dict[str, Any] = {
        "conditions": [c.to_dict() for c in conditions],
        "components": {"predictor": predictor},
        "modelStatus": model_status(
            revisions[-1], ready, previous, loaded_copies=int(latest_ready == latest_created)
        ),
    }
    if predictor_url:
        status["url"] = url or f"http://{name}.{namespace}.{domain}"
        status["address"] = {"url": url or f"http://{name}.{namespace}.svc.cluster.local"}
    if generation is not None:
        status["observedGeneration"] = generation
    split = effective_split(traffic)
    return IsvcStatus(status, traffic, split, rollout, latest_created, latest_ready, ready)
