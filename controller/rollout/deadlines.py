"""The progress deadline of a rollout: how long a pin may wait for its sync or its revision
before the wait becomes an abort. Pure: ``now`` is an argument."""

from __future__ import annotations

from controller.rollout.actions import Action, StartRollback, Wait
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy

__all__ = ["deadline_passed", "unsynced_or_abort", "wait_or_abort"]


def deadline_passed(
    obs: ReleaseObservation, policy: RolloutPolicy, now: float, since: float | None = None
) -> bool:
    """Whether the progress deadline, counted from ``since`` (by default the pin's last
    change), is behind ``now``."""
    start = obs.pin_changed_at if since is None else since
    return now - start > policy.progress_deadline_seconds


def wait_or_abort(
    obs: ReleaseObservation,
    policy: RolloutPolicy,
    now: float,
    *,
    late: str,
    waiting: str,
    phase: str,
    since: float | None = None,
) -> Action:
    """Something the rollout waits for has not happened: wait (``waiting``), or roll back once
    the deadline counted from ``since`` passed, saying ``late`` and the deadline."""
    if deadline_passed(obs, policy, now, since):
        return StartRollback(
            f"{late} within {policy.progress_deadline_seconds:g} s", verdict="aborted"
        )
    return Wait(waiting, phase)


def unsynced_or_abort(
    obs: ReleaseObservation,
    policy: RolloutPolicy,
    now: float,
    phase: str,
    since: float | None = None,
) -> Action:
    """The branch tip is not applied yet: wait, or roll back once the deadline passed (counted
    from ``since``, by default the pin's last change)."""
    return wait_or_abort(
        obs,
        policy,
        now,
        late=f"{obs.environment} did not sync {obs.head[:12]}",
        waiting=f"waiting for {obs.environment} to sync {obs.head[:12]}",
        phase=phase,
        since=since,
    )
