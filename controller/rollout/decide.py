"""The rollout decision: a pure function from what is observed to the one thing to do next.

No clock, network or file in here (``now`` is an argument), so the rules below are tested
with plain values and with hypothesis:

- a step advances, and a canary is promoted, only on an analysis where every gate passed;
- steps are never skipped: the next weight is always the next step of the policy, or 0;
- failing evidence rolls back after ``failureLimit`` analyses and quarantines the version;
  missing evidence (no data, too few samples) holds, as does a gate whose tool did not work
  (``error``), and they abort the rollout only after ``inconclusiveLimit`` and ``errorLimit``
  analyses in a row: traffic goes back as in a rollback, but the version is not quarantined
  (a broken tool never condemns a model);
- a canary revision that fails to load rolls back at once and is quarantined (the model
  cannot serve); one that is not serving by the progress deadline, or a sync that never
  happens, aborts (the cluster, not the model, may be at fault);
- rollback is two commits, KServe's own way: ``canaryTrafficPercent: 0`` sends all traffic
  to the previous rolled-out revision at once; once that is synced, the previous version's
  pin is restored so that Git says what serves;
- a pin in its shadow phase (weight 0 with ``sluice.dev/phase: shadow``) takes no client
  traffic: only a PASS of the shadow judge starts the first canary step; a FAIL, or no
  verdict within ``shadow.maxDuration``, rolls back;
- on a target that does not mirror by itself (a cluster), the shadow phase's mirror is an
  Istio VirtualService in Git: it is committed once the challenger's revision is ready, before
  the first judgement, and exists only during the shadow phase (the first canary step and the
  rollback remove it in their own commit; one found outside a shadow phase is removed); a
  canary step waits while the cluster still runs the removed mirror (an Application that does
  not prune), and rolls back after the progress deadline;
- a pin in its smoke phase (weight 0 with ``sluice.dev/phase: smoke``) takes no client traffic
  either: once the new revision is ready at 0 % its tag route gets the smoke; a pass commits
  the first step, a failure rolls back and quarantines, a smoke that could not run aborts. A
  shadow phase runs the smoke at its start, before its first judgement;
- a version whose provenance check failed when the rollout was about to judge or promote it
  (its artifact swapped after the proposal, under an environment that requires provenance)
  rolls back and is quarantined, from any phase that gives it traffic or is about to;
- between analyses of a step that takes client traffic, the watch (an SPRT on the canary's
  error rate since the step's commit) rolls back and quarantines as soon as its evidence is
  conclusive; it never advances a step, and a watch that could not read the counters changes
  nothing.
"""

from __future__ import annotations

from controller.errors import InputError
from controller.rollout.actions import (
    Abort,
    Action,
    Analyze,
    Finish,
    FinishRestore,
    Outcome,
    Quarantine,
    RestorePrevious,
    SetChampion,
    StartRollback,
    StopMirror,
    Wait,
    Watch,
)
from controller.rollout.conclusions import (
    conclude,
    conclude_shadow,
    conclude_smoke,
    conclude_watch,
    failing_summary,
)
from controller.rollout.deadlines import deadline_passed, unsynced_or_abort, wait_or_abort
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy
from controller.rollout.pre_traffic_phases import shadowing, smoking
from controller.rollout.record import AnalysisRecord
from controller.shadow.mirror import mirror_name

__all__ = [
    "conclude",
    "conclude_shadow",
    "conclude_smoke",
    "conclude_watch",
    "decide",
    "failing_summary",
    "manual_rollback",
]

#: ``Sluice-Action`` trailer of the commit that restores the previous version.
RESTORE_ACTION = "restore"


