"""The window an analysis measures: the step's life after its commit, never the second before.

A commit's time is recorded in whole seconds, so a step committed at 1000.9 reads as 1000. A
window reaching back to 1000 took in what the new canary answered just before its step: the
smoke's first, cold requests (now on by default), which once put a good RawDeployment
canary's p99 at 371 ms against Locust's 94 ms and rolled it back.
"""

from __future__ import annotations

import re
from typing import cast

from support.rollout_values import HEAD, canary_target, observation

from controller.analysis_types import MetricSample
from controller.ports import RolloutRegistry
from controller.rollout.actions import Analyze
from controller.rollout.analysis import Analyzer
from controller.rollout.gates_config import GatesConfig
from controller.rollout.record import AnalysisRecord


class RecordingPrometheus:
    """A MetricsSource that answers nothing and keeps every query (a fake of Sluice's port)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def query(self, promql: str) -> list[MetricSample]:
        self.queries.append(promql)
        return []


def test_checks_and_judge_measure_only_seconds_surely_after_the_steps_commit() -> None:
    prometheus = RecordingPrometheus()
    analyzer = Analyzer(cast(RolloutRegistry, None), prometheus, None)
    gates = GatesConfig.model_validate({"loadTest": {"enabled": False}})
    obs = observation(10, canary_target(10), changed_at=1000.0)  # committed in 1000.0-1000.99
    analyzer.run(obs, Analyze(step=10, look=1, record=AnalysisRecord(HEAD, 10)), gates, 1010.5)
    windows = {w for q in prometheus.queries for w in re.findall(r"\[(\d+)s\]", q)}
    # 1010.5 - 1000 = 10.5 s recorded; at most 9.5 s of it surely after the commit: 9 s.
    assert windows == {"9"}, prometheus.queries
