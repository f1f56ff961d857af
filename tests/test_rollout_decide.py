"""The rollout decision, over plain values: steps, gates, limits, deadlines and rollback."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.rollout_values import (
    HEAD,
    NEW,
    OLD,
    POLICY,
    canary_target,
    full_target,
    observation,
    passing,
)

from controller.analysis_types import GateResult, Verdict
from controller.errors import InputError
from controller.manifests.manifest import PinnedRelease
from controller.rollout.actions import (
    Abort,
    Analyze,
    Finish,
    FinishRestore,
    Hold,
    Outcome,
    Promote,
    Quarantine,
    RestorePrevious,
    SetChampion,
    SetWeight,
    StartRollback,
    Wait,
)
from controller.rollout.decide import conclude, decide, manual_rollback
from controller.rollout.record import AnalysisRecord
from controller.target_types import TrafficEntry


def test_nothing_pinned_is_idle() -> None:
    """A pin without a version has nothing to roll out."""
    obs = replace(
        observation(None, full_target()), pin=PinnedRelease("fd", None, None, None, None, None)
    )
    assert decide(obs, POLICY, 2000.0) == Finish(
        Outcome.IDLE, "no version of fd is pinned in staging"
    )


def test_unsynced_commit_waits() -> None:
    """Until the environment syncs the tip, the rollout waits."""
    obs = observation(10, replace(canary_target(10), synced_revision="b" * 40))
    assert isinstance(decide(obs, POLICY, 1010.0), Wait)


def test_unsynced_past_the_deadline_rolls_back() -> None:
    """A commit the environment never syncs rolls back after the progress deadline."""
    obs = observation(10, replace(canary_target(10), synced_revision="b" * 40))
    action = decide(obs, POLICY, 1000.0 + 601)
    assert isinstance(action, StartRollback)
    assert "did not sync" in action.reason
    assert action.verdict == "aborted"  # the cluster never synced: nothing judged the model


def test_canary_waits_for_its_first_interval() -> None:
    """The first analysis of a step comes one interval after the step's commit."""
    action = decide(observation(10, canary_target(10)), POLICY, 1010.0)
    assert isinstance(action, Wait)
    assert action.phase == "analysing"


def test_canary_is_analysed_once_the_interval_passed() -> None:
    """After the interval the step is analysed, as look 1."""
    action = decide(observation(10, canary_target(10)), POLICY, 1031.0)
    assert isinstance(action, Analyze)
    assert action.step == 10
    assert action.look == 1


def test_failed_canary_revision_rolls_back_at_once() -> None:
    """A canary revision that cannot load rolls back without waiting for the deadline."""
    target = canary_target(10, ready=False, failure="ModelLoadFailed")
    action = decide(observation(10, target), POLICY, 1001.0)
    assert isinstance(action, StartRollback)
    assert "failed" in action.reason


def test_all_gates_passing_moves_to_the_next_step() -> None:
    """A passing analysis at 10% commits 50%, the next step."""
    obs = observation(10, canary_target(10))
    analysis = decide(obs, POLICY, 1031.0)
    assert isinstance(analysis, Analyze)
    action = conclude(obs, POLICY, analysis, passing(), 1040.0)
    assert isinstance(action, SetWeight)
    assert (action.from_percent, action.to_percent) == (10, 50)


def test_passing_the_last_step_before_100_promotes() -> None:
    """A passing analysis at 50% (the last step below 100) promotes."""
    obs = observation(50, canary_target(50))
    analysis = decide(obs, POLICY, 1031.0)
    assert isinstance(analysis, Analyze)
    assert isinstance(conclude(obs, POLICY, analysis, passing(), 1040.0), Promote)


def test_one_failing_gate_rolls_back() -> None:
    """With failureLimit 1, a failing gate rolls back and says why."""
    obs = observation(10, canary_target(10))
    analysis = decide(obs, POLICY, 1031.0)
    assert isinstance(analysis, Analyze)
    results = [*passing(), GateResult("prometheus/success", Verdict.FAIL, "success 80% (min 99%)")]
    action = conclude(obs, POLICY, analysis, results, 1040.0)
    assert isinstance(action, StartRollback)
    assert "success 80%" in action.reason