def decide(obs: ReleaseObservation, policy: RolloutPolicy, now: float) -> Action:
    """The next action for one model in one environment."""
    pin = obs.pin
    if pin.version is None or pin.storage_uri is None:
        return Finish(Outcome.IDLE, f"no version of {obs.model} is pinned in {obs.environment}")
    canary = pin.canary_percent
    before_traffic = obs.smoke or obs.shadow_percent is not None
    if obs.provenance_failure is not None and (canary != 0 or before_traffic):
        return _provenance_failed(obs)
    if obs.shadow_mirror is not None and obs.shadow_percent is None:
        return StopMirror(f"v{pin.version} is not in a shadow phase")
    if canary == 0 and obs.shadow_percent is not None:
        if obs.quarantined is not None:
            return StartRollback(f"v{pin.version} is quarantined ({obs.quarantined})")
        return shadowing(obs, policy, now)
    if canary == 0 and obs.smoke:
        if obs.quarantined is not None:
            return StartRollback(f"v{pin.version} is quarantined ({obs.quarantined})")
        return smoking(obs, policy, now)
    if canary == 0 and obs.restored_from is not None:
        return _finishing_restore(obs)
    if canary == 0:
        return _rolling_back(obs)
    if obs.quarantined is not None and pin.previous_version is not None:
        return StartRollback(f"v{pin.version} is quarantined ({obs.quarantined})")
    if canary is None or canary >= 100:
        return _full_rollout(obs, policy, now)
    return _canary_step(obs, policy, now, canary)


def manual_rollback(
    obs: ReleaseObservation, reason: str, previous_champion: int | None
) -> StartRollback | RestorePrevious | Wait:
    """What ``sluice rollback`` commits: abort a canary, or undo the last promotion.

    A canary (or a shadow phase) goes back the way a failed gate sends it: weight 0, then the
    restore. A version that serves alone was promoted: in Serverless mode, with the pin still
    naming the version it replaced, weight 0 sends traffic to that rollout at once (KServe's
    own rollback); otherwise (a restored pin, a RawDeployment primary) the version it replaced
    as champion (``previous_champion``, from the registry) is pinned again, safely, as a
    restore. :class:`InputError` when there is nothing earlier to go back to.
    """
    pin = obs.pin
    why = f"manual: {reason}"
    if pin.version is None:
        raise InputError(
            f"nothing to roll back: no version of {obs.model} is pinned in {obs.environment}"
        )
    before_traffic = obs.smoke or obs.shadow_percent is not None
    if pin.canary_percent == 0 and not before_traffic:
        return Wait(f"v{pin.version} is already rolling back", "rolling_back")
    if before_traffic:
        return StartRollback(why)
    if pin.canary_percent is not None and pin.canary_percent < 100:
        return StartRollback(why)
    if pin.mode == "Serverless" and pin.previous_version is not None:
        return StartRollback(why)
    if previous_champion is None or previous_champion == pin.version:
        raise InputError(
            f"{obs.model} v{pin.version} serves {obs.environment} and no earlier version was "
            f"promoted before it; propose the version to serve instead (sluice propose "
            f"{obs.model} --env {obs.environment} --version N)"
        )
    return RestorePrevious(pin.version, previous_champion, why)


def _full_rollout(obs: ReleaseObservation, policy: RolloutPolicy, now: float) -> Action:
    """No canary field: the pinned version should take all traffic once it is ready."""
    pin, target = obs.pin, obs.target
    assert pin.version is not None
    if not obs.synced:
        return Wait(f"waiting for {obs.environment} to sync {obs.head[:12]}", "progressing")
    if target.failure and target.latest_created != target.latest_ready:
        if pin.previous_version is not None:
            return StartRollback(f"revision {target.latest_created} failed: {target.failure}")
        return Finish(Outcome.FAILED, f"v{pin.version} failed to load: {target.failure}")
    serving = (
        target.latest_created is not None
        and target.latest_ready == target.latest_created
        and target.percent_of(target.latest_created) == 100
    )
    if not serving:
        if deadline_passed(obs, policy, now) and pin.previous_version is not None:
            return StartRollback(
                f"v{pin.version} was not serving within {policy.progress_deadline_seconds:g} s",
                verdict="aborted",
            )
        return Wait(f"v{pin.version} is rolling out in {obs.environment}", "progressing")
    if obs.champion != pin.version and obs.quarantined is None:
        return SetChampion(pin.version, obs.champion)
    if obs.pin_action == RESTORE_ACTION:
        return Finish(Outcome.ROLLED_BACK, f"rolled back to v{pin.version}")
    return Finish(Outcome.PROMOTED, f"v{pin.version} serves 100% of {obs.environment}")


