"""A graph member's gate queries against a real Prometheus scraping a real graph router.

The volatile member has two revisions behind its own router (primary 70 %, canary 30 %); the
graph's Switch sends it the volatile rows and the calm member the calm ones, and clients also
call the volatile member directly, outside the graph. The per-step query of a release with
``graphTraffic`` must count, per revision, exactly the requests the graph sent that member:
neither the direct ones (which its revision series count) nor the calm member's.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.graph_members import StandInServer, isvc_object, members
from support.graph_samples import graph

from controller.backends.prometheus import PrometheusSource
from controller.gates.graph_traffic import GraphTraffic
from controller.gates.metrics_profile import KNATIVE_OTEL
from controller.gates.promql_queries import request_series
from controller.gates.revision_traffic import revision_request_counts
from controller.local.graph.endpoints import resolve_service_urls
from controller.local.graph.spec import parse_inference_graph
from controller.local.graph_router import GraphDeployment, GraphRouter
from controller.local.router import Router, TrafficTarget
from controller.local.services import PrometheusService

NAMESPACE = "models-local"
MEMBER = "market-regime-volatile"
PRIMARY, CANARY = f"{MEMBER}-predictor-00001", f"{MEMBER}-predictor-00002"
GRAPH = graph(
    "market-regime",
    {
        "root": {
            "routerType": "Switch",
            "steps": [
                {
                    "name": "calm",
                    "serviceName": "market-regime-calm",
                    "condition": '[@this].#(regime=="calm")',
                },
                {
                    "name": "volatile",
                    "serviceName": MEMBER,
                    "condition": '[@this].#(regime=="volatile")',
                },
            ],
        }
    },
)
VOLATILE = GraphTraffic(graph="market-regime", node="root", step="volatile")


def _serve(name: str) -> StandInServer:
    server = StandInServer(name)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


@pytest.fixture
def volatile() -> Iterator[tuple[Router, dict[str, StandInServer]]]:
    """The volatile member mid-rollout: two revisions, each its own stand-in server."""
    servers = {PRIMARY: _serve("primary"), CANARY: _serve("canary")}
    router = Router(isvc=MEMBER, namespace=NAMESPACE, seed=3).start()
    router.set_routes(
        [
            TrafficTarget(PRIMARY, servers[PRIMARY].url, 70, "prev"),
            TrafficTarget(CANARY, servers[CANARY].url, 30, "latest"),
        ]
    )
    try:
        yield router, servers
    finally:
        router.stop()
        for server in servers.values():
            server.shutdown()
            server.server_close()


def _post(port: int, path: str, payload: Any) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, json.dumps(payload).encode())
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def _poll(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus never showed {what}")
        time.sleep(0.25)


@pytest.mark.slow
def test_the_step_query_counts_per_revision_exactly_what_the_graph_sent_the_member(
    volatile: tuple[Router, dict[str, StandInServer]],
    prometheus_server: Callable[..., PrometheusService],
) -> None:
    member_router, servers = volatile
    with (
        members("market-regime-calm") as calm,
        GraphRouter(graph="market-regime", namespace=NAMESPACE) as router,
    ):
        parsed = parse_inference_graph(GRAPH)
        objects = {
            "market-regime-calm": calm["market-regime-calm"].obj(),
            MEMBER: isvc_object(MEMBER, member_router.url, NAMESPACE),
        }
        resolution = resolve_service_urls(parsed, objects)
        assert not resolution.problem
        router.deploy(GraphDeployment(parsed, resolution.urls, "market-regime-00001"))
        prometheus = prometheus_server(
            scrape_targets={
                "graph": [f"127.0.0.1:{router.port}"],
                "member": [f"127.0.0.1:{member_router.port}"],
            }
        )
        source = PrometheusSource(prometheus.url)

        def graph_sent() -> dict[str, int]:
            """What the graph's calls to the member each revision answered (its servers)."""
            return {revision: len(server.received) for revision, server in servers.items()}

        def totals() -> dict[str, float]:
            """The per-step series' counters, per revision, as the gates select them."""
            counted = {}
            for revision in (PRIMARY, CANARY):
                series = request_series(
                    KNATIVE_OTEL,
                    namespace=NAMESPACE,
                    configuration=f"{MEMBER}-predictor",
                    revision=revision,
                    graph=VOLATILE,
                    inference_service=MEMBER,
                )
                samples = source.query(f"sum({series.requests}{{{series.selector}}})")
                counted[revision] = samples[0].value if samples else 0.0
            return counted

        try:
            # Prime both revisions' series: increase() cannot see what a counter held at its
            # first scrape.
            while min(graph_sent().values()) == 0:
                assert _post(router.port, "/", {"regime": "volatile", "x": 1}) == 200
            primed = graph_sent()
            _poll(lambda: totals() == {r: float(n) for r, n in primed.items()}, "the primed calls")
            for i in range(60):
                regime = ("volatile", "calm")[i % 3 == 0]
                assert _post(router.port, "/", {"regime": regime, "x": i}) == 200
            sent = graph_sent()
            # Direct calls to the member, outside the graph: its revision series count them.
            for i in range(80):
                assert _post(member_router.port, f"/v1/models/{MEMBER}:predict", {"x": i}) == 200
            expected = {revision: float(n) for revision, n in sent.items()}
            _poll(lambda: totals() == expected, f"the graph's calls {expected}")
            assert sum(len(s.received) for s in servers.values()) == sum(sent.values()) + 80
            assert len(calm["market-regime-calm"].server.received) == 20
            # The judge's and the watch's counts: increase() over a window, as the gates read.
            batch = {revision: sent[revision] - primed[revision] for revision in sent}
            for revision in (PRIMARY, CANARY):
                requests, errors = revision_request_counts(
                    source,
                    revision=revision,
                    namespace=NAMESPACE,
                    configuration=f"{MEMBER}-predictor",
                    interval="30s",
                    graph=VOLATILE,
                    inference_service=MEMBER,
                )
                assert errors == 0
                # increase() extrapolates to the window's edges, by up to half a scrape
                # interval at each end: a third or so high on a series a few seconds old (the
                # rollout's windows are longer). The direct calls (80, split 70/30) would have
                # put either revision well past this.
                assert batch[revision] <= requests <= batch[revision] * 1.6 + 2, (
                    revision,
                    requests,
                    batch,
                )
        finally:
            source.close()
