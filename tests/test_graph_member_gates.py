"""A graph member's gates read the graph's calls to it: ``graphTraffic`` on a release.

A regime's specialist (``market-regime-volatile``) is rolled out on its own while the
InferenceGraph keeps routing by regime; its builtin checks and the judge then compare canary
and primary on the requests the graph routed to it (the step series of
:mod:`controller.gates.graph_traffic`), not on everything its route answered. The queries are
pure functions of plain values: their exact PromQL is pinned here for every builtin profile.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest
from pydantic import ValidationError
from support.rollout_values import HEAD, NEW, OLD, canary_target, observation

from controller.analysis_types import MetricSample, Verdict
from controller.errors import ConfigError
from controller.gates.graph_traffic import GraphTraffic, step_metric_names
from controller.gates.metrics_profile import KNATIVE_OPENCENSUS, KNATIVE_OTEL, SLUICE_WRAPPER
from controller.gates.prometheus_checks import (
    MetricCheck,
    builtin_query,
    evaluate_checks,
    revision_traffic,
)
from controller.gates.promql_queries import request_series
from controller.gates.sequential_watch import WatchConfig
from controller.manifests.environment import ReleaseConfig
from controller.ports import RolloutRegistry
from controller.rollout.actions import Analyze, Watch
from controller.rollout.analysis import Analyzer
from controller.rollout.gates_config import GatesConfig
from controller.rollout.record import AnalysisRecord

ISVC = "market-regime-volatile"
CONFIGURATION = f"{ISVC}-predictor"
REVISION = f"{CONFIGURATION}-00002"
VOLATILE = GraphTraffic.model_validate(
    {"graph": "market-regime", "node": "by-regime", "step": "volatile"}
)
NAMES = {
    "namespace": "default",
    "configuration": CONFIGURATION,
    "revision": REVISION,
    "inference_service": ISVC,
}
STEP = 'graph_name="market-regime", node_name="by-regime", step_name="volatile"'


# -- the option ----------------------------------------------------------------------------------


def test_a_release_names_the_graph_and_optionally_its_node_and_step() -> None:
    """graphTraffic is typed on the release: unset by default, node and step optional."""
    base = {"model": "m", "inferenceService": ISVC, "pin": "m.yaml"}
    assert ReleaseConfig.model_validate(base).graph_traffic is None
    release = ReleaseConfig.model_validate(base | {"graphTraffic": {"graph": "market-regime"}})
    assert release.graph_traffic == GraphTraffic(graph="market-regime")
    assert (release.graph_traffic.node, release.graph_traffic.step) == (None, None)


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ({"graph": "Market_Regime"}, "graph"),  # not a Kubernetes object name
        ({"graph": "g", "step": 'volatile"} or vector(1) #'}, "step"),
        ({"graph": "g", "node": "by regime"}, "node"),
        ({"graph": "g", "regime": "volatile"}, "regime"),  # extra fields are refused
        ({"node": "by-regime"}, "graph"),
    ],
)
def test_graph_traffic_refuses_what_promql_could_not_hold(
    traffic: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        GraphTraffic.model_validate(traffic)


def test_every_field_is_documented() -> None:
    properties = GraphTraffic.model_json_schema(by_alias=True)["properties"]
    assert set(properties) == {"graph", "node", "step", "replay"}
    assert all(spec.get("description") for spec in properties.values())
    release = ReleaseConfig.model_json_schema(by_alias=True)["properties"]
    assert "graph" in release["graphTraffic"]["description"].lower()


# -- the queries, per profile --------------------------------------------------------------------


def test_knative_otel_member_queries_read_the_step_histogram() -> None:
    """Under knative-otel: the step histogram's _count and buckets (seconds, scaled to ms),
    selected by graph, node, step, service and the answering revision."""
    where = (
        f'k8s_namespace_name="default", {STEP}, service_name="{ISVC}", '
        f'kn_revision_name="{REVISION}"'
    )
    count = "sluice_graph_step_duration_seconds_count"
    assert builtin_query("request-success-rate", interval="2m", graph=VOLATILE, **NAMES) == (
        f'(sum(rate({count}{{{where}, http_response_status_code!~"5.."}}[2m]))'
        f" or vector(0)) / sum(rate({count}{{{where}}}[2m])) * 100"
    )
    assert builtin_query("request-latency", interval="1m", graph=VOLATILE, **NAMES) == (
        "histogram_quantile(0.99, sum by (le)"
        f"(rate(sluice_graph_step_duration_seconds_bucket{{{where}}}[1m]))) * 1000"
    )


def test_knative_opencensus_member_queries_read_the_step_counter_in_ms() -> None:
    where = f'namespace_name="default", {STEP}, service_name="{ISVC}", revision_name="{REVISION}"'
    profile = KNATIVE_OPENCENSUS
    query = builtin_query(
        "request-success-rate", interval="2m", profile=profile, graph=VOLATILE, **NAMES
    )
    assert query == (
        f'(sum(rate(sluice_graph_step_request_count{{{where}, response_code_class!~"5xx"}}[2m]))'
        f" or vector(0)) / sum(rate(sluice_graph_step_request_count{{{where}}}[2m])) * 100"
    )
    query = builtin_query(
        "request-latency", interval="1m", profile=profile, graph=VOLATILE, **NAMES
    )
    assert query == (
        "histogram_quantile(0.99, "
        f"sum by (le)(rate(sluice_graph_step_request_latencies_bucket{{{where}}}[1m])))"
    )


def test_sluice_wrapper_member_queries_read_the_step_histogram_by_code() -> None:
    where = f'namespace_name="default", {STEP}, service_name="{ISVC}", revision_name="{REVISION}"'
    count = "sluice_graph_step_duration_seconds_count"
    query = builtin_query(
        "request-success-rate", interval="1m", profile=SLUICE_WRAPPER, graph=VOLATILE, **NAMES
    )
    assert query == (
        f'(sum(rate({count}{{{where}, code!~"5.."}}[1m]))'
        f" or vector(0)) / sum(rate({count}{{{where}}}[1m])) * 100"
    )


def test_a_graph_without_node_or_step_takes_every_call_to_the_member() -> None:
    """Only graph and service: the black-swan Ensemble's calls count with the Switch's."""
    series = request_series(KNATIVE_OTEL, graph=GraphTraffic(graph="market-regime"), **NAMES)
    assert series.selector == (
        f'k8s_namespace_name="default", graph_name="market-regime", service_name="{ISVC}", '
        f'kn_revision_name="{REVISION}"'
    )
    assert (series.requests, series.latency) == (
        step_metric_names(KNATIVE_OTEL).requests,
        "sluice_graph_step_duration_seconds",
    )


def test_unset_reads_the_revision_series_as_before() -> None:
    """No graph: the revision's own series, whatever inference_service says."""
    series = request_series(KNATIVE_OTEL, **NAMES)
    assert series.requests == "kn_serving_invocation_duration_seconds_count"
    assert series.selector == (
        f'k8s_namespace_name="default", kn_configuration_name="{CONFIGURATION}", '
        f'kn_revision_name="{REVISION}"'
    )


