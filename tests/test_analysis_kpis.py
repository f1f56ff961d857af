"""KPI checks in a canary analysis: each revision judged on the outcomes of the requests it
served, read from the prediction log since the step's commit; no log, an unreadable log or an
outcome that is not a number never passes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from support.prediction_answers import answer
from support.rollout_values import HEAD, NEW, OLD, canary_target, observation

from controller.analysis_types import GateResult, Verdict
from controller.errors import TransientError
from controller.ports import RolloutRegistry, ServedOutcomes
from controller.predictions import ServedOutcome
from controller.rollout.actions import Analyze
from controller.rollout.analysis import Analyzer
from controller.rollout.gates_config import GatesConfig
from controller.rollout.record import AnalysisRecord
from controller.testing import MemoryPredictionStore

STEP_AT = 1000.0  # the step's commit
NOW = 2000.0
CTR: dict[str, Any] = {
    "name": "ctr", "outcome": "click", "kind": "rate", "direction": "higher", "margin": 0.02,
    "minSamples": 500,
    "outcomeDelay": 60,
}  # fmt: skip


def _gates(*kpis: dict[str, Any]) -> GatesConfig:
    return GatesConfig.model_validate(
        {"loadTest": {"enabled": False}, "judgeEnabled": False, "metrics": [], "kpis": kpis}
    )


def _serve(store: MemoryPredictionStore, revision: str, n: int, clicks: int, when: float) -> None:
    """``n`` client requests ``revision`` answered at ``when``, the first ``clicks`` clicked."""
    for i in range(n):
        request_id = f"{revision}-{when:.0f}-{i}"
        store.record(answer(request_id, model="fd", revision=revision, when=when))
        if i < clicks:
            store.record_outcomes([(request_id, "click", 1)])


def _kpis(outcomes: ServedOutcomes | None, *kpis: dict[str, Any], look: int = 1) -> GateResult:
    analyzer = Analyzer(cast(RolloutRegistry, None), None, None, outcomes=lambda _env: outcomes)
    obs = observation(10, canary_target(10), changed_at=STEP_AT)
    analysis = Analyze(step=10, look=look, record=AnalysisRecord(HEAD, 10))
    [result] = analyzer.run(obs, analysis, _gates(*(kpis or (CTR,))), NOW)
    return result


def test_a_canary_that_loses_clicks_fails_on_ctr_alone() -> None:
    store = MemoryPredictionStore(max_rows=100_000)
    _serve(store, OLD, 9000, 900, when=1100.0)  # 10 %
    _serve(store, NEW, 1000, 50, when=1100.0)  # 5 %
    result = _kpis(store)
    assert (result.gate, result.verdict) == ("kpi/ctr", Verdict.FAIL), result.summary
    assert result.summary.startswith("ctr canary 5.00% vs primary 10.00% (n=1,000/9,000)")
    assert result.values["canary_n"] == 1000


def test_a_canary_as_good_as_the_primary_passes_within_the_margin() -> None:
    store = MemoryPredictionStore(max_rows=100_000)
    _serve(store, OLD, 30_000, 3000, when=1100.0)
    _serve(store, NEW, 6000, 600, when=1100.0)
    result = _kpis(store)
    assert result.verdict == Verdict.PASS, result.summary


def test_requests_before_the_step_or_within_the_outcome_delay_are_not_counted() -> None:
    """Clicks of the canary's last minute may still come: those requests count neither as
    clicks nor as misses, and the step's earlier requests belong to another step."""
    store = MemoryPredictionStore(max_rows=100_000)
    _serve(store, OLD, 9000, 900, when=NOW - 30)  # within outcomeDelay 60 s
    _serve(store, NEW, 3000, 0, when=NOW - 30)
    _serve(store, NEW, 3000, 0, when=STEP_AT - 5)  # before the step's commit
    result = _kpis(store)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert "too few samples: canary 0, primary 0 (minSamples 500)" in result.summary


def test_missing_outcomes_count_as_zero_after_the_delay() -> None:
    store = MemoryPredictionStore(max_rows=100_000)
    _serve(store, OLD, 9000, 900, when=1100.0)
    _serve(store, NEW, 1000, 0, when=1100.0)  # nobody clicked: no outcome rows at all
    assert _kpis(store).verdict == Verdict.FAIL


def test_without_a_prediction_log_a_kpi_never_passes() -> None:
    result = _kpis(None)
    assert (result.gate, result.verdict) == ("kpi/ctr", Verdict.INCONCLUSIVE)
    assert result.summary == "ctr: no prediction log to read"


class _LockedLog:
    """A prediction log another process holds (a fake of Sluice's port)."""

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        raise TransientError("the prediction log /x/log.db is locked by another process")


def test_an_unreadable_log_is_an_error_for_every_kpi() -> None:
    analyzer = Analyzer(cast(RolloutRegistry, None), None, None, outcomes=lambda _env: _LockedLog())
    obs = observation(10, canary_target(10), changed_at=STEP_AT)
    revenue = {
        "name": "revenue", "outcome": "revenue", "kind": "mean", "direction": "higher",
        "margin": 0.05, "outcomeDelay": 0,
    }  # fmt: skip
    results = analyzer.run(
        obs, Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10)), _gates(CTR, revenue), NOW
    )
    assert [(r.gate, r.verdict) for r in results] == [
        ("kpi/ctr", Verdict.ERROR), ("kpi/revenue", Verdict.ERROR),
    ]  # fmt: skip
    assert "locked by another process" in results[0].summary


def test_a_class_name_outcome_is_an_error_naming_the_request() -> None:
    store = MemoryPredictionStore()
    store.record(answer("r-1", model="fd", revision=NEW, when=1100.0))
    store.record_outcomes([("r-1", "click", "yes")])
    result = _kpis(store)
    assert result.verdict == Verdict.ERROR
    assert "outcome click of request r-1 is 'yes', a class name" in result.summary


def test_the_checks_read_the_log_of_the_releases_environment() -> None:
    """A stack serving staging and production keeps a log per environment: the checks of a
    release in production read production's, never another environment's."""
    production, staging = (MemoryPredictionStore(max_rows=100_000) for _ in range(2))
    _serve(production, OLD, 9000, 900, when=1100.0)
    _serve(production, NEW, 1000, 50, when=1100.0)
    asked: list[str] = []

    def logs(environment: str) -> ServedOutcomes:
        asked.append(environment)
        return production if environment == "production" else staging

    analyzer = Analyzer(cast(RolloutRegistry, None), None, None, outcomes=logs)
    obs = replace(observation(10, canary_target(10), changed_at=STEP_AT), environment="production")
    analysis = Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10))
    [result] = analyzer.run(obs, analysis, _gates(CTR), NOW)
    assert (result.verdict, set(asked)) == (Verdict.FAIL, {"production"}), result.summary
