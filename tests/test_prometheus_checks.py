"""Metric checks: strict templates, config validation, verdicts, and Prometheus scraping a router.

The integration tests share one scenario (module scope): a router with two revisions, the
primary slow (60 ms) and the canary flaky (every 4th request answers 500), each loaded through
its tag, scraped by a real Prometheus every second. Verdicts are compared with what the clients
saw.
"""

from __future__ import annotations

import http.client
import http.server
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controller.analysis_types import MetricSample, Verdict
from controller.backends.prometheus import PrometheusSource
from controller.errors import ConfigError
from controller.gates.metrics_profile import (
    KNATIVE_OPENCENSUS,
    KNATIVE_OTEL,
    OTEL_BUCKETS_SECONDS,
    MetricsProfile,
)
from controller.gates.prometheus_checks import (
    MetricCheck,
    builtin_query,
    evaluate_checks,
    render_query,
    revision_traffic,
)
from controller.local.configs import write_prometheus_config
from controller.local.processes import free_port
from controller.local.router import TAG_HEADER, Router, TrafficTarget
from controller.local.services import start_prometheus
from controller.manifests.environment import load_environment

NAMESPACE = "default"
ISVC = "fraud-detector"
CONFIGURATION = f"{ISVC}-predictor"
SLOW = f"{CONFIGURATION}-00001"  # the primary: always answers, after 60 ms
FLAKY = f"{CONFIGURATION}-00002"  # the canary: fast, every 4th request answers 500
IDLE = f"{CONFIGURATION}-00003"  # never served a request
SLOW_SECONDS = 0.06
VARIABLES = {
    "namespace": NAMESPACE,
    "configuration": CONFIGURATION,
    "inference_service": ISVC,
    "canary_revision": FLAKY,
    "primary_revision": SLOW,
    "revision": FLAKY,
    "interval": "1m",
}

# -- templates -----------------------------------------------------------------------------------


def test_render_substitutes_every_variable() -> None:
    """Each {{ name }} (spaces optional) is replaced by its value."""
    template = 'rate(x{revision_name="{{revision}}", ns="{{ namespace }}"}[{{  interval }}])'
    assert render_query(template, VARIABLES, check="c") == (
        f'rate(x{{revision_name="{FLAKY}", ns="default"}}[1m])'
    )


def test_render_unknown_variable_is_a_config_error() -> None:
    """An unknown variable names the check and the variable."""
    with pytest.raises(ConfigError, match=r"check errors: unknown variable 'revison'"):
        render_query('x{revision_name="{{ revison }}"}', VARIABLES, check="errors")


def test_render_missing_variable_is_a_config_error() -> None:
    """A known variable without a value names the check and the variable."""
    variables = {k: v for k, v in VARIABLES.items() if k != "primary_revision"}
    with pytest.raises(ConfigError, match=r"check errors: .*\{\{ primary_revision \}\}"):
        render_query('x{r="{{ primary_revision }}"}', variables, check="errors")


def test_render_refuses_go_template_syntax() -> None:
    """Flagger-style expressions other than a bare name are refused, not passed through."""
    with pytest.raises(ConfigError, match=r"'\{\{ \.Revision \}\}' in its query is not a var"):
        render_query("x{r='{{ .Revision }}'}", VARIABLES, check="c")


def test_render_refuses_an_unclosed_placeholder() -> None:
    """'{{' without '}}' is an error rather than PromQL with a brace in it."""
    with pytest.raises(ConfigError, match="without closing it"):
        render_query('x{r="{{ revision"}', VARIABLES, check="c")


def test_render_leaves_promql_braces_alone() -> None:
    """Label matchers and regex quantifiers are not placeholders."""
    template = 'x{r=~"a{2}", s="{{ revision }}"}'
    assert render_query(template, VARIABLES, check="c") == f'x{{r=~"a{{2}}", s="{FLAKY}"}}'


# -- configuration -------------------------------------------------------------------------------