def test_a_member_name_that_would_break_promql_is_refused() -> None:
    with pytest.raises(ConfigError, match="inference_service"):
        request_series(KNATIVE_OTEL, graph=VOLATILE, **(NAMES | {"inference_service": 'a"b'}))


# -- the checks and the judge's evidence ---------------------------------------------------------


class StepPrometheus:
    """A MetricsSource holding the graph's step series only: ``calls`` answered per revision
    (none failed, half within 50 ms); any other series has no data. Keeps every query."""

    def __init__(self, calls: dict[str, int]) -> None:
        self.calls = calls
        self.queries: list[str] = []

    def query(self, promql: str) -> list[MetricSample]:
        self.queries.append(promql)
        if "sluice_graph_step_" not in promql:
            return []
        n = next((float(v) for r, v in self.calls.items() if f'"{r}"' in promql), 0.0)
        if "histogram_quantile" in promql:
            return [MetricSample({}, 75.0)]
        if "_bucket" in promql:
            return [
                MetricSample({"le": "0.05"}, n / 2),
                MetricSample({"le": "0.1"}, n),
                MetricSample({"le": "+Inf"}, n),
            ]
        if '=~"5.."' in promql:
            return [MetricSample({}, 0.0)]
        if "!~" in promql:  # the success rate's numerator over its denominator
            return [MetricSample({}, 100.0)]
        return [MetricSample({}, n)]


def test_revision_traffic_counts_the_graphs_calls_it_answered() -> None:
    source = StepPrometheus({REVISION: 120})
    traffic = revision_traffic(cast(Any, source), interval="30s", graph=VOLATILE, **NAMES)
    assert traffic is not None
    assert (traffic.requests, traffic.errors) == (120, 0)
    assert traffic.latency is not None
    assert traffic.latency.total == 120
    assert all("sluice_graph_step_" in q and STEP in q for q in source.queries)


def test_builtin_checks_compare_canary_and_primary_on_the_graphs_calls() -> None:
    source = StepPrometheus({NEW: 300, OLD: 300})
    checks = [
        MetricCheck(name="ok", builtin="request-success-rate", min=99, min_requests=50),
        MetricCheck(name="p99", builtin="request-latency", max=500, max_increase=0.5),
    ]
    results = evaluate_checks(
        cast(Any, source),
        checks,
        canary_revision=NEW,
        primary_revision=OLD,
        namespace="default",
        configuration="fd-predictor",
        inference_service="fd",
        graph=VOLATILE,
    )
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS], results
    assert all('service_name="fd"' in q and STEP in q for q in source.queries)
    assert {f'"{NEW}"' in q for q in source.queries} == {True, False}  # both revisions read


