"""What KServe in RawDeployment mode would report for an InferenceService: a pure function.

Why apart from :mod:`controller.local.kserve_status`: there is no Knative here. KServe 0.20
runs ``spec.predictor`` as a Deployment (the primary) and each ``spec.canary`` entry as a
Deployment of its own, and its HTTPRoute splits requests between them by ``trafficPercent``,
sending a canary nothing until its pods are ready (kserve#5984). A changed primary template is
a rolling update: the old pods serve until the new ones are ready. What KServe reports:

- conditions ``PredictorReady`` (the primary Deployment is available), ``IngressReady`` and
  ``Ready``, plus ``CanaryPredictorReady`` while a canary exists (``AllCanariesReady`` when it
  is ready); ``status.deploymentMode``;
- ``status.canaryStatuses[]``: the canary's ``name``, ``ready``, the ``trafficPercent`` it
  actually receives and its ``modelStatus``.

Assumptions, where KServe's documentation is silent: the top-level ``modelStatus`` follows the
newest Deployment (the canary while one exists), as it follows the latest created revision in
Serverless mode, so a canary that cannot load shows ``BlockedByFailedLoad``; a canary that is
not ready has ``CanaryPredictorReady`` Unknown (loading) or False (failed) with reason
``CanaryNotReady``, at severity Info, since the primary keeps ``Ready`` True.

A local addition, so that the rollout reads the same fields in both modes (real KServe leaves
them empty in this mode): ``components.predictor`` carries Knative's ``latestCreatedRevision``
(the canary's revision while there is one), ``latestReadyRevision``, ``latestRolledoutRevision``
(the revision the primary serves from) and ``traffic``: the canary's entry is
``latestRevision: true`` and tagged ``latest``, the primary's tagged ``prev``, so a load test
reaches each alone (on a cluster each Deployment has a Service of its own). The status says so
in ``status.annotations`` (``sluice.dev/local-revisions``), so the shared mapping
(:func:`controller.backends.kubernetes_target.observation_from`) reads these fields rather than
deriving Deployment names from the spec, as it does for a cluster's RawDeployment status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.local.kserve_conditions import NO_INGRESS, stamp_conditions
from controller.local.kserve_status import effective_split, model_status
from controller.local.kserve_status_values import (
    FALSE,
    TRUE,
    UNKNOWN,
    Condition,
    IsvcStatus,
    PreviousStatus,
    Revision,
    RevisionState,
    Rollout,
    TrafficTarget,
)
from controller.manifests.deployment_mode import LOCAL_REVISIONS_ANNOTATION, canary_deployment_name

__all__ = ["RawSpec", "reconcile_raw_status"]

_UNAVAILABLE = ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.")


@dataclass(frozen=True)
class RawSpec:
    """Which revision runs which predictor, and the canary's name and weight."""

    primary: str  # the revision of spec.predictor as it is now
    canary: str = ""  # the revision of the spec.canary predictor ("" without a canary)
    canary_name: str = ""
    traffic_percent: int = 0
    primary_name: str = ""  # spec.predictor.name ("" when unnamed)


def _serving_primary(spec: RawSpec, states: dict[str, Revision], rolled_out: str) -> str:
    """The revision the primary Deployment serves from: its current template once ready, the
    one it served before while a rolling update is under way, "" when none is ready."""
    for name in (spec.primary, rolled_out):
        if name and name != spec.canary and _ready(states.get(name)):
            return name
    return ""


def _ready(revision: Revision | None) -> bool:
    return revision is not None and revision.state is RevisionState.READY


def _traffic(
    spec: RawSpec, stable: str, canary_ready: bool, latest: str, tag_url: Callable[[str], str]
) -> tuple[TrafficTarget, ...]:
    """The HTTPRoute's split: ready backends only, the primary taking what the canary leaves."""
    if not stable:
        return ()
    if not spec.canary:
        return (TrafficTarget(100, stable == latest, stable),)
    prev = TrafficTarget(100, False, stable, tag="prev", url=tag_url("prev"))
    if not canary_ready:
        return (prev,)
    percent = spec.traffic_percent
    canary = TrafficTarget(percent, True, spec.canary, tag="latest", url=tag_url("latest"))
    return canary, TrafficTarget(100 - percent, False, stable, "prev", prev.url)


