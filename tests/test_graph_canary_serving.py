"""A graph canary served by the local runtime's graph plane: split by weight, counted per branch.

The runtime applies whatever graph Git holds; a graph canary is just a graph with a Splitter at
its root (:mod:`controller.manifests.graph_canary`). Members are stand-in model servers behind
real local routers (:mod:`support.graph_members`), so each request takes milliseconds.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.graph_members import Member, members
from support.graph_samples import graph

from controller.gates.metrics_profile import KNATIVE_OPENCENSUS
from controller.local.graph_metrics import BranchCall
from controller.local.graph_plane import GraphPlane
from controller.local.processes import free_port
from controller.manifests.graph_canary import canary_form, promoted

OLD = graph(
    "by-route",
    {
        "root": {"routerType": "Sequence", "steps": [{"name": "ask", "nodeName": "pick"}]},
        "pick": {
            "routerType": "Switch",
            "steps": [{"name": "a", "serviceName": "alpha", "condition": '[@this].#(route=="a")'}],
        },
    },
)
NEW = graph(
    "by-route",
    {
        "root": {"routerType": "Sequence", "steps": [{"name": "ask", "nodeName": "pick"}]},
        "pick": {
            "routerType": "Switch",
            "steps": [{"name": "a", "serviceName": "beta", "condition": '[@this].#(route=="a")'}],
        },
    },
)
REQUESTS = 400


@pytest.fixture
def team() -> Iterator[dict[str, Member]]:
    with members("alpha", "beta") as started:
        yield started


@pytest.fixture
def plane() -> Iterator[GraphPlane]:
    ports: dict[str, int] = {}
    started = GraphPlane(lambda key: ports.setdefault(key, free_port()))
    yield started
    started.shutdown()


def post(connection: http.client.HTTPConnection) -> Any:
    connection.request("POST", "/", json.dumps({"route": "a"}).encode())
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def send(plane: GraphPlane, count: int) -> dict[str, int]:
    """``count`` requests to the graph; how many each member answered."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", plane.graphs["by-route"].router.port, timeout=10
    )
    answered = {"alpha": 0, "beta": 0}
    for _ in range(count):
        answered[post(connection)["predictions"][0]["member"]] += 1
    connection.close()
    return answered


def test_a_canary_form_splits_by_weight_and_counts_each_branch(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    services = [m.obj() for m in team.values()]
    plane.apply(json.loads(json.dumps(OLD)))
    plane.reconcile(services)
    router = plane.graphs["by-route"].router
    assert send(plane, 5) == {"alpha": 5, "beta": 0}

    plane.apply(json.loads(json.dumps(canary_form(OLD, NEW, 25))))
    plane.reconcile(services)
    assert router.deployment is not None
    assert router.deployment.revision == "by-route-00002"  # the commit is a new revision
    answered = send(plane, REQUESTS)
    assert answered["alpha"] + answered["beta"] == REQUESTS
    assert 60 <= answered["beta"] <= 140  # 25 % of 400 is 100; sd 8.7

    branches = router.steps.branch_counts()
    now = [(b, n) for b, n in branches.items() if b.revision == "by-route-00002"]
    at_root = {b.step: n for b, n in now if b.node == "root"}
    assert at_root == {"stable": answered["alpha"], "canary": answered["beta"]}
    assert BranchCall("root", "canary", "canary", "by-route-00002", 200) in branches
    # The canary's own nodes are counted under their canary- names.
    assert (
        branches[BranchCall("canary", "ask", "canary-pick", "by-route-00002", 200)]
        == (answered["beta"])
    )

    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    samples = {
        (s.labels["step_name"], s.labels["target_node"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "sluice_graph_branch_duration_seconds_count"
        and s.labels["step_name"] in ("stable", "canary")
    }
    assert samples == {
        ("stable", "stable"): answered["alpha"],
        ("canary", "canary"): answered["beta"],
    }

    plane.apply(json.loads(json.dumps(promoted(canary_form(OLD, NEW, 25)))))
    plane.reconcile(services)
    assert router.deployment.revision == "by-route-00003"
    assert send(plane, 5) == {"alpha": 0, "beta": 5}


def test_branch_series_follow_the_environments_profile(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """Under knative-opencensus: milliseconds, a status class, Knative 1.18's label names."""
    plane.apply(json.loads(json.dumps(canary_form(OLD, NEW, 50))))
    plane.reconcile([m.obj() for m in team.values()])
    router = plane.graphs["by-route"].router
    router.set_metrics_profile(KNATIVE_OPENCENSUS)
    send(plane, 4)
    with urllib.request.urlopen(f"{router.url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    counts = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "sluice_graph_branch_request_latencies_count"
        and s.labels["node_name"] == "root"
    ]
    assert sum(s.value for s in counts) == 4
    assert {s.labels["response_code_class"] for s in counts} == {"2xx"}
    assert {s.labels["revision_name"] for s in counts} == {"by-route-00001"}
