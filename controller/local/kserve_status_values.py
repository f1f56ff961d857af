"""The values a KServe ``status`` is made of, as the local target models them: revisions and
their state, Knative traffic targets and conditions, the rollout pointers, and what one pass
keeps from the last status (:class:`PreviousStatus`) and hands back (:class:`IsvcStatus`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "FALSE",
    "TRUE",
    "UNKNOWN",
    "Condition",
    "IsvcStatus",
    "PredictorSpec",
    "PreviousStatus",
    "Revision",
    "RevisionState",
    "Rollout",
    "TrafficTarget",
]

#: A Knative condition's status values.
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
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
