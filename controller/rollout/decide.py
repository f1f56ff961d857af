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
- between analyses of a step that takes client traffic, the watch (an SPRT on the canary's
  error rate since the step's commit) rolls back and quarantines as soon as its evidence is
  conclusive; it never advances a step, and a watch that could not read the counters changes
  nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError
from controller.gates.sequential_watch import GATE as WATCH_GATE
from controller.gates.shadow_judge import ShadowJudgement, shadow_report_markdown
from controller.rollout.actions import (
    Abort,
    Action,
    Analyze,
    AnalyzeShadow,
    EndShadow,
    EndSmoke,
    Finish,
    FinishRestore,
    Hold,
    Outcome,
    Promote,
    Quarantine,
    RestorePrevious,
    SetChampion,
    SetWeight,
    Smoke,
    StartMirror,
    StartRollback,
    StopMirror,
    Wait,
    Watch,
)
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy, ShadowPhase, next_step
from controller.rollout.record import AnalysisRecord, tally
from controller.shadow_mirror import ShadowMirror, mirror_name
from controller.target_types import TargetObservation

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
    if obs.shadow_mirror is not None and obs.shadow_percent is None:
        return StopMirror(f"v{pin.version} is not in a shadow phase")
    if canary == 0 and obs.shadow_percent is not None:
        if obs.quarantined is not None:
            return StartRollback(f"v{pin.version} is quarantined ({obs.quarantined})")
        return _shadowing(obs, policy, now)
    if canary == 0 and obs.smoke:
        if obs.quarantined is not None:
            return StartRollback(f"v{pin.version} is quarantined ({obs.quarantined})")
        return _smoking(obs, policy, now)
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


def conclude(
    obs: ReleaseObservation,
    policy: RolloutPolicy,
    analysis: Analyze,
    results: Sequence[GateResult],
    now: float,
) -> Action:
    """What an analysis at ``analysis.step`` with ``results`` leads to."""
    watched = next((r for r in results if r.gate == WATCH_GATE), None)
    if watched is not None and watched.verdict is Verdict.FAIL:
        # The watch stopped the analysis: conclusive on its own, as between analyses.
        return StartRollback(watched.summary, tuple(results))
    record = tally(analysis.record, results, now)
    verdicts = [r.verdict for r in results]
    if Verdict.FAIL in verdicts and record.failures >= policy.failure_limit:
        return StartRollback(failing_summary(results), tuple(results))
    if Verdict.FAIL not in verdicts and record.errors >= policy.error_limit:
        return StartRollback(
            f"a gate could not run in {record.errors} analyses in a row "
            f"({failing_summary(results)})",
            tuple(results),
            verdict="aborted",
        )
    if record.inconclusive >= policy.inconclusive_limit:
        why = failing_summary(results) if results else "no gate ran"
        return StartRollback(
            f"no answer from {record.inconclusive} analyses in a row ({why})",
            tuple(results),
            verdict="aborted",
        )
    if results and all(v is Verdict.PASS for v in verdicts):
        following = next_step(policy.steps, analysis.step)
        if following >= 100:
            return Promote(analysis.step, tuple(results))
        return SetWeight(analysis.step, following, tuple(results))
    return Hold(record, failing_summary(results) if results else "no gate ran")


def conclude_shadow(
    obs: ReleaseObservation,
    policy: RolloutPolicy,
    analysis: AnalyzeShadow,
    judgement: ShadowJudgement,
    now: float,
) -> Action:
    """What a shadow judgement leads to: the first canary step, a rollback, or more waiting."""
    phase = policy.shadow or ShadowPhase()
    results = judgement.results
    record = tally(analysis.record, results, now)
    if judgement.verdict is Verdict.FAIL and record.failures >= policy.failure_limit:
        return StartRollback(failing_summary(results), results)
    if judgement.verdict is Verdict.ERROR and record.errors >= policy.error_limit:
        return StartRollback(
            f"the shadow judge could not run in {record.errors} judgements in a row "
            f"({judgement.reason})",
            results,
            verdict="aborted",
        )
    if judgement.verdict is Verdict.PASS:
        report = shadow_report_markdown(
            judgement,
            model=obs.model,
            champion=f"v{obs.pin.previous_version}" if obs.pin.previous_version else "champion",
            challenger=f"v{obs.pin.version}",
        )
        return EndShadow(policy.steps[0], results, report)
    if now - obs.pin_changed_at >= phase.max_duration_seconds:
        return StartRollback(
            f"no shadow verdict within {phase.max_duration_seconds:g} s ({judgement.reason})",
            results,
            verdict="aborted",
        )
    return Hold(record, f"shadow {judgement.reason}", phase="shadowing")


def conclude_smoke(
    obs: ReleaseObservation,
    policy: RolloutPolicy,
    smoke: Smoke,
    result: GateResult,
    now: float,
) -> Action:
    """What the pre-traffic smoke leads to: the first step (or, at the start of a shadow phase,
    the shadow judge), a rollback that quarantines (it failed: evidence), or, when it could
    not run or too few requests were answered (nothing learnt about the model), another try
    an ``interval`` later, as an analysis holds: past ``errorLimit`` tries in a row whose tool
    failed, or ``inconclusiveLimit`` without an answer, the rollout is aborted."""
    if result.verdict is Verdict.FAIL:
        return StartRollback(result.summary, (result,))
    record = smoke.record or AnalysisRecord(commit=obs.pin_commit, step=0)
    if result.verdict is Verdict.PASS:
        if smoke.shadow:
            return Hold(replace(record, smoke=result.summary), result.summary, "shadowing")
        return EndSmoke(smoke.to_percent, (result,))
    record = tally(record, (result,), now)
    if result.verdict is Verdict.ERROR and record.errors >= policy.error_limit:
        return StartRollback(
            f"the smoke could not run in {record.errors} tries in a row ({result.summary})",
            (result,),
            verdict="aborted",
        )
    if result.verdict is Verdict.INCONCLUSIVE and record.inconclusive >= policy.inconclusive_limit:
        return StartRollback(
            f"the smoke had no answer in {record.inconclusive} tries in a row ({result.summary})",
            (result,),
            verdict="aborted",
        )
    phase = "shadowing" if smoke.shadow else "smoke_testing"
    return Hold(
        record, f"{result.summary}; the smoke runs again in {policy.interval_seconds:g} s", phase
    )


def conclude_watch(watch: Watch, result: GateResult | None) -> Action:
    """A conclusive watch rolls back (failed: the canary's own requests are evidence); anything
    else, a query that errored included, is the wait the watch was."""
    if result is None:
        return watch
    if result.verdict is Verdict.FAIL:
        return StartRollback(result.summary, (result,))
    return replace(watch, reason=f"{watch.reason}; {result.summary}")


def failing_summary(results: Sequence[GateResult]) -> str:
    """The summaries of the gates that did not pass, failures first, in one line."""
    order = {Verdict.FAIL: 0, Verdict.ERROR: 1, Verdict.INCONCLUSIVE: 2, Verdict.PASS: 3}
    bad = sorted(
        (r for r in results if r.verdict is not Verdict.PASS), key=lambda r: order[r.verdict]
    )
    return "; ".join(r.summary for r in bad) or "all gates passed"


def _deadline_passed(
    obs: ReleaseObservation, policy: RolloutPolicy, now: float, since: float | None = None
) -> bool:
    start = obs.pin_changed_at if since is None else since
    return now - start > policy.progress_deadline_seconds


def _unsynced(
    obs: ReleaseObservation,
    policy: RolloutPolicy,
    now: float,
    phase: str,
    since: float | None = None,
) -> Action:
    """The branch tip is not applied yet: wait, or roll back once the deadline passed (counted
    from ``since``, by default the pin's last change)."""
    if _deadline_passed(obs, policy, now, since):
        return StartRollback(
            f"{obs.environment} did not sync {obs.head[:12]} within "
            f"{policy.progress_deadline_seconds:g} s",
            verdict="aborted",
        )
    return Wait(f"waiting for {obs.environment} to sync {obs.head[:12]}", phase)


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
        if _deadline_passed(obs, policy, now) and pin.previous_version is not None:
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
        return _unsynced(obs, policy, now, "progressing")
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
        if _deadline_passed(obs, policy, now):
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
        if _deadline_passed(obs, policy, now):
            return StartRollback(
                f"canary revision {target.latest_created} was not serving {step}% within "
                f"{policy.progress_deadline_seconds:g} s",
                verdict="aborted",
            )
        return Wait(
            f"canary revision {target.latest_created} is not serving {step}% yet", "progressing"
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


def _shadowing(obs: ReleaseObservation, policy: RolloutPolicy, now: float) -> Action:
    """Weight 0 in the shadow phase: wait for the challenger's revision, then judge it."""
    target = obs.target
    if not obs.synced:
        # The mirror's own commit, made once the challenger was ready, waits for its own sync.
        since = max(obs.pin_changed_at, obs.shadow_mirror_changed_at or 0.0)
        return _unsynced(obs, policy, now, "shadowing", since)
    challenger = target.latest_created
    if target.failure and challenger != target.latest_ready:
        return StartRollback(f"challenger revision {challenger} failed: {target.failure}")
    if challenger is None or target.latest_ready != challenger:
        if _deadline_passed(obs, policy, now):
            return StartRollback(
                f"challenger revision {challenger} was not ready within "
                f"{policy.progress_deadline_seconds:g} s",
                verdict="aborted",
            )
        return Wait(f"challenger revision {challenger} is loading", "shadowing")
    record = obs.analysis
    if record is None or record.commit != obs.pin_commit:
        record = AnalysisRecord(commit=obs.pin_commit, step=0)
    if policy.smoke.enabled and record.smoke is None:
        # The smoke first: a challenger that errors is stopped before anything is mirrored
        # to it or judged. As in a smoke phase, it waits for the challenger's tag route: a
        # revision KServe reports ready before its route has a URL would otherwise get a smoke
        # that cannot run. A smoke that could not run is tried again an interval later.
        if not _smoke_route(target, challenger):
            if _deadline_passed(obs, policy, now):
                return StartRollback(
                    f"challenger revision {challenger} was not ready on its tag route within "
                    f"{policy.progress_deadline_seconds:g} s",
                    verdict="aborted",
                )
            return Wait(f"challenger revision {challenger} has no tag route yet", "shadowing")
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


def _smoking(obs: ReleaseObservation, policy: RolloutPolicy, now: float) -> Action:
    """Weight 0 in the smoke phase: wait for the new revision on its tag route, then smoke it."""
    target = obs.target
    if not obs.synced:
        return _unsynced(obs, policy, now, "smoke_testing")
    revision = target.latest_created
    if target.failure and revision != target.latest_ready:
        return StartRollback(f"new revision {revision} failed: {target.failure}")
    if revision is None or target.latest_ready != revision or not _smoke_route(target, revision):
        if _deadline_passed(obs, policy, now):
            return StartRollback(
                f"new revision {revision} was not ready on its tag route within "
                f"{policy.progress_deadline_seconds:g} s",
                verdict="aborted",
            )
        return Wait(f"new revision {revision} is loading at 0%", "smoke_testing")
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
        if _deadline_passed(obs, policy, now):
            return StartRollback(
                f"challenger revision {challenger} was not at 0% beside a primary at 100% "
                f"within {policy.progress_deadline_seconds:g} s",
                verdict="aborted",
            )
        return Wait(f"waiting for {challenger} at 0% beside a primary at 100%", "shadowing")
    return StartMirror(primary, challenger, percent)


def _primary_beside(target: TargetObservation, challenger: str) -> str | None:
    """The revision whose requests a shadow phase copies, as
    :func:`~controller.shadow_phase.shadow_revisions` reads KServe's status: another revision
    takes 100 % while the challenger, the latest one, takes 0 %."""
    latest = next((t for t in target.traffic if t.latest and not t.percent), None)
    if latest is None or latest.revision != challenger:
        return None
    others = {t.revision for t in target.traffic if t.revision and t.revision != challenger}
    return next((r for r in sorted(others) if target.percent_of(r) == 100), None)


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
