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
from controller.predictions import OutcomeCounts, ServedOutcome
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

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
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


class _CountedReads:
    """The in-memory store, recording which read each KPI check asked it for."""

    def __init__(self, store: MemoryPredictionStore) -> None:
        self.store = store
        self.reads: list[tuple[str, str]] = []

    def served_outcomes(
        self, model: str, revisions: Sequence[str], outcome: str, since: float
    ) -> list[ServedOutcome]:
        self.reads.append(("rows", outcome))
        return self.store.served_outcomes(model, revisions, outcome, since)

    def outcome_counts(
        self, model: str, revisions: Sequence[str], outcome: str, since: float, settled: float
    ) -> dict[str, OutcomeCounts]:
        self.reads.append(("counts", outcome))
        return self.store.outcome_counts(model, revisions, outcome, since, settled)

    def served_revisions(self, model: str, since: float) -> list[str]:
        return self.store.served_revisions(model, since)


def test_a_rate_is_judged_on_the_stores_counts_without_reading_rows() -> None:
    """A rate needs counts: the store adds them up (one query per outcome and delay, so two
    checks of one click with one delay ask once), and the verdict is the rows' verdict."""
    store = MemoryPredictionStore(max_rows=100_000)
    _serve(store, OLD, 9000, 900, when=1100.0)
    _serve(store, NEW, 1000, 50, when=1100.0)
    reads = _CountedReads(store)
    strict = {**CTR, "name": "ctr-strict", "margin": 0.001}
    skip = {**CTR, "name": "ctr-skip", "missing": "skip", "outcomeDelay": 30}
    results = Analyzer(cast(RolloutRegistry, None), None, None, outcomes=lambda _env: reads).run(
        observation(10, canary_target(10), changed_at=STEP_AT),
        Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10)),
        _gates(CTR, strict, skip),
        NOW,
    )
    assert reads.reads == [("counts", "click"), ("counts", "click")]
    assert [(r.gate, r.verdict) for r in results] == [
        ("kpi/ctr", Verdict.FAIL), ("kpi/ctr-strict", Verdict.FAIL),
        ("kpi/ctr-skip", Verdict.INCONCLUSIVE),
    ]  # fmt: skip
    assert results[0].summary == _kpis(store).summary
    assert results[0].summary.startswith("ctr canary 5.00% vs primary 10.00% (n=1,000/9,000)")
    # missing: skip counts only the clicked requests: each revision's rate is 100 %.
    assert "n=50/900" in results[2].summary, results[2].summary


def test_a_rate_and_a_mean_of_one_outcome_read_its_rows_once() -> None:
    store = MemoryPredictionStore(max_rows=100_000)
    _serve(store, OLD, 900, 90, when=1100.0)
    _serve(store, NEW, 100, 5, when=1100.0)
    reads = _CountedReads(store)
    clicks_per_request = {**CTR, "name": "clicks", "kind": "mean", "margin": 0.05}
    results = Analyzer(cast(RolloutRegistry, None), None, None, outcomes=lambda _env: reads).run(
        observation(10, canary_target(10), changed_at=STEP_AT),
        Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10)),
        _gates(CTR, clicks_per_request),
        NOW,
    )
    assert reads.reads == [("rows", "click")]
    assert results[0].summary == _kpis(store).summary


def test_a_rate_outcome_other_than_zero_or_one_is_read_as_rows_and_refused() -> None:
    """The store's counts say a value is not 0 or 1; the rows then name it, as before."""
    store = MemoryPredictionStore()
    _serve(store, OLD, 10, 1, when=1100.0)
    store.record(answer("r-1", model="fd", revision=NEW, when=1100.0))
    store.record_outcomes([("r-1", "click", 2.5)])
    reads = _CountedReads(store)
    result = _kpis(cast(ServedOutcomes, reads))
    assert reads.reads == [("counts", "click"), ("rows", "click")]
    assert result.verdict == Verdict.ERROR
    assert "outcome click is 2.5 but KPI ctr is a rate: send 0 or 1" in result.summary
