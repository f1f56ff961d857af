"""The downstream check of a challenger classifier: the graph's answers routed by its decisions
against those routed by the champion's, scored on a late named outcome, overall and per
regime."""

from __future__ import annotations

import numpy as np
import pytest

from controller.analysis_types import Verdict
from controller.errors import InputError
from controller.shadow.downstream import (
    DownstreamSamples,
    Routed,
    judge_downstream,
    score_in,
)
from controller.shadow.downstream_policy import DownstreamPolicy

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
    assert score_in(output, "p_up") == expected