def _conditions(stable: str, spec: RawSpec, canary: Revision | None) -> dict[str, Condition]:
    reason, message = ("", "") if stable else _UNAVAILABLE
    status = TRUE if stable else FALSE
    conditions = {
        "PredictorReady": Condition("PredictorReady", status, reason, message),
        "IngressReady": Condition("IngressReady", status, "" if stable else NO_INGRESS),
        "Ready": Condition("Ready", status, reason, message),
    }
    if canary is not None:
        if canary.state is RevisionState.READY:
            condition = Condition("CanaryPredictorReady", TRUE, "AllCanariesReady", severity="Info")
        else:
            why = f": {canary.message}" if canary.message else ""
            condition = Condition(
                "CanaryPredictorReady",
                FALSE if canary.state is RevisionState.FAILED else UNKNOWN,
                "CanaryNotReady",
                f'Canary "{spec.canary_name}" is {canary.state.value}{why}',
                "Info",
            )
        conditions[condition.type] = condition
    return conditions


def reconcile_raw_status(
    name: str,
    spec: RawSpec,
    revisions: list[Revision],
    previous: PreviousStatus,
    *,
    now: str,
    namespace: str = "default",
    domain: str = "example.com",
    url: str = "",
    generation: int | None = None,
) -> IsvcStatus:
    """One KServe reconcile of RawDeployment InferenceService ``name``.

    ``revisions`` are the live revisions (``spec.primary``, ``spec.canary`` and the one the
    primary served from before, if it still runs). ``url`` is where the service answers (the
    local router); tagged traffic then gets ``<url>/_tag/<tag>``, else the Service of the
    tagged Deployment, ``http://<isvc>[-<name>]-predictor.<namespace>.<domain>``.
    """
    states = {r.name: r for r in revisions}
    if spec.primary not in states:
        raise ValueError(f"InferenceService {name!r}: no revision {spec.primary!r} to report on")
    canary = states.get(spec.canary) if spec.canary else None

    def tag_url(tag: str) -> str:
        if url:
            return f"{url}/_tag/{tag}"
        deployment = spec.canary_name if tag == "latest" else spec.primary_name
        service = canary_deployment_name(name, deployment) if deployment else f"{name}-predictor"
        return f"http://{service}.{namespace}.{domain}"

    stable = _serving_primary(spec, states, previous.rollout.latest)
    latest_created = spec.canary or spec.primary
    latest_ready = next(
        (r for r in (spec.canary, spec.primary, stable) if r and _ready(states.get(r))), ""
    )
    traffic = _traffic(spec, stable, _ready(canary), latest_created, tag_url)
    conditions = stamp_conditions(_conditions(stable, spec, canary), previous.conditions, now)
    predictor_url = (url or f"http://{name}-predictor.{namespace}.{domain}") if stable else ""
    fields = {
        "latestCreatedRevision": latest_created,
        "latestReadyRevision": latest_ready,
        "latestRolledoutRevision": stable,
        "url": predictor_url or previous.predictor_url,
        "traffic": [t.to_dict() for t in traffic],
    }
    newest = states[latest_created]
    status: dict[str, Any] = {
        "annotations": {LOCAL_REVISIONS_ANNOTATION: "true"},
        "conditions": [c.to_dict() for c in conditions],
        "components": {"predictor": {key: value for key, value in fields.items() if value}},
        "deploymentMode": "RawDeployment",
        "modelStatus": model_status(
            newest, _ready(newest), previous, loaded_copies=int(_ready(newest))
        ),
    }
    if canary is not None:
        status["canaryStatuses"] = [_canary_status(spec, canary, routed=bool(stable))]
    if fields["url"]:
        status["url"] = url or f"http://{name}.{namespace}.{domain}"
        status["address"] = {"url": url or f"http://{name}.{namespace}.svc.cluster.local"}
    if generation is not None:
        status["observedGeneration"] = generation
    split = effective_split(traffic)
    return IsvcStatus(
        status, traffic, split, Rollout(stable), latest_created, latest_ready, bool(stable)
    )


def _canary_status(spec: RawSpec, canary: Revision, *, routed: bool) -> dict[str, Any]:
    """``status.canaryStatuses[]``: the traffic it receives, its model server's status."""
    ready = _ready(canary)
    return {
        "name": spec.canary_name,
        "ready": ready,
        "trafficPercent": spec.traffic_percent if ready and routed else 0,
        "modelStatus": model_status(canary, ready, PreviousStatus(), loaded_copies=int(ready)),
    }
