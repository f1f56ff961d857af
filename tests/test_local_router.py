"""The local router: weighted split, tag routes, Knative's metrics, and Prometheus reading them."""

from __future__ import annotations

import bisect
import http.client
import http.server
import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.gates.metrics_profile import KNATIVE_OPENCENSUS
from controller.local.processes import free_port
from controller.local.router import (
    OTEL_BUCKETS_SECONDS,
    TAG_HEADER,
    Router,
    TrafficTarget,
)
from controller.local.services import PrometheusService
from controller.synthetic_traffic import LOAD_TEST, SYNTHETIC_HEADER

SIGMAS = 4


class Upstream(http.server.ThreadingHTTPServer):
    """A stand-in model server that says who it is and which path it saw.

    With ``fail_every`` = k, every k-th request answers 500; ``delay`` seconds pass before
    each answer, as a model's prediction time.
    """

    daemon_threads = True

    def __init__(self, name: str, fail_every: int = 0, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.name = name
        self.fail_every = fail_every
        self.delay = delay
        self.seen = 0
        self.headers: list[Any] = []  # each request's headers, as received
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one write per response: no Nagle stall on the router's keep-alive
    server: Upstream

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.seen += 1
            self.server.headers.append(self.headers)
            fail = self.server.fail_every and self.server.seen % self.server.fail_every == 0
        body = json.dumps({"server": self.server.name, "path": self.path}).encode()
        if self.server.delay:
            time.sleep(self.server.delay)
        self.send_response(500 if fail else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstreams() -> Iterator[Callable[..., Upstream]]:
    """Start stand-in model servers in this process; all are stopped after the test."""
    started: list[Upstream] = []

    def start(name: str, fail_every: int = 0, delay: float = 0.0) -> Upstream:
        server = Upstream(name, fail_every, delay)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def router() -> Iterator[Router]:
    """A router for InferenceService ``fraud`` with a fixed seed."""
    with Router(isvc="fraud", seed=7) as started:
        yield started


class Client:
    """One keep-alive client connection to the router."""

    def __init__(self, router: Router) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)

    def send(self, path: str = "/v1/models/fraud:predict", **headers: str) -> tuple[int, Any]:
        body = b'{"instances": [[1, 2, 3]]}'
        headers = {"Content-Type": "application/json", **headers}
        self.connection.request("POST", path, body, headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())


def within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= SIGMAS * math.sqrt(n * p * (1 - p))


def metric_samples(router: Router) -> dict[str, list[Any]]:
    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


OTEL_DURATION = "kn_serving_invocation_duration_seconds"


def request_counts(router: Router) -> list[Any]:
    """The request counts of the default profile: the OTel histogram's _count samples."""
    samples = metric_samples(router)[OTEL_DURATION]
    return [s for s in samples if s.name == f"{OTEL_DURATION}_count"]


def test_weights_split_requests_within_binomial_bounds(router: Router, upstreams: Any) -> None:
    """At 90/10, 2000 requests land on each revision within 4 sigma of 1800/200."""
    old, new = upstreams("old"), upstreams("new")
    router.set_routes(
        [
            TrafficTarget("fraud-predictor-00002", new.url, 10),
            TrafficTarget("fraud-predictor-00001", old.url, 90),
        ]
    )
    client = Client(router)
    served = Counter(client.send()[1]["server"] for _ in range(2000))
    assert within_binomial(served["new"], 2000, 0.1), served
    assert served["old"] + served["new"] == 2000


def test_zero_percent_revision_gets_nothing(router: Router, upstreams: Any) -> None:
    """At 100/0 the 0 % revision never sees a request."""
    old, new = upstreams("old"), upstreams("new")
    router.set_routes(
        [TrafficTarget("r1", old.url, 100), TrafficTarget("r2", new.url, 0, "latest")]
    )
    client = Client(router)
    served = Counter(client.send()[1]["server"] for _ in range(500))
    assert served == {"old": 500}
    assert new.seen == 0


def test_tag_path_prefix_reaches_only_the_tagged_revision(router: Router, upstreams: Any) -> None:
    """`/_tag/<tag>/...` goes to the tagged revision, with the prefix removed."""
    old, new = upstreams("old"), upstreams("new")
    router.set_routes(
        [TrafficTarget("r1", old.url, 99, "prev"), TrafficTarget("r2", new.url, 1, "latest")]
    )
    client = Client(router)
    answers = [client.send("/_tag/latest/v1/models/fraud:predict?x=1")[1] for _ in range(50)]
    assert answers == [{"server": "new", "path": "/v1/models/fraud:predict?x=1"}] * 50


def test_tag_header_reaches_only_the_tagged_revision(router: Router, upstreams: Any) -> None:
    """The X-Sluice-Revision-Tag header routes to the tagged revision on any path."""
    old, new = upstreams("old"), upstreams("new")
    router.set_routes(
        [TrafficTarget("r1", old.url, 1, "prev"), TrafficTarget("r2", new.url, 99, "latest")]
    )
    client = Client(router)
    served = Counter(client.send(**{TAG_HEADER: "prev"})[1]["server"] for _ in range(50))
    assert served == {"old": 50}


def test_synthetic_header_reaches_the_revision_and_is_counted(
    router: Router, upstreams: Any
) -> None:
    """X-Sluice-Synthetic is forwarded to the model server, and the request counts as any other."""
    old, new = upstreams("old"), upstreams("new")
    router.set_routes(
        [TrafficTarget("r1", old.url, 100, "prev"), TrafficTarget("r2", new.url, 0, "latest")]
    )
    client = Client(router)
    for _ in range(3):
        client.send("/_tag/latest/v1/models/fraud:predict", **{SYNTHETIC_HEADER: LOAD_TEST})
    assert [headers.get_all(SYNTHETIC_HEADER) for headers in new.headers] == [[LOAD_TEST]] * 3
    counts = request_counts(router)
    assert [(s.labels["kn_revision_name"], s.value) for s in counts] == [("r2", 3)]


def test_unknown_tag_is_not_found(router: Router, upstreams: Any) -> None:
    """A tag no revision carries answers 404 and reaches no revision."""
    old = upstreams("old")
    router.set_routes([TrafficTarget("r1", old.url, 100, "prev")])
    assert Client(router).send("/_tag/latest/v1/models/fraud:predict")[0] == 404
    assert old.seen == 0


def test_without_routes_the_router_answers_unavailable(router: Router) -> None:
    """Before any revision is ready, requests get 503."""
    assert Client(router).send()[0] == 503


def test_metrics_count_requests_by_revision_and_code(router: Router, upstreams: Any) -> None:
    """By default the router exports current Knative's OTel histogram: its _count per
    revision and status code is what clients saw, labelled as a Prometheus that promotes
    the OTel resource attributes stores it."""
    good, flaky = upstreams("good"), upstreams("flaky", fail_every=4)
    router.set_routes([TrafficTarget("r1", good.url, 50), TrafficTarget("r2", flaky.url, 50)])
    client = Client(router)
    seen = Counter()
    for _ in range(400):
        status, answer = client.send()
        seen[(answer["server"], status)] += 1
    counts = {
        (
            s.labels["k8s_namespace_name"],
            s.labels["kn_configuration_name"],
            s.labels["kn_revision_name"],
            s.labels["http_response_status_code"],
        ): s.value
        for s in request_counts(router)
    }
    assert counts == {
        ("default", "fraud-predictor", "r1", "200"): seen[("good", 200)],
        ("default", "fraud-predictor", "r2", "200"): seen[("flaky", 200)],
        ("default", "fraud-predictor", "r2", "500"): seen[("flaky", 500)],
    }
    assert seen[("flaky", 500)] > 0
    assert "revision_app_request_count" not in metric_samples(router)


def test_opencensus_profile_exports_knative_118_metrics(upstreams: Any) -> None:
    """Under knative-opencensus the router exports Knative 1.18's counter, with the code's
    class, and its millisecond histogram; switching profiles starts the series again."""
    good, flaky = upstreams("good"), upstreams("flaky", fail_every=2)
    with Router(isvc="fraud", seed=7, metrics_profile=KNATIVE_OPENCENSUS) as router:
        router.set_routes([TrafficTarget("r1", good.url, 50), TrafficTarget("r2", flaky.url, 50)])
        client = Client(router)
        seen = Counter()
        for _ in range(100):
            status, answer = client.send()
            seen[(answer["server"], status)] += 1
        samples = metric_samples(router)
        counts = {
            (
                s.labels["namespace_name"],
                s.labels["revision_name"],
                s.labels["response_code_class"],
            ): s.value
            for s in samples["revision_app_request_count"]
        }
        assert counts == {
            ("default", "r1", "2xx"): seen[("good", 200)],
            ("default", "r2", "2xx"): seen[("flaky", 200)],
            ("default", "r2", "5xx"): seen[("flaky", 500)],
        }
        bounds = {
            s.labels["le"] for s in samples["revision_app_request_latencies"] if "le" in s.labels
        }
        assert {"5", "100000", "+Inf"} <= bounds
        assert OTEL_DURATION not in samples
        router.metrics.set_profile(KNATIVE_OPENCENSUS.model_copy(update={"latency": "x"}))
        assert metric_samples(router)["revision_app_request_count"] == []


def test_latency_histogram_counts_every_request(router: Router, upstreams: Any) -> None:
    """The latency histogram's count per revision equals its requests, and +Inf holds them all;
    its buckets are current Knative's, in seconds."""
    old = upstreams("old")
    router.set_routes([TrafficTarget("r1", old.url, 100)])
    client = Client(router)
    for _ in range(120):
        client.send()
    samples = metric_samples(router)[OTEL_DURATION]
    count = next(s.value for s in samples if s.name.endswith("_count"))
    infinite = next(s.value for s in samples if s.labels.get("le") == "+Inf")
    buckets = sorted(float(s.labels["le"]) for s in samples if s.name.endswith("_bucket"))
    assert count == infinite == 120
    assert buckets == [*OTEL_BUCKETS_SECONDS, math.inf]
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    assert 0 < total < 120 * 1.0  # seconds: 120 local requests take well under a second each


def test_unreachable_revision_answers_502_and_is_counted(router: Router) -> None:
    """A revision whose server is down answers 502, counted with status code 502."""
    router.set_routes([TrafficTarget("r1", f"http://127.0.0.1:{free_port()}", 100)])
    client = Client(router)
    statuses = Counter(client.send()[0] for _ in range(3))
    assert statuses == {502: 3}
    counts = request_counts(router)
    assert [(s.labels["http_response_status_code"], s.value) for s in counts] == [("502", 3)]


def test_routes_change_without_dropping_connections(router: Router, upstreams: Any) -> None:
    """set_routes takes effect for the next request on an open connection."""
    old, new = upstreams("old"), upstreams("new")
    router.set_routes([TrafficTarget("r1", old.url, 100)])
    client = Client(router)
    assert client.send()[1]["server"] == "old"
    router.set_routes([TrafficTarget("r2", new.url, 100)])
    assert client.send()[1]["server"] == "new"


# -- Prometheus ----------------------------------------------------------------------------------


SUCCESS_RATE = (
    "sum by (kn_revision_name)"
    f'(rate({OTEL_DURATION}_count{{http_response_status_code=~"2.."}}[1m]))'
    f" / sum by (kn_revision_name)(rate({OTEL_DURATION}_count[1m]))"
)

# In milliseconds, from the histogram's counters themselves, not their rate as the gates read
# them: each test has its own router, so the counters hold exactly the requests the client
# timed (TOTALS checks that). A rate counts only the requests between the window's first and
# last scrape; Prometheus starts after the clients here, and on a loaded machine that left a
# few requests, one stall among them, against the client's hundreds (CI: 24 ms against 351).
P99_LATENCY = (
    f"histogram_quantile(0.99, sum by (kn_revision_name, le)({OTEL_DURATION}_bucket)) * 1000"
)
TOTALS = f"sum by (kn_revision_name)({OTEL_DURATION}_count)"


def query(prometheus: PrometheusService, promql: str) -> dict[str, float]:
    """Instant query; {kn_revision_name: value}."""
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        result = json.loads(response.read())["data"]["result"]
    return {r["metric"].get("kn_revision_name", ""): float(r["value"][1]) for r in result}


def poll(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus never showed {what}")
        time.sleep(0.5)


def test_prometheus_reads_success_rate_per_revision(
    router: Router, upstreams: Any, prometheus_server: Callable[..., PrometheusService]
) -> None:
    """Prometheus scraping the router sees the per-revision counts and success rates clients saw."""
    good, flaky = upstreams("good"), upstreams("flaky", fail_every=4)
    router.set_routes([TrafficTarget("r1", good.url, 70), TrafficTarget("r2", flaky.url, 30)])
    seen: Counter[tuple[str, int]] = Counter()
    stop = threading.Event()

    def load() -> None:
        client = Client(router)
        while not stop.is_set():
            status, answer = client.send()
            seen[(answer["server"], status)] += 1
            time.sleep(0.002)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        prometheus = prometheus_server(scrape_targets={"router": [f"127.0.0.1:{router.port}"]})
        poll(
            lambda: set(query(prometheus, SUCCESS_RATE)) == {"r1", "r2"},
            "a rate for both revisions",
        )
    finally:
        stop.set()
        loader.join()
    totals = TOTALS
    client_totals = {"r1": seen[("good", 200)], "r2": seen[("flaky", 200)] + seen[("flaky", 500)]}
    poll(lambda: query(prometheus, totals) == client_totals, f"the client's totals {client_totals}")
    success = query(prometheus, SUCCESS_RATE)
    assert success["r1"] == 1.0
    assert success["r2"] == pytest.approx(seen[("flaky", 200)] / client_totals["r2"], abs=0.03)


DELAYS_MS = {"fast": 12.0, "slow": 105.0}


BUCKETS_MS = [bound * 1000 for bound in OTEL_BUCKETS_SECONDS]


def knative_bucket(latency_ms: float) -> tuple[float, float]:
    """The bounds (lower, upper] in ms of the Knative latency bucket that holds ``latency_ms``."""
    i = bisect.bisect_left(BUCKETS_MS, latency_ms)
    lower = BUCKETS_MS[i - 1] if i else 0.0
    return lower, BUCKETS_MS[i] if i < len(BUCKETS_MS) else math.inf


def nearest_rank(values: list[float], q: float) -> float:
    return sorted(values)[math.ceil(q * len(values)) - 1]


def test_prometheus_p99_latency_per_revision_lies_in_the_clients_bucket(
    router: Router, upstreams: Any, prometheus_server: Callable[..., PrometheusService]
) -> None:
    """Prometheus's p99 per revision falls in the Knative bucket of the p99 the client measured."""
    # Delays just above a bucket's lower bound, so the p99 keeps clear of the upper one: at
    # 5 ms the (5, 10] bucket's top is within a loaded machine's scheduling jitter.
    fast = upstreams("fast", delay=DELAYS_MS["fast"] / 1000)
    slow = upstreams("slow", delay=DELAYS_MS["slow"] / 1000)
    router.set_routes([TrafficTarget("r1", fast.url, 50), TrafficTarget("r2", slow.url, 50)])
    latencies: dict[str, list[float]] = {"fast": [], "slow": []}
    stop = threading.Event()

    def load() -> None:
        client = Client(router)
        while not stop.is_set():
            started = time.perf_counter()
            status, answer = client.send()
            assert status == 200
            latencies[answer["server"]].append((time.perf_counter() - started) * 1000)

    loaders = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for loader in loaders:
        loader.start()
    try:
        prometheus = prometheus_server(scrape_targets={"router": [f"127.0.0.1:{router.port}"]})
        poll(
            lambda: (
                set(query(prometheus, P99_LATENCY)) == {"r1", "r2"}
                and min(len(v) for v in latencies.values()) >= 300
            ),
            "a p99 for both revisions after 300 requests each",
        )
    finally:
        stop.set()
        for loader in loaders:
            loader.join()
    client_totals = {"r1": len(latencies["fast"]), "r2": len(latencies["slow"])}
    totals = TOTALS
    poll(lambda: query(prometheus, totals) == client_totals, f"the client's totals {client_totals}")
    p99 = query(prometheus, P99_LATENCY)
    for revision, server in (("r1", "fast"), ("r2", "slow")):
        client_p99 = nearest_rank(latencies[server], 0.99)
        # The router times a request from its arrival to its answer; the clients, threads of
        # this process, add their own queueing on a loaded machine. So the router's p99 lies
        # between the bucket of the upstream's fixed delay (no request is faster) and the
        # bucket of the p99 the client saw.
        floor = knative_bucket(DELAYS_MS[server])[0]
        ceiling = knative_bucket(client_p99)[1]
        print(f"{revision}: client p99 {client_p99:.2f} ms, Prometheus {p99[revision]:.2f} ms")
        assert floor <= p99[revision] <= ceiling, (revision, client_p99, p99)
    assert knative_bucket(nearest_rank(latencies["fast"], 0.99)) != knative_bucket(
        nearest_rank(latencies["slow"], 0.99)
    )


def live_counts(router: Router, since: float) -> tuple[int, Any]:
    url = f"{router.url}/_sluice/requests?since={since}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_live_counts_answer_each_revisions_codes_with_no_scrape_between(
    router: Router, upstreams: Any
) -> None:
    """What the watch reads between analyses: every answer since a time, per revision and
    code, tag routes included, the moment it was sent."""
    good, flaky = upstreams("good"), upstreams("flaky", fail_every=4)
    router.set_routes(
        [TrafficTarget("r1", good.url, 50), TrafficTarget("r2", flaky.url, 50, tag="latest")]
    )
    since = time.time()
    client = Client(router)
    seen: Counter[tuple[str, int]] = Counter()
    for _ in range(100):
        status, answer = client.send()
        seen[(answer["server"], status)] += 1
    for _ in range(8):
        status, answer = client.send("/_tag/latest/v1/models/fraud:predict")
        seen[(answer["server"], status)] += 1
    status, body = live_counts(router, since)
    assert status == 200
    expected = {
        "r1": {"200": seen[("good", 200)]},
        "r2": {"200": seen[("flaky", 200)], "500": seen[("flaky", 500)]},
    }
    assert body["revisions"] == expected
    assert live_counts(router, time.time() + 5)[1]["revisions"] == {}
    assert live_counts(router, float("nan"))[0] == 400
    assert live_counts(router, "yesterday")[0] == 400  # type: ignore[arg-type]
