"""What a rollout's evidence leads to: the pure rules that turn an analysis, a shadow
judgement, a smoke or a watch into the next action (advance, hold, roll back or abort), as
:mod:`controller.rollout.decide` lays them out. A graph canary's analyses end by the same
rules (:func:`conclude_look`, :mod:`controller.rollout.graph_decide`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from controller.analysis_types import GateResult, Verdict
from controller.gates.sequential_watch import GATE as WATCH_GATE
from controller.rollout.actions import (
    Action,
    Analyze,
    AnalyzeShadow,
    EndShadow,
    EndSmoke,
    Hold,
    Promote,
    SetWeight,
    Smoke,
    StartRollback,
    Watch,
)
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy, ShadowPhase, next_step
from controller.rollout.record import AnalysisRecord, tally
from controller.shadow.judge import ShadowJudgement, shadow_report_markdown

__all__ = [
    "AnalysisLimits",
    "conclude",
    "conclude_look",
    "conclude_shadow",
    "conclude_smoke",
    "conclude_watch",
    "failing_summary",
]


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
    following = next_step(policy.steps, analysis.step)
    return conclude_look(analysis, results, policy, following=following, now=now)


class AnalysisLimits(Protocol):
    """How many failed, tool-error and inconclusive analyses a policy tolerates."""

    @property
    def failure_limit(self) -> int: ...

    @property
    def error_limit(self) -> int: ...

    @property
    def inconclusive_limit(self) -> int: ...


def conclude_look(
    analysis: Analyze,
    results: Sequence[GateResult],
    limits: AnalysisLimits,
    *,
    following: int,
    now: float,
) -> StartRollback | Promote | SetWeight | Hold:
    """The rules every canary analysis ends by, a model's or a graph's: failing evidence rolls
    back after ``failure_limit`` analyses (verdict ``failed``); a broken tool after
    ``error_limit`` in a row, and missing evidence after ``inconclusive_limit`` in a row, roll
    back as ``aborted``; only an analysis where every gate passed moves on, to ``following``
    (100: the promotion); anything else holds the step and counts."""
    record = tally(analysis.record, results, now)
    verdicts = [r.verdict for r in results]
    if Verdict.FAIL in verdicts and record.failures >= limits.failure_limit:
        return StartRollback(failing_summary(results), tuple(results))
    if Verdict.FAIL not in verdicts and record.errors >= limits.error_limit:
        return StartRollback(
            f"a gate could not run in {record.errors} analyses in a row "
            f"({failing_summary(results)})",
            tuple(results),
            verdict="aborted",
        )
    if record.inconclusive >= limits.inconclusive_limit:
        why = failing_summary(results) if results else "no gate ran"
        return StartRollback(
            f"no answer from {record.inconclusive} analyses in a row ({why})",
            tuple(results),
            verdict="aborted",
        )
    if results and all(v is Verdict.PASS for v in verdicts):
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
    details = judgement.details
    record = tally(analysis.record, results, now)
    if judgement.verdict is Verdict.FAIL and record.failures >= policy.failure_limit:
        return StartRollback(failing_summary(results), results, details=details)
    if judgement.verdict is Verdict.ERROR and record.errors >= policy.error_limit:
        return StartRollback(
            f"the shadow judge could not run in {record.errors} judgements in a row "
            f"({judgement.reason})",
            results,
            verdict="aborted",
            details=details,
        )
    if judgement.verdict is Verdict.PASS:
        report = shadow_report_markdown(
            judgement,
            model=obs.model,
            champion=f"v{obs.pin.previous_version}" if obs.pin.previous_version else "champion",
            challenger=f"v{obs.pin.version}",
        )
        return EndShadow(
            policy.steps[0],
            results,
            report,
            details,
            reason=judgement.reason,
            samples=judgement.samples,
            labelled=judgement.labelled,
        )
    if now - obs.pin_changed_at >= phase.max_duration_seconds:
        return StartRollback(
            f"no shadow verdict within {phase.max_duration_seconds:g} s ({judgement.reason})",
            results,
            verdict="aborted",
            details=details,
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
