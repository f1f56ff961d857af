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

from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, replace
from enum import StrEnum
from typing import Any

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

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
# KServe's InferenceService condition set: Ready is happy when these are (Serverless mode).
_ISVC_DEPENDENTS = ("PredictorReady", "IngressReady")
# Knative's Service condition set.
_KSVC_DEPENDENTS = ("ConfigurationsReady", "RoutesReady")
_NO_INGRESS = "Predictor ingress not created"
_TARGET_KEYS = ("revisionName", "tag", "url")
_CONDITION_KEYS = ("type", "status", "reason", "message", "severity", "lastTransitionTime")


class RevisionState(StrEnum):
    """Where a revision's model server is: starting and loading, serving, or given up."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Revision:
    """One revision (``<isvc>-predictor-0000K``); ``message`` says why it failed, as Knative's
    revision condition would (``Container failed with: ...``)."""

    name: str
    state: RevisionState
    message: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class PredictorSpec:
    """The parts of ``spec.predictor`` and the annotations that decide the traffic."""

    canary_traffic_percent: int | None = None
    enable_tag_routing: bool = False  # annotation serving.kserve.io/enable-tag-routing: "true"


@dataclass(frozen=True)
class TrafficTarget:
    """A Knative traffic target, as in the route spec (revision unresolved) or status."""

    percent: int
    latest_revision: bool
    revision_name: str = ""
    tag: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The target as it appears in ``status.components.predictor.traffic``."""
        out: dict[str, Any] = {"latestRevision": self.latest_revision, "percent": self.percent}
        extra = {"revisionName": self.revision_name, "tag": self.tag, "url": self.url}
        return out | {key: value for key, value in extra.items() if value}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> TrafficTarget:
        """Read a status traffic entry back."""
        get = entry.get
        return cls(
            get("percent", 0), get("latestRevision", False), *(get(k, "") for k in _TARGET_KEYS)
        )


@dataclass(frozen=True)
class Rollout:
    """``latestRolledoutRevision`` and ``previousRolledoutRevision`` ("" when unset)."""

    latest: str = ""
    previous: str = ""


@dataclass(frozen=True)
class Condition:
    """A Knative condition; ``severity`` is "Info" for conditions Ready does not depend on."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    severity: str = ""
    last_transition_time: str = ""

    def to_dict(self) -> dict[str, str]:
        """The condition as in ``status.conditions`` (empty fields left out)."""
        fields = zip(_CONDITION_KEYS, astuple(self), strict=True)
        return {key: value for key, value in fields if value}


@dataclass(frozen=True)
class PreviousStatus:
    """What the next pass needs from the last ``status`` (KServe keeps it on the object)."""

    rollout: Rollout = Rollout()
    traffic: tuple[TrafficTarget, ...] = ()
    conditions: tuple[Condition, ...] = ()
    last_failure_info: Mapping[str, Any] | None = None
    active_model_state: str = ""
    predictor_url: str = ""

    @classmethod
    def from_dict(cls, status: Mapping[str, Any] | None) -> PreviousStatus:
        """Parse a ``status`` dict written by :func:`reconcile_status` (or by KServe)."""
        if not status:
            return cls()
        predictor = status.get("components", {}).get("predictor", {})
        model = status.get("modelStatus", {})
        return cls(
            rollout=Rollout(
                predictor.get("latestRolledoutRevision", ""),
                predictor.get("previousRolledoutRevision", ""),
            ),
            traffic=tuple(TrafficTarget.from_dict(t) for t in predictor.get("traffic", [])),
            conditions=tuple(
                Condition(*(c.get(key, "") for key in _CONDITION_KEYS))
                for c in status.get("conditions", [])
            ),
            last_failure_info=model.get("lastFailureInfo"),
            active_model_state=model.get("states", {}).get("activeModelState", ""),
            predictor_url=predictor.get("url", ""),
        )


@dataclass(frozen=True)
class IsvcStatus:
    """The outcome of one pass: the KServe-shaped ``status`` and what the router needs."""

    status: dict[str, Any]
    traffic: tuple[TrafficTarget, ...]
    split: dict[str, int]
    rollout: Rollout
    latest_created: str
    latest_ready: str
    ready: bool


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


# -- conditions ----------------------------------------------------------------------------------


class _ConditionSet:
    """knative/pkg's living condition set: the happy condition follows its dependents."""

    def __init__(self, happy: str, dependents: tuple[str, ...]) -> None:
        self.happy = happy
        self.dependents = dependents
        self.conditions = {t: Condition(t, UNKNOWN) for t in (happy, *dependents)}

    def _set(self, t: str, status: str, reason: str = "", message: str = "") -> None:
        severity = "" if t == self.happy or t in self.dependents else "Info"
        self.conditions[t] = Condition(t, status, reason, message, severity)

    def mark(self, c: Condition, type_: str | None = None) -> None:
        """KServe's ``SetCondition``: copy ``c``'s status (and reason) onto ``type_``."""
        t = type_ or c.type
        if c.status == TRUE:
            self._set(t, TRUE)
            if all(self.conditions[d].status == TRUE for d in self.dependents):
                self._set(self.happy, TRUE)
        elif c.status == FALSE:
            self._set(t, FALSE, c.reason, c.message)
            if t in self.dependents:
                self._set(self.happy, FALSE, c.reason, c.message)
        else:
            self._set(t, UNKNOWN, c.reason, c.message)
            if any(self.conditions[d].status == FALSE for d in self.dependents):
                if self.conditions[self.happy].status != FALSE:
                    self._set(self.happy, FALSE, c.reason, c.message)
            elif t in self.dependents:
                self._set(self.happy, UNKNOWN, c.reason, c.message)


