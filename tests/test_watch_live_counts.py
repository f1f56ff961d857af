"""The watch on live counts: what the router counted, classified as the metrics profile says."""

from __future__ import annotations

from typing import Any, cast

from support.rollout_values import NEW, OLD, canary_target, observation

from controller.analysis_types import Verdict
from controller.gates.sequential_watch import WatchConfig
from controller.ports import LiveRequestCounts, RolloutRegistry
from controller.rollout.actions import Watch
from controller.rollout.analysis import Analyzer
from controller.rollout.gates_config import GatesConfig
from controller.testing import MemoryRequestCounts

WATCH = Watch("canary 10%: next analysis in 5 s", "analysing", 5.0, 10, 1000.0, 1.0)


def analyzer(counters: MemoryRequestCounts) -> Analyzer:
    # No registry, Prometheus or Locust: the watch reads only the counters.
    return Analyzer(cast(RolloutRegistry, None), None, None, counters=counters)


def gates(profile: Any = "knative-otel") -> GatesConfig:
    return GatesConfig.model_validate({"metricsProfile": profile})


def test_the_shipped_fake_is_a_live_counter() -> None:
    assert isinstance(MemoryRequestCounts(), LiveRequestCounts)


def test_two_errors_in_the_first_eight_requests_stop_the_canary_with_no_prometheus() -> None:
    """The canary's 5xx answers since the step's commit, as the router counted them; the
    primary's only set p0. Nothing else is asked (there is no Prometheus at all)."""
    counters = MemoryRequestCounts()
    counters.counts = {NEW: {200: 6, 503: 2}, OLD: {200: 70}}
    result = analyzer(counters).watch(
        observation(10, canary_target(10)), WATCH, WatchConfig(), gates(), 1003.0
    )
    assert result is not None
    assert result.verdict is Verdict.FAIL, result.summary
    assert "canary 2 errors in 8 requests since the step (25%)" in result.summary
    assert "SPRT p0 1% vs p1 20% (primary 0% of 70)" in result.summary
    assert counters.asked == [("staging", "fd", 1000.0)]  # from the step's commit


def test_client_errors_are_not_the_models_failures() -> None:
    """4xx answers (a client's malformed request) count as requests, not as errors."""
    counters = MemoryRequestCounts()
    counters.counts = {NEW: {200: 4, 400: 4}, OLD: {200: 70}}
    result = analyzer(counters).watch(
        observation(10, canary_target(10)), WATCH, WatchConfig(), gates(), 1003.0
    )
    assert result is not None
    assert result.verdict is not Verdict.FAIL
    assert "canary 0 errors in 8 requests" in result.summary


def test_the_profiles_error_matcher_decides_what_is_an_error() -> None:
    """A custom profile that counts only 503 as an error: a 500 is then an answer."""
    profile = {
        "requests": "requests_total",
        "latency": "latency_seconds",
        "latencyUnit": "seconds",
        "namespaceLabel": "ns",
        "configurationLabel": "configuration",
        "revisionLabel": "revision",
        "statusLabel": "code",
        "errorMatcher": "503",
    }
    counters = MemoryRequestCounts()
    counters.counts = {NEW: {200: 4, 500: 4}, OLD: {200: 70}}
    result = analyzer(counters).watch(
        observation(10, canary_target(10)), WATCH, WatchConfig(), gates(profile), 1003.0
    )
    assert result is not None
    assert "canary 0 errors in 8 requests" in result.summary


def test_counters_that_do_not_answer_skip_the_look() -> None:
    """A router that cannot be read is a broken tool: no verdict, the watch looks again."""
    counters = MemoryRequestCounts()
    counters.outage = True
    result = analyzer(counters).watch(
        observation(10, canary_target(10)), WATCH, WatchConfig(), gates(), 1003.0
    )
    assert result is None
