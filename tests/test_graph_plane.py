"""The runtime's InferenceGraphs: admission, KServe's reconcile, status and health, removal.

Member InferenceServices are stand-ins behind real local routers (:mod:`support.graph_members`)
whose objects the tests hand to each pass, as the runtime hands its InferenceServices'.
"""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.graph_members import Member, members
from support.graph_samples import BY_ROUTE_SWITCH as SWITCH
from support.graph_samples import graph

from controller.local.graph_plane import AppliedGraph, GraphPlane, graph_refusal
from controller.local.processes import free_port


@pytest.fixture
def team() -> Iterator[dict[str, Member]]:
    with members("alpha", "beta", "gamma") as started:
        yield started


@pytest.fixture
def plane() -> Iterator[GraphPlane]:
    ports: dict[str, int] = {}
    started = GraphPlane(lambda key: ports.setdefault(key, free_port()))
    yield started
    started.shutdown()


def post(plane: GraphPlane, payload: Any) -> tuple[int, Any]:
    router = plane.graphs["by-route"].router
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=10)
    connection.request("POST", "/", json.dumps(payload).encode())
    response = connection.getresponse()
    status, body = response.status, json.loads(response.read())
    connection.close()
    return status, body


def condition(graph_obj: AppliedGraph, kind: str) -> str:
    conditions = (graph_obj.status or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == kind), "-")


def test_graph_waits_for_its_services_then_is_ready_and_healthy(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """No status and 503 while a member has no endpoint; Ready, Healthy and served after."""
    assert plane.apply(copy.deepcopy(SWITCH)) == "created"
    healths = plane.reconcile([team["alpha"].obj(ready=False), team["beta"].obj()])
    applied = plane.graphs["by-route"]
    assert applied.status is None
    assert healths["by-route"][0] == "Progressing"
    assert applied.problem == "service alpha is not ready"
    assert post(plane, {"route": "a"})[0] == 503

    healths = plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    assert healths["by-route"] == ("Healthy", "InferenceGraph is ready.")
    assert condition(applied, "Ready") == "True"
    assert applied.status is not None
    assert applied.status["url"] == applied.router.url
    assert applied.problem == ""
    assert post(plane, {"route": "b"}) == (200, {"predictions": [{"member": "beta"}]})


def test_a_service_that_does_not_exist_is_kserves_error(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """A serviceName with no InferenceService leaves the graph without status."""
    plane.apply(copy.deepcopy(SWITCH))
    plane.reconcile([team["alpha"].obj()])
    assert plane.graphs["by-route"].problem == "Failed to find graph service beta"


def test_only_services_of_the_graphs_namespace_count(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """An InferenceService of another namespace does not resolve a step."""
    plane.apply(copy.deepcopy(SWITCH))
    elsewhere = team["beta"].obj() | {"metadata": {"name": "beta", "namespace": "other"}}
    plane.reconcile([team["alpha"].obj(), elsewhere])
    assert plane.graphs["by-route"].problem == "Failed to find graph service beta"


def test_a_new_spec_deploys_only_once_its_services_resolve(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """While the new spec's service is missing the old deployment answers; then revision 2."""
    plane.apply(copy.deepcopy(SWITCH))
    plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    changed = copy.deepcopy(SWITCH)
    changed["spec"]["nodes"]["root"]["steps"][1]["serviceName"] = "gamma"
    assert plane.apply(changed) == "configured"
    plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    applied = plane.graphs["by-route"]
    assert applied.router.deployment is not None
    assert applied.router.deployment.revision == "by-route-00001"
    assert post(plane, {"route": "b"})[1] == {"predictions": [{"member": "beta"}]}
    assert condition(applied, "Ready") == "True"  # KServe leaves the status as it was

    plane.reconcile([m.obj() for m in team.values()])
    assert applied.router.deployment.revision == "by-route-00002"
    assert post(plane, {"route": "b"})[1] == {"predictions": [{"member": "gamma"}]}
    assert applied.generation == 2


def test_stopped_graph_is_suspended_and_answers_503(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """The stop annotation: Stopped True, Ready False, Suspended, no answers."""
    plane.apply(copy.deepcopy(SWITCH))
    plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    stopped = copy.deepcopy(SWITCH)
    stopped["metadata"]["annotations"] = {"serving.kserve.io/stop": "true"}
    plane.apply(stopped)
    healths = plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    applied = plane.graphs["by-route"]
    assert healths["by-route"] == ("Suspended", "InferenceGraph is Stopped")
    assert (condition(applied, "Stopped"), condition(applied, "Ready")) == ("True", "False")
    assert post(plane, {"route": "a"})[0] == 503


def test_removed_graph_stops_answering(plane: GraphPlane, team: dict[str, Member]) -> None:
    """A graph deleted from Git loses its router."""
    plane.apply(copy.deepcopy(SWITCH))
    plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    port = plane.graphs["by-route"].router.port
    plane.remove("by-route")
    assert plane.graphs == {}
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("POST", "/", b"{}")


def test_a_resumed_graph_serves_again_under_its_revision(
    plane: GraphPlane, team: dict[str, Member]
) -> None:
    """After a restart the same deployment comes back as the same router revision."""
    plane.apply(copy.deepcopy(SWITCH))
    plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    before = plane.graphs.pop("by-route")
    before.router.stop()
    plane.resume(
        AppliedGraph(
            before.document, plane.new_router(before.document), before.generation,
            before.status, counter=before.counter, deployed=before.deployed,
        )
    )  # fmt: skip
    plane.reconcile([team["alpha"].obj(), team["beta"].obj()])
    deployment = plane.graphs["by-route"].router.deployment
    assert deployment is not None
    assert deployment.revision == "by-route-00001"
    assert post(plane, {"route": "a"})[0] == 200


def test_admission_is_the_clusters_not_sluices() -> None:
    """The CRD's schema and KServe's webhook refuse; Sluice's own rules do not (a cluster
    applies a graph whose nodeName names no node, and its router answers 500)."""
    misspelt = copy.deepcopy(SWITCH)
    misspelt["spec"]["nodes"]["root"]["steps"][0]["stepName"] = "x"
    assert "stepName" in graph_refusal(misspelt)
    dangling = graph("dangling", {"root": {"routerType": "Sequence", "steps": [{"nodeName": "x"}]}})
    assert graph_refusal(dangling) == ""
