"""The phases at weight 0, before any client traffic: the shadow phase (the challenger's
revision judged on mirrored requests, its mirror committed to Git where the target does not
mirror by itself) and the smoke phase (the new revision's tag route smoked). Pure: ``now`` is
an argument; the rules are listed in :mod:`controller.rollout.decide`."""

from __future__ import annotations

from controller.rollout.actions import (
    Action,
    AnalyzeShadow,
    Smoke,
    StartMirror,
    StartRollback,
    Wait,
)
from controller.rollout.deadlines import unsynced_or_abort, wait_or_abort
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy
from controller.rollout.record import AnalysisRecord
from controller.shadow.mirror import ShadowMirror
from controller.target_types import TargetObservation

__all__ = ["shadowing", "smoking"]


def shadowing(obs: ReleaseObservation, policy: RolloutPolicy, now: float) -> Action:
    """Weight 0 in the shadow phase: wait for the challenger's revision, then judge it."""
    target = obs.target
    if not obs.synced:
        # The mirror's own commit, made once the challenger was ready, waits for its own sync.
        since = max(obs.pin_changed_at, obs.shadow_mirror_changed_at or 0.0)
        return unsynced_or_abort(obs, policy, now, "shadowing", since)
    challenger = target.latest_created
    if target.failure and challenger != target.latest_ready:
        return StartRollback(f"challenger revision {challenger} failed: {target.failure}")
    if challenger is None or target.latest_ready != challenger:
        return wait_or_abort(
            obs,
            policy,
            now,
            late=f"challenger revision {challenger} was not ready",
            waiting=f"challenger revision {challenger} is loading",
            phase="shadowing",
        )
    record = obs.analysis
    if record is None or record.commit != obs.pin_commit:
        record = AnalysisRecord(commit=obs.pin_commit, step=0)
    if policy.smoke.enabled and record.smoke is None:
        # The smoke first: a challenger that errors is stopped before anything is mirrored
        # to it or judged. As in a smoke phase, it waits for the challenger's tag route: a
        # revision KServe reports ready before its route has a URL would otherwise get a smoke
        # that cannot run. A smoke that could not run is tried again an interval later.
        if not _smoke_route(target, challenger):
            return wait_or_abort(
                obs,
                policy,
                now,
                late=f"challenger revision {challenger} was not ready on its tag route",
                waiting=f"challenger revision {challenger} has no tag route yet",
                phase="shadowing",
            )
        retry = _smoke_retry(record, policy, now, "shadowing")
        return retry or Smoke(policy.steps[0], record, shadow=True)
    if not target.mirrors_shadow:
        mirroring = _mirroring(obs, policy, now, challenger)
        if mirroring is not None:
            return mirroring
    start = record.last_at if record.last_at is not None else obs.pin_changed_at
    due = start + policy.interval_seconds
    if now < due:
        return Wait(f"shadow: next judgement in {due - now:.0f} s", "shadowing", due - now)
    return AnalyzeShadow(look=record.looks + 1, record=record)


def smoking(obs: ReleaseObservation, policy: RolloutPolicy, now: float) -> Action:
    """Weight 0 in the smoke phase: wait for the new revision on its tag route, then smoke it."""
    target = obs.target
    if not obs.synced:
        return unsynced_or_abort(obs, policy, now, "smoke_testing")
    revision = target.latest_created
    if target.failure and revision != target.latest_ready:
        return StartRollback(f"new revision {revision} failed: {target.failure}")
    if revision is None or target.latest_ready != revision or not _smoke_route(target, revision):
        return wait_or_abort(
            obs,
            policy,
            now,
            late=f"new revision {revision} was not ready on its tag route",
            waiting=f"new revision {revision} is loading at 0%",
            phase="smoke_testing",
        )
    record = obs.analysis
    if record is None or record.commit != obs.pin_commit:
        return Smoke(policy.steps[0])
    return _smoke_retry(record, policy, now, "smoke_testing") or Smoke(policy.steps[0], record)


def _smoke_retry(
    record: AnalysisRecord, policy: RolloutPolicy, now: float, phase: str
) -> Wait | None:
    """The wait before the next try of a smoke that could not run, or None when it is due."""
    if record.last_at is None:
        return None
    due = record.last_at + policy.interval_seconds
    if now >= due:
        return None
    return Wait(f"smoke: next try in {due - now:.0f} s", phase, due - now)


def _smoke_route(target: TargetObservation, revision: str) -> bool:
    """The ``latest`` tag route reaches ``revision`` (KServe lists it at 0 % beside the
    primary once it is ready; RawDeployment's HTTPRoute the same)."""
    route = target.tagged("latest")
    return route is not None and route.revision == revision and route.url is not None


def _mirroring(
    obs: ReleaseObservation, policy: RolloutPolicy, now: float, challenger: str
) -> Action | None:
    """The mirror in Git for a ready challenger: None once Git holds it for this revision and
    share, else commit it (or wait for KServe to put the challenger at 0 % beside a primary)."""
    percent = obs.shadow_percent
    assert percent is not None
    if obs.shadow_mirror == ShadowMirror(challenger, percent):
        return None
    primary = _primary_beside(obs.target, challenger)
    if primary is None:
        return wait_or_abort(
            obs,
            policy,
            now,
            late=f"challenger revision {challenger} was not at 0% beside a primary at 100%",
            waiting=f"waiting for {challenger} at 0% beside a primary at 100%",
            phase="shadowing",
        )
    return StartMirror(primary, challenger, percent)


def _primary_beside(target: TargetObservation, challenger: str) -> str | None:
    """The revision whose requests a shadow phase copies, as
    :func:`~controller.shadow.phase.shadow_revisions` reads KServe's status: another revision
    takes 100 % while the challenger, the latest one, takes 0 %."""
    latest = next((t for t in target.traffic if t.latest and not t.percent), None)
    if latest is None or latest.revision != challenger:
        return None
    others = {t.revision for t in target.traffic if t.revision and t.revision != challenger}
    return next((r for r in sorted(others) if target.percent_of(r) == 100), None)