def _configuration(revisions: list[Revision]) -> str:
    """Knative configuration name: the revision name without its ``-0000K`` suffix."""
    return revisions[-1].name.rsplit("-", 1)[0] if revisions else ""


def _configuration_ready(revisions: list[Revision]) -> Condition:
    latest = revisions[-1]
    if latest.state is RevisionState.READY:
        return Condition("ConfigurationsReady", TRUE)
    if latest.state is RevisionState.FAILED:
        message = f'Revision "{latest.name}" failed with message: {latest.message}.'
        return Condition("ConfigurationsReady", FALSE, "RevisionFailed", message)
    return Condition("ConfigurationsReady", UNKNOWN)


def _isvc_conditions(config: Condition, route: Condition) -> dict[str, Condition]:
    """Knative's service Ready, then KServe's propagation onto the InferenceService."""
    ksvc = _ConditionSet("Ready", _KSVC_DEPENDENTS)
    ksvc.mark(config)
    ksvc.mark(route)
    isvc = _ConditionSet("Ready", _ISVC_DEPENDENTS)
    isvc.mark(ksvc.conditions["Ready"], "PredictorReady")
    isvc.mark(route, "PredictorRouteReady")
    isvc.mark(config, "PredictorConfigurationReady")
    for cross, part in (
        ("RoutesReady", "PredictorRouteReady"),
        ("LatestDeploymentReady", "PredictorConfigurationReady"),
    ):
        status = isvc.conditions[part].status
        isvc.mark(Condition(cross, status, "" if status == TRUE else f"{part} not ready"))
    predictor = isvc.conditions["PredictorReady"].status
    ingress = TRUE if predictor == TRUE else predictor
    isvc.mark(Condition("IngressReady", ingress, "" if ingress == TRUE else _NO_INGRESS))
    return isvc.conditions


def stamp_conditions(
    conditions: dict[str, Condition], previous: tuple[Condition, ...], now: str
) -> tuple[Condition, ...]:
    """Sort by type (as Knative does) and keep a transition time while a condition holds."""
    held = {replace(c, last_transition_time=""): c.last_transition_time for c in previous}
    return tuple(
        replace(c, last_transition_time=held.get(c, now))
        for c in sorted(conditions.values(), key=lambda c: c.type)
    )


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
    merged = _isvc_conditions(_configuration_ready(revisions), route)
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
