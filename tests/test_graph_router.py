"""An InferenceGraph's local router: requests in, steps through the members' routers, metrics out.

Members are stand-in model servers behind real local routers (:mod:`support.graph_members`);
the graph router runs in this process. Each test is what a client of the graph, or a
Prometheus scraping it, sees.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.graph_members import Member, deploy, members
from support.graph_samples import graph

from controller.gates.metrics_profile import KNATIVE_OPENCENSUS
from controller.local.graph.spec import parse_inference_graph
from controller.local.graph_caller import parse_step_url
from controller.local.graph_metrics import StepCall
from controller.local.graph_router import GraphDeployment, GraphRouter

SWITCH = graph(
    "by-route",
    {
        "root": {
            "routerType": "Switch",
            "steps": [
                {"serviceName": "alpha", "name": "a", "condition": '[@this].#(route=="a")'},
                {"serviceName": "beta", "condition": '[@this].#(route=="b")'},
            ],
        }
    },
)
NO_MATCH = {
    "error": "Failed to process request",
    "cause": "None of the routes matched with the switch condition",
}


@pytest.fixture
def team() -> Iterator[dict[str, Member]]:
    with members("alpha", "beta") as started:
        yield started


@pytest.fixture
def router() -> Iterator[GraphRouter]:
    with GraphRouter(graph="by-route", namespace="models-local") as started:
        yield started


def post(
    router: GraphRouter, payload: Any, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    connection.request("POST", path, json.dumps(payload).encode(), headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, json.loads(body), dict(response.getheaders())


def scrape(router: GraphRouter) -> dict[str, list[Any]]:
    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_switch_routes_each_request_by_its_field_through_the_members_routers(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """route a reaches alpha, route b beta, each at its V1 predict path, via its own router."""
    deploy(router, SWITCH, team)
    a = post(router, {"route": "a", "instances": [[1, 2]]})
    b = post(router, {"route": "b", "instances": [[3, 4]]})
    assert (a[0], a[1]) == (200, {"predictions": [{"member": "alpha"}]})
    assert (b[0], b[1]) == (200, {"predictions": [{"member": "beta"}]})
    assert a[2]["Content-Type"] == "application/json"
    assert a[2]["X-Sluice-Revision"] == "by-route-00001"
    assert team["alpha"].server.received == [
        ("/v1/models/alpha:predict", {"route": "a", "instances": [[1, 2]]})
    ]
    assert team["alpha"].revision_counts() == {("alpha-predictor-00001", 200): 1}
    assert team["beta"].revision_counts() == {("beta-predictor-00001", 200): 1}


def test_only_the_configured_headers_reach_the_members(team: dict[str, Member]) -> None:
    """As KServe's router.headers.propagate: by default Authorization alone; a client's
    X-Request-Id reaches the member, and so its revision, once the setting adds it."""
    sent = {"Authorization": "Bearer t", "X-Request-Id": "req-1", "X-Other": "no"}
    with GraphRouter(graph="by-route") as default:
        deploy(default, SWITCH, team)
        assert post(default, {"route": "a"}, headers=sent)[0] == 200
    with GraphRouter(graph="by-route", propagate_headers=("Authorization", "X-Request-Id")) as ids:
        deploy(ids, SWITCH, team)
        assert post(ids, {"route": "a"}, headers=sent)[0] == 200
    first, second = team["alpha"].server.headers_received
    assert first["Authorization"] == second["Authorization"] == "Bearer t"
    assert first["X-Request-Id"] != "req-1"  # the member's router made its own
    assert second["X-Request-Id"] == "req-1"
    assert "X-Other" not in {**first, **second}


def test_no_matching_condition_answers_kserves_404(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """A request no condition matches is 404 with KServe's body, and reaches no member."""
    deploy(router, SWITCH, team)
    status, body, _ = post(router, {"route": "c"})
    assert (status, body) == (404, NO_MATCH)
    assert team["alpha"].server.received == team["beta"].server.received == []
    assert router.metrics.counts() == {("by-route-00001", 404): 1}