def _canary_step(obs: ReleaseObservation, policy: RolloutPolicy, now: float, step: int) -> Action:
    """``canaryTrafficPercent: step``: wait for the split, then analyse it every interval."""
    target = obs.target
    if not obs.synced:
        return unsynced_or_abort(obs, policy, now, "progressing")
    if target.failure and target.latest_created != target.latest_ready:
        return StartRollback(f"canary revision {target.latest_created} failed: {target.failure}")
    leftover = f"VirtualService/{mirror_name(obs.inference_service)}"
    if leftover in target.requires_pruning:
        # The shadow phase's mirror left Git with the first step, but an Application that does
        # not prune keeps it live, routing every request to the primary: the canary would be
        # judged on Locust alone and promoted while clients stay on the old revision.
        why = (
            f"{leftover} left Git but is still live and routes every request to the primary; "
            "sync the environment's Argo CD Application with prune"
        )
        if deadline_passed(obs, policy, now):
            return StartRollback(why, verdict="aborted")
        return Wait(why, "progressing")
    latest = next((t for t in target.traffic if t.latest), None)
    serving = (
        target.latest_created is not None
        and target.latest_ready == target.latest_created
        and latest is not None
        and latest.revision == target.latest_created
        and latest.percent == step
    )
    if not serving:
        return wait_or_abort(
            obs,
            policy,
            now,
            late=f"canary revision {target.latest_created} was not serving {step}%",
            waiting=f"canary revision {target.latest_created} is not serving {step}% yet",
            phase="progressing",
        )
    record = obs.analysis
    if record is None or record.commit != obs.pin_commit:
        record = AnalysisRecord(commit=obs.pin_commit, step=step)
    start = record.last_at if record.last_at is not None else obs.pin_changed_at
    due = start + policy.interval_seconds
    if now < due:
        why = f"canary {step}%: next analysis in {due - now:.0f} s"
        if policy.watch.enabled:
            period = policy.watch.period_seconds
            return Watch(why, "analysing", due - now, step, obs.pin_changed_at, period)
        return Wait(why, "analysing", due - now)
    return Analyze(step=step, look=record.looks + 1, record=record)


def _provenance_failed(obs: ReleaseObservation) -> Action:
    """The artifact is no longer what was signed: roll back (the rollback quarantines it), or,
    with nothing to roll back to, end the rollout failed."""
    pin = obs.pin
    assert obs.provenance_failure is not None
    if pin.previous_version is not None:
        return StartRollback(obs.provenance_failure)
    return Finish(
        Outcome.FAILED,
        f"{obs.provenance_failure}; no previous version to roll back to: pin one by hand",
    )


def _rolling_back(obs: ReleaseObservation) -> Action:
    """``canaryTrafficPercent: 0``: quarantine a failed version (or record an aborted rollout),
    wait for the traffic to move, restore the pin."""
    pin, target = obs.pin, obs.target
    assert pin.version is not None
    reason = obs.rollback_reason or "canaryTrafficPercent set to 0 in Git"
    aborted = obs.rollback_verdict == "aborted"
    if aborted and obs.aborted_commit != obs.pin_commit:
        return Abort(pin.version, reason)
    if not aborted and obs.quarantined is None:
        return Quarantine(pin.version, reason)
    if pin.previous_version is None:
        return Finish(
            Outcome.FAILED,
            f"v{pin.version} was rolled back but its pin names no previous version; "
            "pin the version to serve by hand",
        )
    if not obs.synced:
        return Wait(f"waiting for {obs.environment} to sync the rollback", "rolling_back")
    if target.percent_of(target.latest_created) > 0 or not target.traffic:
        return Wait("traffic is moving back to the previous revision", "rolling_back")
    return RestorePrevious(
        pin.version, pin.previous_version, reason, "aborted" if aborted else "failed"
    )


def _finishing_restore(obs: ReleaseObservation) -> Action:
    """The previous version's spec is back at weight 0: let its new revision become ready."""
    pin, target = obs.pin, obs.target
    assert pin.version is not None
    assert obs.restored_from is not None
    if not obs.synced:
        return Wait(f"waiting for {obs.environment} to sync the restore", "rolling_back")
    if target.failure and target.latest_created != target.latest_ready:
        return Finish(
            Outcome.FAILED,
            f"the restored v{pin.version} failed to load ({target.failure}); the previous "
            "rollout keeps serving, fix the pin by hand",
        )
    if target.latest_created is None or target.latest_ready != target.latest_created:
        return Wait(f"restored v{pin.version} is loading", "rolling_back")
    return FinishRestore(pin.version, obs.restored_from)
