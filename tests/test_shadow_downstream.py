"""The downstream check of a challenger classifier: the graph's answers routed by its decisions
against those routed by the champion's, scored on a late named outcome, overall and per
regime."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from support.prediction_answers import answer

from controller.analysis_types import Verdict
from controller.errors import InputError, TransientError
from controller.outcome_scores import number_field
from controller.rollout.policy import RolloutPolicy, ShadowPhase
from controller.shadow.analysis import judge_mirrored
from controller.shadow.downstream import (
    DownstreamSamples,
    Routed,
    judge_downstream,
)
from controller.shadow.downstream_policy import DownstreamPolicy
from controller.shadow.judge import ShadowJudgement, ShadowPolicy
from controller.target_types import ReplayedAnswer
from controller.testing import MemoryGraphReplay, MemoryPredictionStore

REGIMES = ("calm", "volatile", "black_swan")
POLICY = DownstreamPolicy(graph="market-regime", outcome="up", scoreField="p_up")


def _answer(p_up: float) -> Routed:
    return Routed(200, {"predictions": [{"p_up": p_up}]})


def _rows(
    n: int,
    *,
    champion_right: float,
    challenger_right: float,
    regime: str | None = "calm",
    seed: int = 0,
) -> list[tuple[str, float, str | None, Routed, Routed]]:
    """``n`` requests whose outcome is 1, each routing right with the given chances."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        champion = 0.7 if rng.random() < champion_right else 0.3
        challenger = 0.7 if rng.random() < challenger_right else 0.3
        rows.append((f"r{seed}-{i}", 1.0, regime, _answer(champion), _answer(challenger)))
    return rows


def _judge(rows: list[tuple[str, float, str | None, Routed, Routed]]) -> dict[str, Verdict]:
    samples = DownstreamSamples.from_routed(REGIMES, rows, POLICY)
    results = judge_downstream(samples, POLICY, alpha=0.05, min_labelled=100, min_positives=30)
    return {r.gate: r.verdict for r in results}


def test_a_challenger_routing_as_well_as_the_champion_passes() -> None:
    rows = _rows(400, champion_right=0.6, challenger_right=0.6)
    rows = [(i, o, r, c, c) for i, o, r, c, _ in rows]  # the same routes: the same answers
    verdicts = _judge(rows)
    assert verdicts["shadow/downstream"] is Verdict.PASS
    assert verdicts["shadow/downstream/calm"] is Verdict.PASS


def test_a_challenger_whose_routes_answer_worse_in_one_regime_fails_and_that_regime_is_named() -> (
    None
):
    rows = _rows(300, champion_right=0.6, challenger_right=0.6, regime="calm", seed=1)
    rows = [(i, o, r, c, c) for i, o, r, c, _ in rows]
    rows += _rows(300, champion_right=0.7, challenger_right=0.35, regime="volatile", seed=2)
    verdicts = _judge(rows)
    assert verdicts["shadow/downstream"] is Verdict.FAIL
    assert verdicts["shadow/downstream/volatile"] is Verdict.FAIL
    assert verdicts["shadow/downstream/calm"] is Verdict.PASS


def test_too_few_requests_with_the_outcome_never_pass() -> None:
    rows = _rows(60, champion_right=0.6, challenger_right=0.9)
    verdicts = _judge(rows)
    assert verdicts["shadow/downstream"] is Verdict.INCONCLUSIVE
    assert verdicts["shadow/downstream/black_swan"] is Verdict.INCONCLUSIVE


def test_a_graph_the_challenger_breaks_counts_wrong_and_a_champion_failure_is_left_out() -> None:
    ok = _answer(0.9)
    rows = [
        ("a", 1.0, "calm", ok, Routed(500, {"error": "Failed to process request"})),
        ("b", 1.0, "calm", Routed(500, None), ok),
        ("c", 1.0, None, ok, ok),
    ]
    samples = DownstreamSamples.from_routed(REGIMES, rows, POLICY)
    assert samples.size == 2
    assert samples.primary_unanswered == 1
    assert samples.shadow_unanswered == 1
    assert samples.shadow_right.tolist() == [False, True]
    assert samples.regime.tolist() == [0, -1]  # a request without its regime label: overall only


def test_an_outcome_that_is_not_zero_or_one_names_the_request() -> None:
    with pytest.raises(InputError, match="request r7 has the outcome up='volatile'"):
        DownstreamSamples.from_routed(
            REGIMES, [("r7", "volatile", None, _answer(1), _answer(1))], POLICY
        )


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ({"predictions": [{"p_up": 0.61, "regime": "calm"}]}, 0.61),
        ({"outputs": [{"name": "p_up", "shape": [1], "datatype": "FP64", "data": [0.4]}]}, 0.4),
        ({"predictions": [{"p_up": 0.1}, {"p_up": 0.2}]}, None),
        ({"predictions": [{"p_up": "high"}]}, None),
        ("not json", None),
    ],
)
def test_the_score_is_read_from_the_named_field(output: object, expected: float | None) -> None:
    assert number_field(output, "p_up") == expected


# -- the shadow phase's downstream judgement, through the ports' in-memory fakes -------------

