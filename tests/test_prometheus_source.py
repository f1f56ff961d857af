"""PrometheusSource against a real Prometheus, and against stand-ins for what may sit in front."""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controller.analysis_types import MetricSample
from controller.backends.prometheus import PrometheusSource
from controller.errors import ConfigError, MetricsUnavailable
from controller.local.configs import write_prometheus_config
from controller.local.processes import free_port
from controller.local.services import PrometheusService, start_prometheus

TOKEN = "s3cr3t-prometheus-token"
QUERY = "/api/v1/query"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusService]:
    """One Prometheus without scrape targets for the module: queries only need its engine."""
    root = tmp_path_factory.mktemp("prometheus-source")
    config = write_prometheus_config(
        root / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    service = start_prometheus(config_file=config, data_dir=root / "data", log_dir=root)
    yield service
    service.stop()


@pytest.fixture
def source(prometheus: PrometheusService) -> Iterator[PrometheusSource]:
    with PrometheusSource(prometheus.url) as opened:
        yield opened


class Canned(http.server.ThreadingHTTPServer):
    """Answers each path with a canned (status, content type, body) and records headers."""

    daemon_threads = True

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.answers = answers
        self.headers_seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _CannedHandler(http.server.BaseHTTPRequestHandler):
    server: Canned

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.headers_seen.append(dict(self.headers))
        status, content_type, body = self.server.answers.get(
            self.path, (404, "text/plain", "404 page not found")
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[Any]:
    """Start a :class:`Canned` server per call; all are stopped after the test."""
    started: list[Canned] = []

    def start(answers: dict[str, tuple[int, str, str]]) -> Canned:
        server = Canned(answers)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _api(value: str) -> tuple[int, str, str]:
    body = {"status": "success", "data": {"resultType": "vector", "result": []}}
    body["data"]["result"] = [{"metric": {}, "value": [0, value]}]  # type: ignore[index]
    return 200, "application/json", json.dumps(body)


def _failure(source: PrometheusSource, promql: str = "vector(1)") -> str:
    with pytest.raises(MetricsUnavailable) as caught:
        source.query(promql)
    message = caught.value.message
    assert "\n" not in message
    return message


# -- answers -------------------------------------------------------------------------------------


def test_scalar_is_one_sample_without_labels(source: PrometheusSource) -> None:
    """A scalar result becomes one sample with empty labels."""
    assert source.query("1 + 1") == [MetricSample(labels={}, value=2.0)]


def test_vector_keeps_each_series_labels(source: PrometheusSource) -> None:
    """An instant vector becomes one sample per series, labels included."""
    promql = 'label_replace(vector(3), "revision_name", "r1", "", "")'
    assert source.query(promql) == [MetricSample(labels={"revision_name": "r1"}, value=3.0)]


def test_no_matching_series_is_an_empty_list(source: PrometheusSource) -> None:
    """A selector matching nothing answers an empty list, not an error."""
    assert source.query('revision_app_request_count{revision_name="none"}') == []


def test_nan_and_infinities_are_kept(source: PrometheusSource) -> None:
    """0/0, 1/0 and -1/0 come back as NaN, +inf and -inf for the gate to judge."""
    assert math.isnan(source.query("0/0")[0].value)
    assert source.query("1/0")[0].value == math.inf
    assert source.query("-1/0")[0].value == -math.inf


def test_long_queries_are_accepted(source: PrometheusSource) -> None:
    """A query longer than common URL limits (16 kB) is still evaluated."""
    long = "x" * 16_384
    promql = f'label_replace(vector(1), "long", "{long}", "", "")'
    assert source.query(promql) == [MetricSample(labels={"long": long}, value=1.0)]


def test_is_online_when_ready(source: PrometheusSource) -> None:
    """A running Prometheus is online."""
    assert source.is_online() is True


# -- failures ------------------------------------------------------------------------------------


def test_syntax_error_names_the_fix_and_prometheus_message(
    source: PrometheusSource, prometheus: PrometheusService
) -> None:
    """A parse error is MetricsUnavailable saying "fix the query" with Prometheus's message."""
    message = _failure(source, "sum(rate(revision_app_request_count[1m])")
    assert message == (
        f"Prometheus at {prometheus.url} rejected the query; fix the query: "
        "1:41: parse error: unclosed left parenthesis"
    )


def test_range_vector_result_is_refused(source: PrometheusSource) -> None:
    """A query answering a range vector is refused with the fix."""
    message = _failure(source, "revision_app_request_count[1m]")
    assert "answered a matrix" in message
    assert "fix the query" in message


def test_unreachable_prometheus_names_its_url(prometheus: PrometheusService) -> None:
    """Nothing listening: one line naming the URL, the cause and where to look."""
    url = f"http://127.0.0.1:{free_port()}"
    message = _failure(PrometheusSource(url))
    assert message == (
        f"Prometheus at {url} is unreachable (connection refused); "
        f"check that Prometheus runs at {url}"
    )
    assert PrometheusSource(url).is_online() is False


def test_silent_server_times_out() -> None:
    """A server that accepts but never answers is a timeout after timeout_seconds."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        message = _failure(PrometheusSource(url, timeout_seconds=0.2))
    assert message.startswith(f"Prometheus at {url} did not answer within 0.2 s; check that")


def test_proxy_error_page_is_a_one_line_failure(canned: Any) -> None:
    """An HTML 502 from a proxy in front of Prometheus names the status and the fix."""
    server = canned({QUERY: (502, "text/html", "<html>\n<h1>Bad gateway</h1>\n</html>")})
    message = _failure(PrometheusSource(server.url))
    assert message == (
        f"Prometheus at {server.url} answered HTTP 502; "
        f"check that Prometheus runs at {server.url} and is healthy"
    )


def test_wrong_service_is_named(canned: Any) -> None:
    """A 200 that is not the query API's JSON says the URL points elsewhere."""
    server = canned({QUERY: (200, "text/html", "<html>Grafana</html>")})
    message = _failure(PrometheusSource(server.url))
    assert "not the query API's JSON; check that the URL points at Prometheus" in message


def test_query_evaluation_timeout_is_named(canned: Any) -> None:
    """Prometheus giving up on an expensive query says so and how to fix it."""
    error = {"status": "error", "errorType": "timeout", "error": "query timed out in eval"}
    server = canned({QUERY: (503, "application/json", json.dumps(error))})
    message = _failure(PrometheusSource(server.url))
    assert "gave up on the query (timeout: query timed out in eval); make the query" in message


def test_bearer_token_is_sent(canned: Any) -> None:
    """The bearer token goes in the Authorization header."""
    server = canned({QUERY: _api("1")})
    PrometheusSource(server.url, bearer_token=TOKEN).query("vector(1)")
    assert server.headers_seen[-1]["Authorization"] == f"Bearer {TOKEN}"


def test_refused_token_never_appears(canned: Any) -> None:
    """A 401 says to check the token, without the token in the message or the repr."""
    server = canned({QUERY: (401, "text/plain", f"bad token {TOKEN}")})
    source = PrometheusSource(server.url, bearer_token=TOKEN)
    message = _failure(source)
    assert message == f"Prometheus at {server.url} refused the request (HTTP 401); " + (
        "check the bearer token"
    )
    assert TOKEN not in repr(source)


def test_url_credentials_are_redacted(prometheus: PrometheusService) -> None:
    """Credentials in the URL are masked in every message."""
    url = f"http://sluice:hunter2-password@127.0.0.1:{free_port()}"
    message = _failure(PrometheusSource(url))
    assert "hunter2" not in message
    assert "http://***@127.0.0.1:" in message


def test_online_falls_back_to_a_query_without_ready_endpoint(canned: Any) -> None:
    """Query APIs without /-/ready (404) are online when vector(1) answers 1."""
    server = canned({QUERY: _api("1")})
    assert PrometheusSource(server.url).is_online() is True


def test_non_http_url_is_a_config_error() -> None:
    """A URL that is not http(s) is refused before any request."""
    with pytest.raises(ConfigError, match="must be http"):
        PrometheusSource("prometheus:9090")


def test_path_prefix_is_kept(canned: Any) -> None:
    """A URL with a path prefix (Mimir's /prometheus) queries under that prefix."""
    server = canned({"/prometheus" + QUERY: _api("7")})
    assert PrometheusSource(f"{server.url}/prometheus/").query("x")[0].value == 7.0