def test_config_reads_camel_case_and_field_names() -> None:
    """maxIncrease and max_increase are the same field; defaults fill the rest."""
    by_alias = MetricCheck.model_validate(
        {"name": "p99", "builtin": "request-latency", "maxIncrease": 0.2}
    )
    by_name = MetricCheck(name="p99", builtin="request-latency", max_increase=0.2)
    assert by_alias == by_name
    assert (by_alias.interval, by_alias.percentile) == ("1m", 99.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "a", "min": 1}, "exactly one of builtin and query"),
        ({"name": "a", "builtin": "request-latency", "query": "x", "max": 1}, "exactly one"),
        ({"name": "a", "builtin": "request-latency"}, "at least one threshold"),
        ({"name": "a", "builtin": "request-success-rate", "min": 0.99}, "write 99 for 99 %"),
        ({"name": "a", "builtin": "request-success-rate", "min": 99, "percentile": 95}, "only"),
        ({"name": "a", "query": "x", "min": 2, "max": 1}, "min 2 is above max 1"),
        ({"name": "a", "query": "x{r='{{ rev }}'}", "max": 1}, "unknown variable 'rev'"),
        ({"name": "a", "query": "sum(x)", "maxIncrease": 0.1}, r"with \{\{ revision \}\}"),
        ({"name": "a", "builtin": "request-latency", "max": 1, "interval": "1 min"}, "pattern"),
        ({"name": "a", "builtin": "request-latency", "max": 1, "maxDecrease": 2}, "less than"),
        ({"name": "a b", "builtin": "request-latency", "max": 1}, "pattern"),
        ({"name": "a", "builtin": "request-latency", "max": 1, "thresholdRange": {}}, "Extra"),
    ],
)
def test_config_refuses_invalid_checks(config: dict[str, Any], message: str) -> None:
    """Invalid checks fail validation with a message that says what to change."""
    with pytest.raises(ValidationError, match=message):
        MetricCheck.model_validate(config)


def test_every_config_field_is_documented() -> None:
    """The JSON schema describes every field under its camelCase name."""
    schema = MetricCheck.model_json_schema(by_alias=True)
    properties = schema["properties"]
    assert {"maxIncrease", "maxDecrease", "minRequests"} <= set(properties)
    assert all(spec.get("description") for spec in properties.values())


def test_builtin_queries_are_the_documented_promql() -> None:
    """By default the builtins read current Knative's OpenTelemetry histogram: the success
    percentage from its _count, the latency percentile from seconds scaled to milliseconds."""
    where = (
        f'k8s_namespace_name="default", kn_configuration_name="{CONFIGURATION}", '
        'kn_revision_name="r-1"'
    )
    names = {"namespace": NAMESPACE, "configuration": CONFIGURATION, "revision": "r-1"}
    count = "kn_serving_invocation_duration_seconds_count"
    assert builtin_query("request-success-rate", interval="2m", **names) == (
        f'(sum(rate({count}{{{where}, http_response_status_code!~"5.."}}[2m]))'
        f" or vector(0)) / sum(rate({count}{{{where}}}[2m])) * 100"
    )
    assert builtin_query("request-latency", interval="1m", percentile=99.9, **names) == (
        "histogram_quantile(0.999, sum by (le)"
        f"(rate(kn_serving_invocation_duration_seconds_bucket{{{where}}}[1m]))) * 1000"
    )


def test_opencensus_profile_queries_knative_118_names() -> None:
    """Under knative-opencensus the builtins read Knative 1.18's counter and ms histogram."""
    where = f'namespace_name="default", configuration_name="{CONFIGURATION}", revision_name="r-1"'
    names = {"namespace": NAMESPACE, "configuration": CONFIGURATION, "revision": "r-1"}
    profile = KNATIVE_OPENCENSUS
    assert builtin_query("request-success-rate", interval="2m", profile=profile, **names) == (
        f'(sum(rate(revision_app_request_count{{{where}, response_code_class!~"5xx"}}[2m]))'
        f" or vector(0)) / sum(rate(revision_app_request_count{{{where}}}[2m])) * 100"
    )
    assert builtin_query("request-latency", interval="1m", profile=profile, **names) == (
        "histogram_quantile(0.99, "
        f"sum by (le)(rate(revision_app_request_latencies_bucket{{{where}}}[1m])))"
    )