def test_inconclusive_holds_then_rolls_back_at_the_limit() -> None:
    """No data holds the step; the third inconclusive analysis in a row rolls back."""
    obs = observation(10, canary_target(10))
    no_data = [GateResult("prometheus/success", Verdict.INCONCLUSIVE, "no data")]
    record = AnalysisRecord(commit=HEAD, step=10)
    for look in (1, 2):
        action = conclude(obs, POLICY, Analyze(10, look, record), no_data, 1000.0 + 40 * look)
        assert isinstance(action, Hold)
        record = action.record
    action = conclude(obs, POLICY, Analyze(10, 3, record), no_data, 1120.0)
    assert isinstance(action, StartRollback)
    assert "no answer from 3 analyses" in action.reason
    assert action.verdict == "aborted"


def test_a_broken_tool_holds_then_aborts_without_condemning_the_model() -> None:
    """A Locust that cannot start is an error: it holds, and after errorLimit analyses in a
    row the rollout is aborted, not failed, so the version is never quarantined."""
    policy = POLICY.model_copy(update={"error_limit": 2})
    obs = observation(10, canary_target(10))
    broken = [
        GateResult("locust", Verdict.ERROR, "locust: could not start"),
        GateResult("judge", Verdict.PASS, "ok"),
    ]
    first = conclude(obs, policy, Analyze(10, 1, AnalysisRecord(HEAD, 10)), broken, 1040.0)
    assert isinstance(first, Hold)
    assert (first.record.errors, first.record.failures, first.record.inconclusive) == (1, 0, 0)
    second = conclude(obs, policy, Analyze(10, 2, first.record), broken, 1080.0)
    assert isinstance(second, StartRollback)
    assert second.verdict == "aborted"
    assert second.reason.startswith("a gate could not run in 2 analyses in a row (locust:")


def test_evidence_against_the_model_outweighs_a_broken_tool() -> None:
    """A failing check with data behind it fails the canary even when another gate errored."""
    obs = observation(10, canary_target(10))
    results = [
        GateResult("locust", Verdict.ERROR, "locust: crashed"),
        GateResult("prometheus/success", Verdict.FAIL, "success 80% (min 99%)"),
    ]
    action = conclude(obs, POLICY, Analyze(10, 1, AnalysisRecord(HEAD, 10)), results, 1040.0)
    assert isinstance(action, StartRollback)
    assert action.verdict == "failed"
    assert action.reason == "success 80% (min 99%); locust: crashed"


def test_an_answer_ends_the_error_streak() -> None:
    """Errors count in a row: an analysis that answers (inconclusive or pass) resets them."""
    record = AnalysisRecord(HEAD, 10, looks=2, errors=2)
    obs = observation(10, canary_target(10))
    no_data = [GateResult("judge", Verdict.INCONCLUSIVE, "judge: too few samples")]
    action = conclude(obs, POLICY, Analyze(10, 3, record), no_data, 1100.0)
    assert isinstance(action, Hold)
    assert (action.record.errors, action.record.inconclusive) == (0, 1)


def test_record_keeps_the_error_streak_across_a_restart() -> None:
    """The error count survives the registry tag's JSON, as the other counts do."""
    record = AnalysisRecord(HEAD, 10, looks=3, failures=0, inconclusive=1, errors=2)
    assert AnalysisRecord.from_json(record.to_json()) == record


def test_aborted_rollback_records_the_abort_instead_of_quarantining() -> None:
    """A weight-0 pin marked aborted tags the rollout as aborted (keyed by the rollback
    commit), never quarantines, and then restores the previous version as a rollback does."""
    target = replace(
        canary_target(0),
        traffic=(TrafficEntry(NEW, 0, True, "latest"), TrafficEntry(OLD, 100, False, "prev")),
    )
    obs = replace(
        observation(0, target), rollback_verdict="aborted", rollback_reason="Prometheus down"
    )
    assert decide(obs, POLICY, 1001.0) == Abort(2, "Prometheus down")
    recorded = replace(obs, aborted_commit=HEAD)
    assert decide(recorded, POLICY, 1001.0) == RestorePrevious(2, 1, "Prometheus down", "aborted")
    # An abort recorded for an earlier rollback of the same version does not count.
    stale = replace(obs, aborted_commit="e" * 40)
    assert isinstance(decide(stale, POLICY, 1001.0), Abort)


