"""A judge that passed at an earlier look of a step keeps its answer past ``maxLooks``.

The ensemble demo once aborted a good specialist: its judge passed at looks 2 and 3 of 3 while
the load test, a few requests short on a loaded machine, held the step; at look 4 the judge
could only say "all 3 looks spent", and four unanswered analyses in a row aborted the rollout.
"""

from __future__ import annotations

from typing import cast

from support.rollout_values import HEAD, canary_target, observation

from controller.analysis_types import GateResult, Verdict
from controller.ports import RolloutRegistry
from controller.rollout.actions import Analyze
from controller.rollout.analysis import Analyzer
from controller.rollout.gates_config import GatesConfig
from controller.rollout.record import AnalysisRecord

PASSED = "judge look 3/3: errors 0.00% vs 0.00% (p=1), n=349/370 — pass: no worse than primary"
GATES = GatesConfig.model_validate(
    {"loadTest": {"enabled": False}, "metrics": [], "judge": {"maxLooks": 3}}
)


def _judge_at(look: int, earlier: tuple[GateResult, ...]) -> GateResult:
    analyzer = Analyzer(cast(RolloutRegistry, None), None, None)
    record = AnalysisRecord(HEAD, 10, looks=look - 1, results=earlier)
    obs = observation(10, canary_target(10), changed_at=1000.0)
    [result] = analyzer.run(obs, Analyze(step=10, look=look, record=record), GATES, 1100.0)
    return result


def test_a_pass_before_the_last_look_is_kept_past_it() -> None:
    held = (GateResult("locust", Verdict.INCONCLUSIVE, "32 requests"),)
    once = _judge_at(4, (*held, GateResult("judge", Verdict.PASS, PASSED)))
    assert (once.gate, once.verdict) == ("judge", Verdict.PASS)
    assert once.summary == PASSED + " (concluded at an earlier look of this step)"
    again = _judge_at(5, (*held, once))
    assert again.summary == once.summary  # carried, not suffixed twice


def test_within_max_looks_or_without_a_pass_the_judge_looks_again() -> None:
    """Without metrics the judge has nothing to compare: inconclusive, never a carried pass."""
    earlier = (GateResult("judge", Verdict.PASS, PASSED),)
    assert _judge_at(3, earlier).verdict == Verdict.INCONCLUSIVE
    inconclusive = (GateResult("judge", Verdict.INCONCLUSIVE, "n=12/40"),)
    assert _judge_at(4, inconclusive).verdict == Verdict.INCONCLUSIVE