def test_custom_profile_names_every_series_and_label() -> None:
    """A custom profile (Knative 1.19.0-1.19.7's metric, say) is used as written."""
    profile = MetricsProfile.model_validate(
        {
            "requests": "kn_queueproxy_app_duration_seconds_count",
            "latency": "kn_queueproxy_app_duration_seconds",
            "latencyUnit": "seconds",
            "namespaceLabel": "namespace",
            "configurationLabel": "configuration",
            "revisionLabel": "revision",
            "statusLabel": "code",
            "errorMatcher": "5[0-9]{2}",
        }
    )
    names = {"namespace": NAMESPACE, "configuration": CONFIGURATION, "revision": "r-1"}
    query = builtin_query("request-success-rate", interval="1m", profile=profile, **names)
    assert 'kn_queueproxy_app_duration_seconds_count{namespace="default"' in query
    assert 'revision="r-1", code!~"5[0-9]{2}"' in query


def test_profile_refuses_names_promql_cannot_hold() -> None:
    """A metric or label name Prometheus would not accept is refused when the policy loads."""
    fields = KNATIVE_OTEL.model_dump(by_alias=True)
    with pytest.raises(ValidationError, match="revisionLabel"):
        MetricsProfile.model_validate(fields | {"revisionLabel": 'kn"revision'})
    with pytest.raises(ValidationError, match="errorMatcher"):
        MetricsProfile.model_validate(fields | {"errorMatcher": "5(.."})


def test_names_that_would_break_promql_are_refused() -> None:
    """A revision name with a quote is a ConfigError, never spliced into a query."""
    with pytest.raises(ConfigError, match="not a Kubernetes object name"):
        builtin_query(
            "request-latency",
            namespace=NAMESPACE,
            configuration=CONFIGURATION,
            revision='r"} or vector(1) #',
            interval="1m",
        )


# -- verdicts from a fake source -----------------------------------------------------------------


class FakeSource:
    """A MetricsSource answering by the revision a query names; records the queries."""

    def __init__(self, values: Mapping[str, list[float]]) -> None:
        self.values = values
        self.queries: list[str] = []

    def query(self, promql: str) -> list[MetricSample]:
        self.queries.append(promql)
        revision = next(name for name in self.values if f'"{name}"' in promql)
        return [MetricSample({}, value) for value in self.values[revision]]


def _evaluate(source: Any, *checks: MetricCheck, canary: str = FLAKY) -> list[Any]:
    return evaluate_checks(
        source,
        checks,
        canary_revision=canary,
        primary_revision=SLOW if canary != SLOW else FLAKY,
        namespace=NAMESPACE,
        configuration=CONFIGURATION,
        inference_service=ISVC,
    )


SUCCESS = MetricCheck(name="request-success-rate", builtin="request-success-rate", min=99)


def test_pass_summary_reads_well() -> None:
    """A pass names the value, the threshold and the primary's value."""
    [result] = _evaluate(FakeSource({FLAKY: [99.4], SLOW: [99.9]}), SUCCESS)
    assert (result.gate, result.verdict) == ("prometheus/request-success-rate", Verdict.PASS)
    assert result.summary == "request-success-rate 99.4% (min 99%) vs primary 99.9%"
    assert result.values == {"canary": 99.4, "primary": 99.9}


def test_fail_summary_says_what_broke() -> None:
    """A fail adds each threshold the canary broke."""
    check = MetricCheck(name="latency", builtin="request-latency", max=500, max_increase=0.1)
    [result] = _evaluate(FakeSource({FLAKY: [612.0], SLOW: [380.0]}), check)
    assert result.verdict == Verdict.FAIL
    assert result.summary == (
        "latency p99 612 ms (max 500 ms, max +10% vs primary) vs primary 380 ms: "
        "above max 500 ms; 61.1% over primary (max +10%)"
    )