def test_canary_not_serving_by_the_deadline_is_aborted() -> None:
    """A canary the cluster never serves (capacity, a stuck rollout) is aborted, not failed."""
    obs = observation(10, canary_target(10, ready=False))
    action = decide(obs, POLICY, 1000.0 + 601)
    assert isinstance(action, StartRollback)
    assert action.verdict == "aborted"


def test_canary_that_fails_to_load_is_failed() -> None:
    """A revision whose model cannot load is judged: the rollback quarantines it."""
    target = canary_target(10, ready=False, failure="boom")
    action = decide(observation(10, target), POLICY, 1001.0)
    assert isinstance(action, StartRollback)
    assert action.verdict == "failed"


def test_held_step_is_analysed_again_after_an_interval() -> None:
    """After a hold the next analysis waits one interval from the last."""
    record = AnalysisRecord(commit=HEAD, step=10, looks=1, inconclusive=1, last_at=1040.0)
    obs = observation(10, canary_target(10), analysis=record)
    assert isinstance(decide(obs, POLICY, 1050.0), Wait)
    action = decide(obs, POLICY, 1071.0)
    assert isinstance(action, Analyze)
    assert action.look == 2


def test_record_of_another_step_is_ignored() -> None:
    """A record left by an earlier step's commit does not count at this step."""
    record = AnalysisRecord(commit="a" * 40, step=10, looks=3, inconclusive=2, last_at=1040.0)
    action = decide(observation(50, canary_target(50), analysis=record), POLICY, 1031.0)
    assert isinstance(action, Analyze)
    assert action.look == 1


def test_canary_zero_quarantines_first() -> None:
    """A rollback commit in Git leads to the quarantine tag before anything else."""
    target = replace(canary_target(0), traffic=(TrafficEntry(OLD, 100, False, "prev"),))
    action = decide(observation(0, target), POLICY, 1001.0)
    assert isinstance(action, Quarantine)
    assert action.version == 2


def test_rollback_restores_the_previous_pin_once_traffic_is_back() -> None:
    """Once no traffic reaches the bad revision, the previous version's pin is restored."""
    target = replace(
        canary_target(0),
        traffic=(TrafficEntry(NEW, 0, True, "latest"), TrafficEntry(OLD, 100, False, "prev")),
    )
    action = decide(observation(0, target, quarantined="gates failed"), POLICY, 1001.0)
    assert action == RestorePrevious(2, 1, "canaryTrafficPercent set to 0 in Git")


def test_rollback_waits_while_the_bad_revision_takes_traffic() -> None:
    """Before the target moved the traffic, the restore waits."""
    action = decide(observation(0, canary_target(10), quarantined="x"), POLICY, 1001.0)
    assert isinstance(action, Wait)
    assert action.phase == "rolling_back"


def test_promoted_version_becomes_champion() -> None:
    """A version serving 100% without a canary field gets the champion alias."""
    action = decide(observation(None, full_target()), POLICY, 1001.0)
    assert action == SetChampion(2, 1)


def test_champion_serving_everything_is_finished() -> None:
    """Nothing is left to do once the champion serves 100%."""
    action = decide(observation(None, full_target(), champion=2), POLICY, 1001.0)
    assert isinstance(action, Finish)
    assert action.outcome is Outcome.PROMOTED


def test_restored_pin_reports_a_rollback() -> None:
    """After the restore commit, the rollout ends as rolled back."""
    obs = observation(
        None, full_target(OLD), version=1, previous=None, champion=1, action="restore"
    )
    action = decide(obs, POLICY, 1001.0)
    assert isinstance(action, Finish)
    assert action.outcome is Outcome.ROLLED_BACK


def test_quarantined_version_in_a_canary_rolls_back() -> None:
    """A merged proposal of a quarantined version is rolled back, not analysed."""
    action = decide(observation(10, canary_target(10), quarantined="failed before"), POLICY, 1031.0)
    assert isinstance(action, StartRollback)
    assert "quarantined" in action.reason