def test_step_calls_are_counted_per_node_step_member_and_revision(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """Each call is one series: node, step name (else index), member, its revision, code."""
    deploy(router, SWITCH, team)
    for route in ("a", "a", "b", "c"):
        post(router, {"route": route})
    assert router.steps.counts() == {
        StepCall("root", "a", "alpha", "", "alpha-predictor-00001", 200): 2,
        StepCall("root", "1", "beta", "", "beta-predictor-00001", 200): 1,
    }
    assert router.metrics.counts() == {("by-route-00001", 200): 3, ("by-route-00001", 404): 1}


def test_switch_decisions_are_counted_apart_from_a_members_404(router: GraphRouter) -> None:
    """The Switch counter has a series per chosen step and one, step_name "", for requests no
    condition matched: only those; a member's own 404 passing through counts as routed. It
    carries the profile's namespace label and starts again when the profile changes."""
    with members("alpha", "beta") as team:
        team["beta"].server.status = 404
        deploy(router, SWITCH, team)
        statuses = [post(router, {"route": route})[0] for route in ("a", "a", "b", "c")]
        assert statuses == [200, 200, 404, 404]
        samples = scrape(router)["sluice_graph_switch_requests"]
        assert {(s.name, s.labels["step_name"], s.value) for s in samples} == {
            ("sluice_graph_switch_requests_total", "a", 2),
            ("sluice_graph_switch_requests_total", "1", 1),
            ("sluice_graph_switch_requests_total", "", 1),
        }
        assert {s.labels["k8s_namespace_name"] for s in samples} == {"models-local"}
        assert {(s.labels["graph_name"], s.labels["node_name"]) for s in samples} == {
            ("by-route", "root")
        }
        router.set_metrics_profile(KNATIVE_OPENCENSUS)
        assert router.steps.switch_counts() == {}
        post(router, {"route": "c"})
        (unrouted,) = scrape(router)["sluice_graph_switch_requests"]
        assert unrouted.labels == {
            "namespace_name": "models-local", "graph_name": "by-route", "node_name": "root",
            "step_name": "",
        }  # fmt: skip


def test_metrics_follow_the_environments_profile(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """Under Knative 1.18's profile: a step counter and histogram in ms, and the graph's own
    revision series as its queue-proxy would export them."""
    router.set_metrics_profile(KNATIVE_OPENCENSUS)
    deploy(router, SWITCH, team)
    post(router, {"route": "b"})
    samples = scrape(router)
    (step,) = samples["sluice_graph_step_request_count"]
    assert step.labels == {
        "namespace_name": "models-local",
        "graph_name": "by-route",
        "node_name": "root",
        "step_name": "1",
        "service_name": "beta",
        "service_url": "",
        "revision_name": "beta-predictor-00001",
        "response_code_class": "2xx",
    }
    assert step.value == 1
    assert "sluice_graph_step_request_latencies" in samples
    (own,) = samples["revision_app_request_count"]
    assert own.labels["configuration_name"] == "by-route"
    assert own.labels["revision_name"] == "by-route-00001"


def test_default_profile_counts_steps_in_the_histograms_count(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """Under the default (OTel) profile the step histogram is in seconds; its _count counts."""
    deploy(router, SWITCH, team)
    post(router, {"route": "a"})
    samples = scrape(router)["sluice_graph_step_duration_seconds"]
    (count,) = [s for s in samples if s.name.endswith("_count")]
    assert (count.value, count.labels["http_response_status_code"]) == (1, "200")
    assert count.labels["kn_revision_name"] == "alpha-predictor-00001"


def test_undeployed_graph_answers_503_with_the_reason(router: GraphRouter) -> None:
    """Before its first deployment the graph answers 503 saying why."""
    router.deploy(None, "service alpha is not ready")
    status, body, _ = post(router, {"route": "a"})
    assert (status, body["cause"]) == (
        503,
        "InferenceGraph by-route is not ready: service alpha is not ready",
    )


def test_member_that_cannot_be_reached_fails_the_request_as_kserve_does(
    router: GraphRouter, team: dict[str, Member]
) -> None:
    """A refused connection is KServe's 500 with Go's cause, and a 502 step call."""
    deploy(router, SWITCH, team)
    url = f"{team['alpha'].router.url}/v1/models/alpha:predict"
    team["alpha"].router.stop()
    status, body, _ = post(router, {"route": "a"})
    assert (status, body) == (
        500,
        {
            "error": "Failed to process request",
            "cause": f'Post "{url}": dial tcp: connect: connection refused',
        },
    )
    assert router.steps.counts() == {StepCall("root", "a", "alpha", "", "", 502): 1}


def test_member_errors_pass_through_with_their_status(router: GraphRouter) -> None:
    """A member's 400 is the graph's answer (Switch passes any status on)."""
    with members("alpha", "beta", alpha={"error": "bad row"}) as team:
        team["alpha"].server.status = 400
        deploy(router, SWITCH, team)
        assert post(router, {"route": "a"})[:2] == (400, {"error": "bad row"})
        (call,) = router.steps.counts()
        assert call.code == 400


def test_sequence_maps_predictions_to_instances_only_when_asked() -> None:
    """``data: $response`` hands the next member ``{"predictions": ...}``; with
    ``mapPredictionsToInstances`` it gets ``{"instances": ...}`` (KServe's router)."""
    chain = graph(
        "chain",
        {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {"serviceName": "alpha"},
                    {"serviceName": "beta", "data": "$response"},
                    {"serviceName": "beta", "data": "$response", "mapPredictionsToInstances": True},
                ],
            }
        },
    )
    with members("alpha", "beta") as team, GraphRouter(graph="chain") as router:
        deploy(router, chain, team)
        assert post(router, {"instances": [[1]]})[0] == 200
        assert [body for _, body in team["beta"].server.received] == [
            {"predictions": [{"member": "alpha"}]},
            {"instances": [{"member": "beta"}]},
        ]


def test_step_urls_are_parsed_as_go_reads_them() -> None:
    """http URLs split into host, port and target; other schemes are Go's refusals."""
    assert parse_step_url("http://h:81/p?q=1") == ("h", 81, b"/p?q=1")
    assert parse_step_url("http://h") == ("h", 80, b"/")
    with pytest.raises(ValueError, match='unsupported protocol scheme "ftp"'):
        parse_step_url("ftp://h/x")


def test_nodes_that_loop_answer_500_rather_than_hang(router: GraphRouter) -> None:
    """A graph whose nodes reach themselves (KServe admits it; its router recurses until it
    crashes) answers 500, and the router goes on answering."""
    loop = graph("by-route", {"root": {"routerType": "Sequence", "steps": [{"nodeName": "root"}]}})
    router.deploy(GraphDeployment(parse_inference_graph(loop), {}, "by-route-00001"))
    status, body, _ = post(router, {})
    assert (status, body["cause"]) == (500, "the graph's nodes form a loop")
    assert post(router, {})[0] == 500
