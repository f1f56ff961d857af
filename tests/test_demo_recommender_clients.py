"""The recommender demo's pieces: its KPI check's plan, and its clients: slates as a front
end sends them, and clicks that reach `sluice serve`'s `POST /v1/feedback` when they are due,
joined to the logged answers by request id, as the KPI check reads them (`served_outcomes`).
The story itself runs in ``tests/test_demo_recommender.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.prediction_answers import answer

from controller.backends.sqlite_prediction_log import SqlitePredictionLog
from controller.demo.checkout import example_module
from controller.demo.recommender import OUTCOME_DELAY, _outcomes, slates
from controller.demo.recommender_traffic import DELAY_COMPRESSION, ClickSender, Shown
from controller.gates.kpi_power import canary_duration
from controller.rollout.policy import RolloutPolicy
from controller.serve.feedback import feedback_route
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "feedback-token-0123456789abcdef"


@pytest.fixture
def feedback_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`sluice serve`'s routes with the feedback route into a prediction log, on a free port."""
    log = tmp_path / "predictions.sqlite"
    metrics = ServeMetrics()
    routes = sluice_routes(
        metrics=metrics,
        status=dict,
        mlflow_trigger=lambda model, alias: False,
        mlflow_webhook_secret=None,
        feedback=feedback_route(token=TOKEN, store=SqlitePredictionLog(log), metrics=metrics),
    )
    with SluiceServer(routes) as server:
        yield server.url, log


def test_slates_are_requests_of_six_candidates_each_with_its_own_id() -> None:
    """One slate a request: its candidates share the user and context, ids are unique."""
    sessions = example_module(ROOT, "models.recommender.sessions")
    sent = slates(sessions, "holiday", 20)
    assert len(sent) == 20
    assert len({slate.request_id for slate in sent}) == 20
    for slate in sent:
        assert len(slate.candidates) == sessions.SLATE_SIZE
        assert {row["user_segment"] for row in slate.candidates} == {slate.segment}
        assert set(slate.candidates[0]) == set(sessions.FEATURES)


def test_clicks_reach_the_log_when_due_as_click_and_revenue(
    feedback_url: tuple[str, Path],
) -> None:
    """Each shown item's outcome is drawn from the example's truth, posted once its compressed
    delay passed, and read back per revision as the KPI check reads it; one not yet due is not
    posted."""
    url, path = feedback_url
    sessions = example_module(ROOT, "models.recommender.sessions")
    sent = slates(sessions, "holiday", 60)
    now = time.time()
    with SqlitePredictionLog(path) as log:
        for slate in sent:
            log.record(answer(slate.request_id, model="recommender", revision="r1", when=now))
        assert log.flush()
    shown = [Shown(s.request_id, s.segment, "r1", s.candidates[0], now) for s in sent]
    draw = _outcomes(sessions)
    expected = draw(shown)
    clicks = ClickSender(url, TOKEN, draw)
    clicks.add(shown)
    horizon = now + 3.0
    clicks.flush(until=horizon)
    assert clicks.failures == []
    due = [e for e in expected if now + e[2] / DELAY_COMPRESSION <= horizon]
    assert 0 < len(due) < len(sent)  # some clicks come later than 120 s (3 s compressed)
    served = SqlitePredictionLog(path).served_outcomes("recommender", ["r1"], "click", now - 1)
    values = {row.request_id: row.value for row in served}
    for slate, (click, _, delay) in zip(sent, expected, strict=True):
        arrived = now + delay / DELAY_COMPRESSION <= horizon
        assert values[slate.request_id] == (float(click) if arrived else None)
    revenue = SqlitePredictionLog(path).served_outcomes("recommender", ["r1"], "revenue", now - 1)
    assert sum(float(r.value or 0) for r in revenue) == pytest.approx(
        sum(r for c, r, d in expected if now + d / DELAY_COMPRESSION <= horizon), abs=0.1
    )
    clicks.flush()  # the rest, at once
    assert sum(clicks.posted.values()) == len(sent)


def test_the_overlays_ctr_check_takes_what_its_comment_says() -> None:
    """The overlay's comment and the README quote kpi_power for the demo's check: ~140 canary
    requests and ~47 s to fail a model 12 points worse than the holiday champion's 26 % at a 5 %
    canary of 65 requests a second with power 0.8; the check and its policy are what the plan
    assumes."""
    environment = yaml.safe_load((ROOT / "models/recommender/overlay/sluice.yaml").read_text())
    policy = RolloutPolicy.model_validate(environment["rollout"])
    assert policy.steps[0] == 5
    (check,) = policy.gates.kpis
    assert (check.outcome, check.kind, check.direction) == ("click", "rate", "higher")
    assert check.outcome_delay_seconds == OUTCOME_DELAY
    plan = check.plan(policy.gates.judge)
    assert (plan.alpha, plan.max_looks) == (0.1, 16)
    duration = canary_duration(
        0.26, 0.12, rps=65, share=0.05, alpha=plan.alpha, power=plan.power,
        max_looks=plan.max_looks, spending=plan.spending,
        outcome_delay=check.outcome_delay_seconds, min_samples=check.min_samples,
        margin=check.margin,
    )  # fmt: skip
    assert 130 <= duration.canary_samples <= 150
    assert 40 <= duration.duration_seconds <= 55
    assert policy.inconclusive_limit >= plan.max_looks
    assert policy.gates.judge.max_looks >= plan.max_looks
