"""The watch between analyses and the pre-traffic smoke, as decisions over plain values."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from support.rollout_values import HEAD, POLICY, canary_target, observation

from controller.analysis_types import GateResult, LoadReport, Verdict
from controller.gates.sequential_watch import WatchConfig, WatchCounts, watch_verdict
from controller.gates.smoke import SmokeConfig, evaluate_smoke
from controller.rollout.actions import (
    EndSmoke,
    Hold,
    Smoke,
    StartMirror,
    StartRollback,
    Wait,
    Watch,
)
from controller.rollout.decide import conclude_smoke, conclude_watch, decide, manual_rollback
from controller.rollout.observation import ReleaseObservation
from controller.rollout.policy import RolloutPolicy, ShadowPhase
from controller.rollout.record import AnalysisRecord
from controller.text.commit_message import ProposalMessage, render_proposal_message


def smoking(*, quarantined: str | None = None) -> ReleaseObservation:
    return replace(observation(0, canary_target(0), quarantined=quarantined), smoke=True)


# -- the watch ---------------------------------------------------------------------------------


def test_a_canary_taking_traffic_is_watched_until_its_analysis_is_due() -> None:
    action = decide(observation(10, canary_target(10), changed_at=1000.0), POLICY, 1003.0)
    assert isinstance(action, Watch)
    assert (action.step, action.since, action.period) == (10, 1000.0, 1.0)
    assert action.phase == "analysing"
    unwatched = POLICY.model_copy(update={"watch": WatchConfig(enabled=False)})
    assert type(decide(observation(10, canary_target(10)), unwatched, 1003.0)) is Wait


def test_a_conclusive_watch_rolls_back_as_a_failure() -> None:
    """Evidence from the canary's own requests: failed, so the version is quarantined."""
    watch = Watch("canary 10%: next analysis in 5 s", "analysing", 5.0, 10, 1000.0, 1.0)
    result = watch_verdict(WatchCounts(14, 4, 130, 0), WatchConfig(errorMargin=0.02))
    action = conclude_watch(watch, result)
    assert isinstance(action, StartRollback)
    assert action.verdict == "failed"
    assert action.reason.startswith("watch: canary 4 errors in 14 requests since the step")
    assert action.results == (result,)


def test_a_watch_that_could_not_read_or_has_no_answer_only_waits() -> None:
    watch = Watch("canary 10%: next analysis in 5 s", "analysing", 5.0, 10, 1000.0, 1.0)
    assert conclude_watch(watch, None) == watch
    pending = conclude_watch(watch, watch_verdict(WatchCounts(4, 1), WatchConfig()))
    assert isinstance(pending, Watch)
    assert "fewer than the 5 needed" in pending.reason
    assert pending.retry_after == 5.0


@given(
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)
def test_the_watch_never_moves_a_step_forward(n: int, e: int, pn: int, pe: int) -> None:
    """Whatever it reads, the watch rolls back or waits: only analyses advance or promote."""
    watch = Watch("w", "analysing", 5.0, 10, 1000.0, 1.0)
    result = watch_verdict(WatchCounts(n, e, pn, pe), WatchConfig())
    action = conclude_watch(watch, result)
    assert isinstance(action, StartRollback | Watch)
    if e == 0:
        assert isinstance(action, Watch)


# -- the smoke ---------------------------------------------------------------------------------


def test_the_smoke_is_on_by_default_and_turned_off_per_environment() -> None:
    """Defaults are the product: an environment that says nothing about the smoke gets it;
    ``rollout.smoke.enabled: false`` turns it off."""
    assert RolloutPolicy().smoke.enabled
    assert RolloutPolicy.model_validate({"steps": [10, 100]}).smoke == SmokeConfig()
    assert SmokeConfig().enabled
    off = RolloutPolicy.model_validate({"smoke": {"enabled": False}})
    assert not off.smoke.enabled
    assert decide(smoking(), off, 1005.0) == Smoke(10)  # a pin already smoking still is


def test_a_pin_in_its_smoke_phase_is_smoked_once_the_revision_is_ready_at_zero() -> None:
    action = decide(smoking(), POLICY, 1005.0)
    assert action == Smoke(10)
    loading = replace(smoking(), target=canary_target(0, ready=False))
    waiting = decide(loading, POLICY, 1005.0)
    assert isinstance(waiting, Wait)
    assert waiting.phase == "smoke_testing"
    late = decide(loading, POLICY, 1000.0 + 601)
    assert isinstance(late, StartRollback)
    assert late.verdict == "aborted"
    broken = replace(smoking(), target=canary_target(0, ready=False, failure="no model"))
    assert decide(broken, POLICY, 1005.0) == StartRollback(
        "new revision fd-predictor-00002 failed: no model"
    )