CLASSES = list(REGIMES)
#: What judge_mirrored reads of an observation.
OBS = SimpleNamespace(
    canary_revision="r2", pin_changed_at=0.0, inference_service="market-regime-classifier"
)
JUDGE = {
    "classes": CLASSES, "decisionField": "regime", "outcome": "regime",
    "minSamples": 60, "minLabelled": 60, "minPositives": 15, "bootstrapResamples": 200,
    "downstream": {"graph": "market-regime", "outcome": "up", "scoreField": "p_up"},
}  # fmt: skip
#: How often the graph's answer is right, by the regime a request is and the regime that
#: routed it: a specialist is good in its own regime only.
RIGHT = {("volatile", "volatile"): 0.9, ("volatile", "calm"): 0.2}


def _graph(graph: str, member: str, answer: object) -> ReplayedAnswer:
    """The market graph, as a test decides it: the routed specialist's p_up, right (the day
    went up) with the chance RIGHT gives for the day's true regime and the route."""
    assert (graph, member) == ("market-regime", "market-regime-classifier")
    row = answer["predictions"][0]  # type: ignore[index]
    chance = RIGHT.get((row["truth"], row["regime"]), 0.7)
    right = (zlib.crc32(row["day"].encode()) % 100) / 100 < chance
    return ReplayedAnswer(200, {"predictions": [{"p_up": 0.8 if right else 0.2}]})


def _market_log(challenger_calls_volatile: str) -> MemoryPredictionStore:
    """90 days (30 of each regime) the champion classified right and the challenger the same,
    except volatile days, which it calls ``challenger_calls_volatile``; every day went up."""
    store = MemoryPredictionStore()
    for i, regime in enumerate(CLASSES * 30):
        day = f"day-{i}"
        decided = {"shadow": challenger_calls_volatile if regime == "volatile" else regime}
        for role, revision in (("primary", "r1"), ("shadow", "r2")):
            row = {"regime": decided.get(role, regime), "truth": regime, "day": day}
            output = json.dumps({"predictions": [row]}).encode()
            store.record(answer(day, role, output=output, revision=revision, model="classifier"))
        store.record_outcomes([(day, "regime", regime), (day, "up", 1)])
    return store


def _judged(store: MemoryPredictionStore, replay: MemoryGraphReplay | None) -> ShadowJudgement:
    phase = ShadowPhase.model_validate({"judge": JUDGE})
    return judge_mirrored(store, OBS, phase, replay)  # type: ignore[arg-type]


def test_a_challenger_that_routes_volatile_days_to_calm_fails_downstream_on_volatile() -> None:
    replay = MemoryGraphReplay(_graph)
    judged = _judged(_market_log("calm"), replay)
    results = {r.gate: r for r in judged.results}
    assert results["shadow/downstream/volatile"].verdict is Verdict.FAIL
    assert results["shadow/downstream/calm"].verdict is Verdict.PASS
    assert results["shadow/downstream"].verdict is Verdict.FAIL
    assert "routed by the challenger" in results["shadow/downstream"].summary
    assert judged.verdict is Verdict.FAIL
    # Both arms replayed, the champion's answers first, all 90 requests with the outcome.
    assert [len(answers) for _, _, answers in replay.calls] == [90, 90]


def test_a_challenger_routing_as_the_champion_passes_downstream() -> None:
    judged = _judged(_market_log("volatile"), MemoryGraphReplay(_graph))
    results = {r.gate: r.verdict for r in judged.results}
    assert results["shadow/downstream"] is Verdict.PASS
    assert judged.verdict is Verdict.PASS, judged.reason


def test_a_replay_that_fails_or_is_missing_is_an_error_never_a_pass() -> None:
    replay = MemoryGraphReplay(_graph)
    replay.failure = TransientError("graph router of market-regime is unreachable")
    failed = {r.gate: r for r in _judged(_market_log("volatile"), replay).results}
    assert failed["shadow/downstream"].verdict is Verdict.ERROR
    assert "market-regime is unreachable" in failed["shadow/downstream"].summary
    missing = {r.gate: r for r in _judged(_market_log("volatile"), None).results}
    assert missing["shadow/downstream"].verdict is Verdict.ERROR
    assert "no graph replay is configured" in missing["shadow/downstream"].summary


def test_downstream_needs_classes() -> None:
    with pytest.raises(ValidationError, match="downstream judges a classifier that routes a graph"):
        ShadowPolicy.model_validate({"downstream": {"graph": "g", "outcome": "up"}})


def test_the_readmes_downstream_policy_is_what_a_release_may_write() -> None:
    """README's classifier release (the downstream section) validates as a rollout policy, its
    judge downstream on the market-regime graph's up outcome."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("#### A classifier that routes a graph", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    (release,) = yaml.safe_load(block)["releases"]
    policy = RolloutPolicy.model_validate(release["rollout"])
    assert policy.shadow is not None
    downstream = policy.shadow.judge.downstream
    assert downstream is not None
    assert (downstream.graph, downstream.outcome, downstream.score_field) == (
        "market-regime", "up", "p_up"
    )  # fmt: skip