def test_decrease_from_the_primary_is_judged() -> None:
    """maxDecrease compares with the primary's value, here a fall from 100 % to 97 %."""
    check = MetricCheck(name="success", builtin="request-success-rate", max_decrease=0.01)
    [result] = _evaluate(FakeSource({FLAKY: [97.0], SLOW: [100.0]}), check)
    assert result.verdict == Verdict.FAIL
    assert result.summary.endswith(": 3% below primary (max −1%)")


@pytest.mark.parametrize(
    ("values", "summary"),
    [
        ([], f"request-success-rate: no data for {FLAKY} over 1m"),
        ([math.nan], f"request-success-rate: NaN for {FLAKY} over 1m (no requests in the window?)"),
        ([math.inf], f"request-success-rate: +Inf for {FLAKY} over 1m (a division by zero?)"),
        ([1.0, 2.0], f"request-success-rate: 2 series for {FLAKY} over 1m, expected one"),
    ],
)
def test_canary_without_a_number_is_inconclusive(values: list[float], summary: str) -> None:
    """No data, NaN, Inf or several series are inconclusive, and the summary says which."""
    [result] = _evaluate(FakeSource({FLAKY: values, SLOW: [100.0]}), SUCCESS)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.summary.startswith(summary)


def test_relative_threshold_needs_the_primary() -> None:
    """Without data for the primary, a relative threshold is inconclusive."""
    check = MetricCheck(name="latency", builtin="request-latency", max_increase=0.1)
    [result] = _evaluate(FakeSource({FLAKY: [10.0], SLOW: []}), check)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.summary == f"latency: no data for {SLOW} over 1m (the primary revision)"


def test_absolute_threshold_ignores_a_primary_without_data() -> None:
    """An absolute threshold is judged without the primary, which is left out of the summary."""
    [result] = _evaluate(FakeSource({FLAKY: [99.5], SLOW: []}), SUCCESS)
    assert (result.verdict, result.summary) == (
        Verdict.PASS,
        "request-success-rate 99.5% (min 99%)",
    )


def test_duplicate_check_names_are_a_config_error() -> None:
    """Two checks with one name would report one gate twice."""
    with pytest.raises(ConfigError, match="request-success-rate are named twice"):
        _evaluate(FakeSource({}), SUCCESS, SUCCESS)


def test_histogram_is_differenced_and_kept_monotonic() -> None:
    """Cumulative le buckets become per-bucket counts; rounding dips never go negative."""
    buckets = {"5": 10.4, "10": 10.2, "20": 30.6, "+Inf": 31.0}

    class Source:
        def query(self, promql: str) -> list[MetricSample]:
            if "by (le)" in promql:
                return [MetricSample({"le": le}, value) for le, value in buckets.items()]
            return [MetricSample({}, 2.4 if '=~"5xx"' in promql else 31.2)]

    traffic = revision_traffic(
        Source(),
        revision=FLAKY,
        namespace=NAMESPACE,
        configuration=CONFIGURATION,
        interval="1m",
        profile=KNATIVE_OPENCENSUS,
    )
    assert traffic is not None
    assert (traffic.requests, traffic.errors) == (31, 2)
    assert traffic.latency is not None
    assert traffic.latency.bounds == (5.0, 10.0, 20.0, math.inf)
    assert traffic.latency.counts == (10, 0, 21, 0)