def test_the_smoke_leads_to_the_first_step_a_quarantine_or_an_abort() -> None:
    smoke = Smoke(10)
    config = SmokeConfig()
    passed = evaluate_smoke(LoadReport(50, 0, 1.2, 5.0, 9.0, 12.0), config)
    failed = evaluate_smoke(LoadReport(50, 11, 1.2, 5.0, 9.0, 12.0), config)
    few = evaluate_smoke(LoadReport(20, 0, 60.0, 5.0, 9.0, 12.0), config)
    error = GateResult("smoke", Verdict.ERROR, "smoke: locust could not start")
    assert conclude_smoke(smoking(), POLICY, smoke, passed, 1010.0) == EndSmoke(10, (passed,))
    rollback = conclude_smoke(smoking(), POLICY, smoke, failed, 1010.0)
    assert isinstance(rollback, StartRollback)
    assert rollback.verdict == "failed"
    assert rollback.reason == (
        "smoke: 11 of 50 requests to the new revision failed (22.0%, max 0%) before any client "
        "request"
    )
    for result in (few, error):
        held = conclude_smoke(smoking(), POLICY, smoke, result, 1010.0)
        assert isinstance(held, Hold), held
        assert held.phase == "smoke_testing"
        assert held.reason.endswith("the smoke runs again in 30 s")


def test_a_smoke_that_could_not_run_is_tried_again_then_aborts_at_the_limit() -> None:
    """A broken tool never condemns a model, nor does one hiccup end a rollout: a smoke whose
    Locust did not start is tried again an interval later, as an analysis holds; only
    ``errorLimit`` such tries in a row abort it (no quarantine), and an answer resets them."""
    error = GateResult("smoke", Verdict.ERROR, "smoke: locust could not start")
    obs, now = smoking(), 1005.0
    for attempt in range(1, POLICY.error_limit + 1):
        action = decide(obs, POLICY, now)
        assert isinstance(action, Smoke), action
        concluded = conclude_smoke(obs, POLICY, action, error, now)
        if attempt < POLICY.error_limit:
            assert isinstance(concluded, Hold)
            assert concluded.record.errors == attempt
            obs = replace(obs, analysis=concluded.record)
            waiting = decide(obs, POLICY, now + 1)
            assert isinstance(waiting, Wait)
            assert waiting.reason == f"smoke: next try in {POLICY.interval_seconds - 1:.0f} s"
            assert waiting.phase == "smoke_testing"
            now += POLICY.interval_seconds
    assert isinstance(concluded, StartRollback)
    assert concluded.verdict == "aborted"
    assert concluded.reason == (
        f"the smoke could not run in {POLICY.error_limit} tries in a row "
        "(smoke: locust could not start)"
    )
    few = GateResult("smoke", Verdict.INCONCLUSIVE, "smoke: v2 logged no input example to send")
    for _ in range(POLICY.inconclusive_limit - 1):
        held = conclude_smoke(obs, POLICY, Smoke(10, obs.analysis), few, now)
        assert isinstance(held, Hold)
        assert held.record.errors == 0  # an answer of another kind ends the error streak
        obs = replace(obs, analysis=held.record)
    aborted = conclude_smoke(obs, POLICY, Smoke(10, obs.analysis), few, now)
    assert isinstance(aborted, StartRollback)
    assert aborted.reason.startswith(f"the smoke had no answer in {POLICY.inconclusive_limit}")


def test_a_quarantined_version_in_its_smoke_phase_rolls_back() -> None:
    action = decide(smoking(quarantined="bad"), POLICY, 1005.0)
    assert isinstance(action, StartRollback)


def test_a_shadow_phase_runs_the_smoke_first_and_then_judges() -> None:
    """With a shadow phase the smoke runs at its start, then the shadow judge as before."""
    policy = POLICY.model_copy(update={"shadow": ShadowPhase()})
    obs = replace(observation(0, canary_target(0)), shadow_percent=100.0)
    action = decide(obs, policy, 1040.0)
    assert isinstance(action, Smoke)
    assert action.record == AnalysisRecord(commit=HEAD, step=0)
    passed = GateResult("smoke", Verdict.PASS, "smoke: 0 of 50 requests failed")
    held = conclude_smoke(obs, policy, action, passed, 1041.0)
    assert isinstance(held, Hold)
    assert held.phase == "shadowing"
    assert held.record.smoke == "smoke: 0 of 50 requests failed"
    assert held.record.looks == 0  # the smoke is not a look of the shadow judge
    after = replace(obs, analysis=held.record)
    judged = decide(after, policy, 1040.0)
    assert isinstance(judged, StartMirror)  # a cluster's mirror, then the judge, as before
    assert AnalysisRecord.from_json(held.record.to_json()) == replace(held.record, results=())