verdicts = st.sampled_from(list(Verdict))
results_strategy = st.lists(
    st.builds(
        GateResult, st.sampled_from(["locust", "judge", "prometheus/x"]), verdicts, st.just("s")
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    step=st.sampled_from([10, 50]),
    results=results_strategy,
    failures=st.integers(0, 3),
    inconclusive=st.integers(0, 4),
    failure_limit=st.integers(1, 3),
    inconclusive_limit=st.integers(1, 5),
)
def test_conclude_never_advances_without_every_gate_passing(
    step: int,
    results: list[GateResult],
    failures: int,
    inconclusive: int,
    failure_limit: int,
    inconclusive_limit: int,
) -> None:
    """Property: a step or promotion needs a non-empty all-pass analysis and never skips a step."""
    policy = POLICY.model_copy(
        update={"failure_limit": failure_limit, "inconclusive_limit": inconclusive_limit}
    )
    obs = observation(step, canary_target(step))
    record = AnalysisRecord(
        commit=HEAD, step=step, looks=2, failures=failures, inconclusive=inconclusive
    )
    action = conclude(obs, policy, Analyze(step, 3, record), results, 2000.0)
    again = conclude(obs, policy, Analyze(step, 3, record), results, 2000.0)
    assert action == again
    if isinstance(action, (SetWeight, Promote)):
        assert results
        assert all(r.verdict is Verdict.PASS for r in results)
    if isinstance(action, SetWeight):
        assert action.to_percent == {10: 50}[step]
    if isinstance(action, Promote):
        assert step == 50


@settings(max_examples=300, deadline=None)
@given(
    canary=st.one_of(st.none(), st.sampled_from([0, 10, 50, 100])),
    synced=st.booleans(),
    ready=st.booleans(),
    now=st.floats(1000.0, 3000.0),
    champion=st.sampled_from([None, 1, 2]),
)
def test_decide_never_promotes_or_steps_without_an_analysis(
    canary: int | None, synced: bool, ready: bool, now: float, champion: int | None
) -> None:
    """Property: decide alone never commits a step or a promotion; only conclude does."""
    target = canary_target(canary or 0, ready=ready)
    if not synced:
        target = replace(target, synced_revision="d" * 40)
    action = decide(observation(canary, target, champion=champion), POLICY, now)
    assert not isinstance(action, (SetWeight, Promote))
    assert action == decide(observation(canary, target, champion=champion), POLICY, now)


def test_restored_pin_waits_for_its_revision_then_drops_the_weight() -> None:
    """After the restore commit, the weight stays 0 until the restored revision is ready."""
    restored = "fd-predictor-00003"
    loading = replace(
        canary_target(0),
        latest_created=restored,
        latest_ready=NEW,
        traffic=(TrafficEntry(NEW, 0, True, "latest"), TrafficEntry(OLD, 100, False, "prev")),
    )
    obs = replace(observation(0, loading, version=1, previous=None), restored_from=2)
    waiting = decide(obs, POLICY, 1001.0)
    assert isinstance(waiting, Wait)
    ready = replace(loading, latest_ready=restored)
    action = decide(replace(obs, target=ready), POLICY, 1002.0)
    assert action == FinishRestore(1, 2)


def test_manual_rollback_aborts_a_canary_and_undoes_a_promotion() -> None:
    """`sluice rollback` sends a canary back as a failed gate would; on a promoted version
    whose pin still names the one it replaced, weight 0 (KServe's own rollback); on a restored
    pin, which names no previous version, it pins the champion it replaced again."""
    canary = observation(10, canary_target(10))
    assert manual_rollback(canary, "bad scores", None) == StartRollback("manual: bad scores")
    promoted = observation(None, full_target(), previous=1)
    assert manual_rollback(promoted, "bad scores", 1) == StartRollback("manual: bad scores")
    restored = observation(None, full_target(), previous=None, version=2)
    assert manual_rollback(restored, "bad scores", 1) == RestorePrevious(2, 1, "manual: bad scores")
    rolling = observation(0, canary_target(0))
    assert isinstance(manual_rollback(rolling, "x", 1), Wait)


def test_manual_rollback_of_the_first_version_names_the_fix() -> None:
    """Nothing was promoted before the version: one line saying to propose the one to serve."""
    first = observation(None, full_target(), previous=None, champion=2)
    with pytest.raises(InputError, match="propose the version to serve instead"):
        manual_rollback(first, "x", None)