def test_min_requests_counts_the_graphs_calls() -> None:
    """A member the graph barely calls is inconclusive under minRequests, whatever else its
    route answered."""
    source = StepPrometheus({NEW: 3, OLD: 300})
    check = MetricCheck(name="ok", builtin="request-success-rate", min=99, min_requests=50)
    (result,) = evaluate_checks(
        cast(Any, source),
        [check],
        canary_revision=NEW,
        primary_revision=OLD,
        namespace="default",
        configuration="fd-predictor",
        inference_service="fd",
        graph=VOLATILE,
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "only 3 requests" in result.summary
    assert "graph market-regime" in result.summary


def _judge_only(prometheus: StepPrometheus, graph: GraphTraffic | None, look: int = 1) -> Any:
    gates = GatesConfig.model_validate(
        {
            "loadTest": {"enabled": False},
            "metrics": [],
            "judge": {"minSamples": 100, "maxLooks": 1, "spending": "pocock"},
        }
    )
    obs = dataclasses.replace(observation(10, canary_target(10)), graph_traffic=graph)
    analyzer = Analyzer(cast(RolloutRegistry, None), prometheus, None)
    analysis = Analyze(step=10, look=look, record=AnalysisRecord(HEAD, 10))
    (result,) = analyzer.run(obs, analysis, gates, 1031.5)
    return result


def test_a_rarely_routed_member_is_held_by_min_samples_never_passed() -> None:
    """Black swan is rare: 40 graph calls to the canary (the primary 4000, and however many
    the canary's route answered otherwise) stay inconclusive at the judge's minSamples, even
    at the last look, where a well-sampled member with the same behaviour passes."""
    rare = _judge_only(StepPrometheus({NEW: 40, OLD: 4000}), VOLATILE)
    assert rare.verdict is Verdict.INCONCLUSIVE, rare.summary
    assert "fewer than minSamples 100" in rare.summary
    assert rare.values["canary_n"] == 40
    busy = _judge_only(StepPrometheus({NEW: 4000, OLD: 4000}), VOLATILE)
    assert busy.verdict is Verdict.PASS, busy.summary


def test_the_judge_reads_only_the_graph_step_series_of_the_member() -> None:
    prometheus = StepPrometheus({NEW: 4000, OLD: 4000})
    _judge_only(prometheus, VOLATILE)
    assert prometheus.queries
    assert all(f'{STEP}, service_name="fd"' in q for q in prometheus.queries)
    assert not any("kn_serving_invocation" in q for q in prometheus.queries)


def test_without_graph_traffic_the_judge_reads_the_revision_series() -> None:
    """Unset: the revision series as before, so the step series' calls are not seen."""
    prometheus = StepPrometheus({NEW: 4000, OLD: 4000})
    result = _judge_only(prometheus, None)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert all("kn_serving_invocation_duration_seconds" in q for q in prometheus.queries)


def test_a_member_the_graph_never_called_is_inconclusive_and_says_so() -> None:
    result = _judge_only(StepPrometheus({OLD: 4000}), VOLATILE)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert f"no requests to {NEW} from graph market-regime" in result.summary


class EveryRequestCounters:
    """The local router's live counters: every request to a revision, the graph's or not."""

    def __init__(self) -> None:
        self.read = 0

    def request_counts(
        self, environment: str, inference_service: str, since: float
    ) -> dict[str, dict[int, int]]:
        self.read += 1
        return {NEW: {200: 5000}, OLD: {200: 5000}}


def test_a_members_watch_reads_the_graphs_calls_not_the_live_counters() -> None:
    """The live counters cannot tell the graph's requests apart: a member's watch reads the
    step series from Prometheus, as its analyses do."""
    prometheus, counters = StepPrometheus({NEW: 30, OLD: 300}), EveryRequestCounters()
    analyzer = Analyzer(cast(RolloutRegistry, None), prometheus, None, counters=counters)
    obs = dataclasses.replace(observation(10, canary_target(10)), graph_traffic=VOLATILE)
    gates = GatesConfig.model_validate({})
    watch = Watch("", "watching", None, 10, 1000.0, 1.0)
    analyzer.watch(obs, watch, WatchConfig(), gates, 1020.0)
    assert counters.read == 0
    assert prometheus.queries
    assert all(f'{STEP}, service_name="fd"' in q for q in prometheus.queries)
    analyzer.watch(
        dataclasses.replace(obs, graph_traffic=None), watch, WatchConfig(), gates, 1020.0
    )
    assert counters.read == 1