def test_a_shadow_phase_smokes_only_once_the_challenger_has_its_tag_route() -> None:
    """KServe may report the challenger ready before its route has the tag's URL: the smoke
    waits for it, as in a smoke phase, instead of running without a route (an ERROR, which
    aborted the rollout at once), and aborts only after the progress deadline."""
    policy = POLICY.model_copy(update={"shadow": ShadowPhase()})
    target = canary_target(0)
    routeless = replace(
        target, traffic=tuple(replace(t, url=None) if t.latest else t for t in target.traffic)
    )
    obs = replace(observation(0, routeless), shadow_percent=100.0)
    waiting = decide(obs, policy, 1040.0)
    assert isinstance(waiting, Wait), waiting
    assert waiting.phase == "shadowing"
    late = decide(obs, policy, 1000.0 + policy.progress_deadline_seconds + 1)
    assert isinstance(late, StartRollback)
    assert late.verdict == "aborted"
    routed = replace(obs, target=target)
    assert decide(routed, policy, 1040.0) == Smoke(
        10, AnalysisRecord(commit=HEAD, step=0), shadow=True
    )


def test_the_proposal_says_the_smoke_comes_first() -> None:
    text = render_proposal_message(
        ProposalMessage(
            model="fraud-detector", version=5, environment="staging", previous_version=4,
            canary_percent=0, storage_uri="s3://m/5", run_id=None, run_url=None, metrics={},
            smoke_then=10,
        )
    )  # fmt: skip
    assert text.splitlines()[0] == "fraud-detector v5 → staging (smoke, canary 10%)"
    assert "starts at 0% of the traffic and takes 10% only once it answered" in text


def test_a_manual_rollback_stops_a_smoke_or_shadow_phase() -> None:
    """Weight 0 before any client traffic is not a rollback under way: `sluice rollback`
    commits one (the challenger never served a client)."""
    assert manual_rollback(smoking(), "not today", 1) == StartRollback("manual: not today")
    shadowing = replace(observation(0, canary_target(0)), shadow_percent=100.0)
    assert manual_rollback(shadowing, "not today", 1) == StartRollback("manual: not today")
    rolling = observation(0, canary_target(0))
    assert isinstance(manual_rollback(rolling, "x", 1), Wait)


def test_the_watch_keeps_looking_while_an_analysis_load_test_runs() -> None:
    """The load test's requests reach the canary too: a watch that fails during it ends the
    analysis at once, and the rollback does not wait for failureLimit."""
    import threading

    from controller.analysis_types import LoadPlan
    from controller.rollout.actions import Analyze
    from controller.rollout.analysis import Analyzer
    from controller.rollout.decide import conclude

    release = threading.Event()

    class SlowLoad:
        def run(self, plan: LoadPlan) -> LoadReport:
            release.wait(10)
            return LoadReport(100, 0, 5.0, 5.0, 9.0, 12.0)

    class Rows:
        def input_rows(self, model: str, version: int, limit: int) -> list[dict[str, object]]:
            return [{"amount": 1.0}]

    failing = GateResult("watch", Verdict.FAIL, "watch: canary 6 errors in 20 requests")
    looks: list[int] = []

    def watch() -> GateResult | None:
        looks.append(1)
        return failing if len(looks) >= 2 else None

    analyzer = Analyzer(Rows(), None, SlowLoad(), sleep=lambda _: None)  # type: ignore[arg-type]
    analysis = Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10))
    obs = observation(10, canary_target(10))
    try:
        results = analyzer.run(obs, analysis, POLICY.gates, 1040.0, watch=watch, watch_period=0.01)
    finally:
        release.set()
    assert results == [failing]
    assert len(looks) == 2
    patient = POLICY.model_copy(update={"failure_limit": 3})
    action = conclude(obs, patient, analysis, results, 1041.0)
    assert action == StartRollback("watch: canary 6 errors in 20 requests", (failing,))