def test_histogram_in_seconds_is_judged_in_milliseconds() -> None:
    """The OTel histogram's le bounds are seconds; the judge gets milliseconds."""
    buckets = {"0.005": 3.0, "0.05": 9.0, "10": 10.0, "+Inf": 10.0}

    class Source:
        def query(self, promql: str) -> list[MetricSample]:
            if "kn_serving_invocation_duration_seconds_bucket" in promql:
                return [MetricSample({"le": le}, value) for le, value in buckets.items()]
            return [MetricSample({}, 1.0 if 'status_code=~"5.."' in promql else 10.0)]

    traffic = revision_traffic(
        Source(), revision=FLAKY, namespace=NAMESPACE, configuration=CONFIGURATION, interval="1m"
    )
    assert traffic is not None
    assert (traffic.requests, traffic.errors) == (10, 1)
    assert traffic.latency is not None
    assert traffic.latency.bounds == (5.0, 50.0, 10000.0, math.inf)
    assert traffic.latency.counts == (3, 6, 1, 0)


def test_unreachable_prometheus_is_an_error_not_a_judgement() -> None:
    """A stopped Prometheus makes every check an error (the tool did not work, nothing was
    learnt about the model), naming where it should run."""
    url = f"http://127.0.0.1:{free_port()}"
    latency = MetricCheck(name="latency", builtin="request-latency", max=100)
    results = _evaluate(PrometheusSource(url), SUCCESS, latency)
    assert [r.verdict for r in results] == [Verdict.ERROR] * 2
    assert results[1].summary == (
        f"latency: Prometheus at {url} is unreachable (connection refused); "
        f"check that Prometheus runs at {url}"
    )


# -- against a real Prometheus scraping the router -----------------------------------------------
# Marked slow: the shared scenario takes about 10 s to set up, 5 of them Prometheus's delay
# before it scrapes a new target for the first time.


