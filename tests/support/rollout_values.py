"""Plain values of a rollout (observations, targets, a policy) for the decision tests.

``in_shadow`` and ``shadow_target`` are a release in its shadow phase, for
``tests/test_rollout_shadow.py`` (the local target) and ``tests/test_rollout_mirror.py`` (a
cluster, whose mirror is in Git).
"""

from __future__ import annotations

from controller.analysis_types import GateResult, Verdict
from controller.manifests.manifest import PinnedRelease
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy
from controller.rollout.record import AnalysisRecord
from controller.shadow.mirror import ShadowMirror
from controller.target_types import TargetObservation, TrafficEntry

__all__ = [
    "HEAD",
    "NEW",
    "OLD",
    "POLICY",
    "SMOKED",
    "canary_target",
    "full_target",
    "in_shadow",
    "observation",
    "passing",
    "shadow_target",
]

HEAD = "c" * 40
POLICY = RolloutPolicy.model_validate(
    {"steps": [10, 50, 100], "interval": 30, "failureLimit": 1, "inconclusiveLimit": 3}
)
OLD, NEW = "fd-predictor-00001", "fd-predictor-00002"


def canary_target(
    percent: int, *, ready: bool = True, failure: str | None = None
) -> TargetObservation:
    return TargetObservation(
        exists=True,
        synced_revision=HEAD,
        sync_status="Synced",
        configuration="fd-predictor",
        latest_created=NEW,
        latest_ready=NEW if ready else OLD,
        latest_rolledout=OLD,
        traffic=(
            TrafficEntry(NEW if ready else OLD, percent, True, "latest", "http://r/_tag/latest"),
            TrafficEntry(OLD, 100 - percent, False, "prev", "http://r/_tag/prev"),
        ),
        failure=failure,
    )


def full_target(revision: str = NEW) -> TargetObservation:
    return TargetObservation(
        exists=True,
        synced_revision=HEAD,
        sync_status="Synced",
        latest_created=revision,
        latest_ready=revision,
        latest_rolledout=revision,
        traffic=(TrafficEntry(revision, 100, True),),
    )


def observation(
    canary: int | None,
    target: TargetObservation,
    *,
    version: int = 2,
    previous: int | None = 1,
    champion: int | None = 1,
    analysis: AnalysisRecord | None = None,
    quarantined: str | None = None,
    changed_at: float = 1000.0,
    action: str | None = None,
) -> ReleaseObservation:
    return ReleaseObservation(
        model="fd",
        environment="staging",
        inference_service="fd",
        pin=PinnedRelease("fd", version, "s3://m/2", "run", previous, canary),
        head=HEAD,
        pin_commit=HEAD,
        pin_changed_at=changed_at,
        target=target,
        champion=champion,
        quarantined=quarantined,
        analysis=analysis,
        pin_action=action,
    )


def passing() -> list[GateResult]:
    return [GateResult("locust", Verdict.PASS, "ok"), GateResult("judge", Verdict.PASS, "ok")]


def shadow_target(*, ready: bool = True, failure: str | None = None) -> TargetObservation:
    """KServe at canaryTrafficPercent 0: the new revision at 0 % (tag latest), the old at 100 %,
    on the local target, whose router mirrors by itself (tests/test_rollout_mirror.py has the
    cluster's mirror in Git)."""
    return TargetObservation(
        exists=True,
        synced_revision=HEAD,
        sync_status="Synced",
        configuration="fd-predictor",
        latest_created=NEW,
        latest_ready=NEW if ready else OLD,
        latest_rolledout=OLD,
        traffic=(
            TrafficEntry(NEW if ready else OLD, 0, True, "latest", "http://r/_tag/latest"),
            TrafficEntry(OLD, 100, False, "prev", "http://r/_tag/prev"),
        ),
        failure=failure,
        mirrors_shadow=True,
    )


#: The phase's record once the smoke (on by default) passed at its start: the shadow judge
#: takes over from there (tests/test_rollout_watch_smoke.py has the smoke itself).
SMOKED = AnalysisRecord(
    commit=HEAD, step=0, smoke="smoke: 0 of 50 requests to the new revision failed (0.0%)"
)


def in_shadow(
    target: TargetObservation | None = None,
    *,
    analysis: AnalysisRecord | None = SMOKED,
    quarantined: str | None = None,
    changed_at: float = 1000.0,
    mirror: ShadowMirror | None = None,
) -> ReleaseObservation:
    """v2 pinned in its shadow phase beside v1, as observed on ``target``, its smoke passed
    (``analysis=None``: just merged, before the smoke)."""
    return ReleaseObservation(
        model="fd",
        environment="staging",
        inference_service="fd",
        pin=PinnedRelease("fd", 2, "s3://m/2", "run", 1, 0),
        head=HEAD,
        pin_commit=HEAD,
        pin_changed_at=changed_at,
        target=target or shadow_target(),
        champion=1,
        quarantined=quarantined,
        analysis=analysis,
        shadow_percent=100.0,
        shadow_mirror=mirror,
    )