class Upstream(http.server.ThreadingHTTPServer):
    """A stand-in model server: slow by ``delay`` seconds, or failing every ``fail_every``-th."""

    daemon_threads = True

    def __init__(self, *, delay: float = 0.0, fail_every: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.delay, self.fail_every, self.seen = delay, fail_every, 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per response: no Nagle stall on the router's keep-alive
    server: Upstream

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.seen += 1
            fail = self.server.fail_every and self.server.seen % self.server.fail_every == 0
        time.sleep(self.server.delay)
        body = b'{"predictions": [0]}'
        self.send_response(500 if fail else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Seen:
    """What the clients of one revision saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def success_percent(self) -> float:
        return 100 * (self.requests - self.statuses[500]) / self.requests

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[math.ceil(0.99 * len(ordered)) - 1]


@dataclass
class Scenario:
    """The shared scenario: a source on the Prometheus, and what clients saw per revision."""

    source: PrometheusSource
    seen: dict[str, Seen]
    #: From a revision's first requests until Prometheus returns its series.
    seconds_to_series: float
    #: From the start of steady load until both revisions have a finite success rate.
    seconds_to_rate: float


def _send(connection: http.client.HTTPConnection, tag: str, seen: Seen) -> None:
    started = time.perf_counter()
    connection.request("POST", f"/v1/models/{ISVC}:predict", b"{}", {TAG_HEADER: tag})
    response = connection.getresponse()
    response.read()
    seen.latencies_ms.append((time.perf_counter() - started) * 1000)
    seen.statuses[response.status] += 1


def _poll(check: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    """Seconds until ``check`` held."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"Prometheus never showed {what}")
        time.sleep(0.2)
    return time.monotonic() - started


def _has_rate(source: PrometheusSource, revision: str) -> bool:
    promql = builtin_query(
        "request-success-rate",
        namespace=NAMESPACE,
        configuration=CONFIGURATION,
        revision=revision,
        interval="1m",
    )
    return any(math.isfinite(s.value) for s in source.query(promql))


def _totals(source: PrometheusSource) -> dict[str, float]:
    totals = source.query("sum by (kn_revision_name)(kn_serving_invocation_duration_seconds_count)")
    return {sample.labels["kn_revision_name"]: sample.value for sample in totals}


def _client_totals(seen: Mapping[str, Seen]) -> dict[str, float]:
    return {revision: float(s.requests) for revision, s in seen.items()}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Load both revisions until Prometheus has rates and 3 s have passed, then stop."""
    slow, flaky = Upstream(delay=SLOW_SECONDS), Upstream(fail_every=4)
    for upstream in (slow, flaky):
        threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    root = tmp_path_factory.mktemp("prometheus-checks")
    with Router(isvc=ISVC, namespace=NAMESPACE, seed=7) as router:
        router.set_routes(
            [TrafficTarget(SLOW, slow.url, 100, "prev"), TrafficTarget(FLAKY, flaky.url, 0, "l")]
        )
        config = write_prometheus_config(
            root / "prometheus.yml",
            scrape_targets={"router": [f"127.0.0.1:{router.port}"]},
            alertmanager_url=None,
            rule_files=[],
        )
        prometheus = start_prometheus(config_file=config, data_dir=root / "data", log_dir=root)
        source = PrometheusSource(prometheus.url)
        seen = {SLOW: Seen(), FLAKY: Seen()}
        stop = threading.Event()
        # Prime every series (200s and the flaky 500) before the load: increase() cannot see
        # what a counter held at its first scrape, so that is kept to these 5 requests.
        # Prometheus takes up to 5 s to scrape a new target at all; a new revision of a target
        # it already scrapes appears at the next scrape, which is what a rollout sees.
        _poll(lambda: [s.value for s in source.query('up{job="router"}')] == [1.0], "the router")
        connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
        for revision, tag, times in ((SLOW, "prev", 1), (FLAKY, "l", 4)):
            for _ in range(times):
                _send(connection, tag, seen[revision])
        connection.close()
        seconds_to_series = _poll(lambda: _totals(source) == _client_totals(seen), "the series")

        def load(revision: str, tag: str) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
            while not stop.is_set():
                _send(connection, tag, seen[revision])
                time.sleep(0.002)

        loaders = [
            threading.Thread(target=load, args=(SLOW, "prev"), daemon=True),
            threading.Thread(target=load, args=(FLAKY, "l"), daemon=True),
        ]
        started = time.monotonic()
        for loader in loaders:
            loader.start()
        try:
            seconds_to_rate = _poll(
                lambda: _has_rate(source, SLOW) and _has_rate(source, FLAKY), "rates"
            )
            time.sleep(max(0.0, 3.0 - (time.monotonic() - started)))
        finally:
            stop.set()
            for loader in loaders:
                loader.join()
        client = _client_totals(seen)
        _poll(lambda: _totals(source) == client, f"the clients' totals {client}")
        yield Scenario(source, seen, seconds_to_series, seconds_to_rate)
        source.close()
        prometheus.stop()
    for upstream in (slow, flaky):
        upstream.shutdown()
        upstream.server_close()


def _expected(passes: bool) -> Verdict:
    return Verdict.PASS if passes else Verdict.FAIL


@pytest.mark.slow
def test_success_rate_matches_what_clients_saw(scenario: Scenario) -> None:
    """min 99 % fails the flaky canary and passes the slow one, as the clients' rates say."""
    flaky, slow = scenario.seen[FLAKY], scenario.seen[SLOW]
    [as_canary] = _evaluate(scenario.source, SUCCESS, canary=FLAKY)
    [as_primary] = _evaluate(scenario.source, SUCCESS, canary=SLOW)
    assert as_canary.verdict == _expected(flaky.success_percent >= 99) == Verdict.FAIL
    assert as_primary.verdict == _expected(slow.success_percent >= 99) == Verdict.PASS
    assert as_canary.values["canary"] == pytest.approx(flaky.success_percent, abs=3)
    assert as_canary.values["primary"] == 100.0
    assert as_canary.summary.startswith("request-success-rate 7")
    assert as_canary.summary.endswith("(min 99%) vs primary 100%: below min 99%")


@pytest.mark.slow
def test_latency_matches_what_clients_saw(scenario: Scenario) -> None:
    """p99 at most 40 ms fails the 60 ms revision and passes the fast one."""
    check = MetricCheck(name="request-latency", builtin="request-latency", max=40)
    flaky, slow = scenario.seen[FLAKY], scenario.seen[SLOW]
    [fast_canary] = _evaluate(scenario.source, check, canary=FLAKY)
    [slow_canary] = _evaluate(scenario.source, check, canary=SLOW)
    assert fast_canary.verdict == _expected(flaky.p99_ms <= 40) == Verdict.PASS
    assert slow_canary.verdict == _expected(slow.p99_ms <= 40) == Verdict.FAIL
    # The router times each request within what its client timed, so the p99 lies at most at
    # the top of the bucket (knative-otel's) that holds the slowest request a client saw: 75 ms
    # when none took longer, more on a loaded machine (CI saw 88 ms against a bound of 80).
    top = next(b * 1000 for b in OTEL_BUCKETS_SECONDS if b * 1000 >= max(slow.latencies_ms))
    assert 60 < slow_canary.values["canary"] <= top


@pytest.mark.slow
def test_relative_thresholds_compare_with_the_primary(scenario: Scenario) -> None:
    """Slower than the primary by more than maxIncrease fails; faster passes."""
    check = MetricCheck(name="latency", builtin="request-latency", max_increase=0.5)
    [slow_canary] = _evaluate(scenario.source, check, canary=SLOW)
    [fast_canary] = _evaluate(scenario.source, check, canary=FLAKY)
    assert slow_canary.verdict == Verdict.FAIL
    assert "over primary (max +50%)" in slow_canary.summary
    assert fast_canary.verdict == Verdict.PASS


@pytest.mark.slow
def test_user_query_template_is_rendered_and_judged(scenario: Scenario) -> None:
    """A 5xx-ratio template with {{ revision }} fails the flaky canary against its primary."""
    query = (
        "(sum(rate(kn_serving_invocation_duration_seconds_count{"
        "k8s_namespace_name='{{ namespace }}', kn_revision_name='{{ revision }}', "
        "http_response_status_code=~'5..'}[{{ interval }}])) or vector(0))"
        " / sum(rate(kn_serving_invocation_duration_seconds_count{"
        "kn_revision_name='{{ revision }}'}[{{ interval }}]))"
    )
    check = MetricCheck(name="error-ratio", query=query, max=0.05)
    [result] = _evaluate(scenario.source, check, canary=FLAKY)
    assert result.verdict == Verdict.FAIL
    expected = 1 - scenario.seen[FLAKY].success_percent / 100
    assert result.values["canary"] == pytest.approx(expected, abs=0.03)


@pytest.mark.slow
def test_revision_without_traffic_is_inconclusive(scenario: Scenario) -> None:
    """A revision that served nothing has no data: inconclusive, not a pass."""
    [result] = _evaluate(scenario.source, SUCCESS, canary=IDLE)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.summary == f"request-success-rate: no data for {IDLE} over 1m"


@pytest.mark.slow
def test_too_few_requests_is_inconclusive(scenario: Scenario) -> None:
    """Below minRequests the rate is not judged."""
    check = MetricCheck(
        name="request-success-rate", builtin="request-success-rate", min=99, min_requests=10**6
    )
    [result] = _evaluate(scenario.source, check, canary=FLAKY)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.summary.endswith(f"requests to {FLAKY} over 1m (minRequests 1000000)")


@pytest.mark.slow
def test_query_error_is_an_error_with_prometheus_message(scenario: Scenario) -> None:
    """A template that does not parse is an error (not a judgement of the model), quoting
    Prometheus's parse error."""
    check = MetricCheck(name="broken", query="sum(rate(x{r='{{ revision }}'}[1m])", max=1)
    [result] = _evaluate(scenario.source, check)
    assert result.verdict == Verdict.ERROR
    assert "fix the query: " in result.summary
    assert "unclosed left parenthesis" in result.summary


@pytest.mark.slow
def test_revision_traffic_matches_what_clients_saw(scenario: Scenario) -> None:
    """Requests, 5xx errors and latencies per revision agree with the clients' counts."""
    traffic = {
        revision: revision_traffic(
            scenario.source,
            revision=revision,
            namespace=NAMESPACE,
            configuration=CONFIGURATION,
            interval="1m",
        )
        for revision in (SLOW, FLAKY)
    }
    for revision, seen in scenario.seen.items():
        measured = traffic[revision]
        assert measured is not None
        # increase() misses what a series counted before its first scrape and extrapolates.
        assert measured.requests == pytest.approx(seen.requests, rel=0.15)
        assert measured.errors / measured.requests == pytest.approx(
            seen.statuses[500] / seen.requests, abs=0.03
        )
        assert measured.latency is not None
        # Two series, each extrapolated by increase() from its own samples and rounded on its
        # own: counts agree to ~1 %, or to one request when there are few (CI: 50 against 49).
        assert measured.latency.total == pytest.approx(measured.requests, rel=0.02, abs=1)
    slow = traffic[SLOW]
    assert slow is not None
    assert slow.latency is not None
    bounds, counts = slow.latency.bounds, slow.latency.counts
    above_60 = sum(c for b, c in zip(bounds, counts, strict=True) if b > 60)
    assert above_60 >= 0.95 * slow.latency.total


@pytest.mark.slow
def test_revision_traffic_without_traffic_is_none(scenario: Scenario) -> None:
    """A revision that served nothing has no traffic to judge."""
    assert (
        revision_traffic(
            scenario.source,
            revision=IDLE,
            namespace=NAMESPACE,
            configuration=CONFIGURATION,
            interval="1m",
        )
        is None
    )


@pytest.mark.slow
def test_a_new_revision_has_a_rate_within_seconds(scenario: Scenario) -> None:
    """Scraping every second, a new revision has a rate within 3 s of its first requests."""
    assert scenario.seconds_to_series + scenario.seconds_to_rate < 3


def test_a_young_step_compares_both_revisions_over_its_own_life() -> None:
    """A step 25 s old is judged on the same 25 s for canary and primary, not a minute of the
    primary against the canary's few seconds (a transient would weigh on the canary alone)."""
    seen: list[str] = []

    class Recording:
        def query(self, promql: str) -> list[MetricSample]:
            seen.append(promql)
            return [MetricSample({}, 40.0)]

    latency = MetricCheck(name="latency", builtin="request-latency", max=500, max_increase=0.5)
    common = {
        "canary_revision": FLAKY,
        "primary_revision": SLOW,
        "namespace": NAMESPACE,
        "configuration": CONFIGURATION,
        "inference_service": ISVC,
    }
    [young] = evaluate_checks(Recording(), [latency], max_window_seconds=25.7, **common)
    assert young.verdict == Verdict.PASS
    assert len(seen) == 2
    assert all("[25s]" in promql for promql in seen), seen
    seen.clear()
    evaluate_checks(Recording(), [latency], max_window_seconds=600, **common)
    assert all("[1m]" in promql for promql in seen), seen


@pytest.mark.parametrize(
    ("canary_ms", "verdict"),
    [
        # CI rolled this good canary back at the former p95 +300 % over the primary: under the
        # load test's 4 concurrent users its one process queued on 2 shared cores.
        (69.0, Verdict.PASS),
        (310.0, Verdict.FAIL),  # a model adding 300 ms to every answer
    ],
)
def test_the_local_overlays_latency_check_judges_the_model_not_the_queue(
    canary_ms: float, verdict: Verdict
) -> None:
    """The shipped local environment's request-latency check, as `make demo` runs it."""
    root = Path(__file__).resolve().parents[1]
    checks = load_environment(root, "local").rollout.gates.metrics
    latency = [check for check in checks if check.name == "request-latency"]
    source = FakeSource({FLAKY: [canary_ms], SLOW: [12.67]})
    [result] = _evaluate(source, *latency)
    assert result.verdict == verdict, result.summary
