"""An InferenceGraph committed to the GitOps repo, served by the local runtime end to end.

One runtime process syncs an overlay of two InferenceServices (real model servers of one
small registered model) and three graphs: a Switch on a JSON field between them, and two
Sequences that hand the first one's V1 answer to the second, with and without KServe's
``mapPredictionsToInstances``. The test walks what a user sees: the graph Progressing until
its members serve, then Healthy with a URL; the Switch's routing, its 404, the per-member step
metrics and the members' own revision counts; the V1 shape; a change of the Switch committed
in canary form (``sluice graph propose``'s), split by weight and counted per branch; and the
graph gone with its router once it leaves Git.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.gitops_repo import commit_to_remote
from support.gitrepo import create_git_remote
from support.graph_samples import BY_ROUTE_SWITCH as SWITCH
from support.graph_samples import graph
from support.runtime_loop import (
    DEADLINE,
    KUSTOMIZATION,
    OVERLAY,
    Loop,
    register_uris,
    within_binomial,
)

from controller.local.services import MlflowService
from controller.manifests.graph_canary import canary_form

pytestmark = pytest.mark.slow

MEMBERS = ("alpha", "beta")


def chain(name: str, *, mapped: bool) -> dict[str, Any]:
    """alpha, then beta on alpha's V1 answer (``data: $response``)."""
    second: dict[str, Any] = {"serviceName": "beta", "data": "$response"}
    if mapped:
        second["mapPredictionsToInstances"] = True
    steps = [{"serviceName": "alpha"}, second]
    return graph(name, {"root": {"routerType": "Sequence", "steps": steps}})


GRAPHS = {"by-route": SWITCH, "mapped": chain("mapped", mapped=True)}
GRAPHS["unmapped"] = chain("unmapped", mapped=False)
#: The Switch with its members swapped: route a reaches beta.
SWAPPED = graph(
    "by-route",
    {
        "root": {
            "routerType": "Switch",
            "steps": [
                {"serviceName": "beta", "condition": '[@this].#(route=="a")'},
                {"serviceName": "alpha", "condition": '[@this].#(route=="b")'},
            ],
        }
    },
)
CANARY_REQUESTS = 100


def isvc(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": uri}}},
    }


def push(loop: Loop, message: str, graphs: dict[str, dict[str, Any]]) -> str:
    def change(tree: Path) -> None:
        overlay = tree / OVERLAY
        overlay.mkdir(parents=True, exist_ok=True)
        for old in overlay.glob("*.yaml"):
            old.unlink()
        documents = {name: isvc(name, loop.uris[0]) for name in MEMBERS}
        for name, obj in graphs.items():
            metadata = {k: v for k, v in obj["metadata"].items() if k != "namespace"}
            documents[f"graph-{name}"] = {**obj, "metadata": metadata}
        for name, document in documents.items():
            (overlay / f"{name}.yaml").write_text(json.dumps(document, indent=2))
        resources = "".join(f"  - {name}.yaml\n" for name in documents)
        (overlay / "kustomization.yaml").write_text(KUSTOMIZATION + resources)

    return commit_to_remote(loop.remote, loop.workdir, message, change)


def graph_entry(loop: Loop, name: str = "by-route") -> dict[str, Any]:
    return dict((loop.state().get("inferenceGraphs") or {}).get(name) or {})


def post(url: str, payload: Any) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/", json.dumps(payload).encode())
    response = connection.getresponse()
    status, body = response.status, json.loads(response.read())
    connection.close()
    return status, body


def scrape(url: str) -> list[Any]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def branch_counts(url: str) -> dict[str, float]:
    """The root Splitter's answers per step, from the router's branch series."""
    return {
        s.labels["step_name"]: s.value
        for s in scrape(url)
        if s.name == "sluice_graph_branch_duration_seconds_count"
        and s.labels["node_name"] == "root"
    }


def check_canary_form(loop: Loop, url: str) -> None:
    """The graph's canary form, committed: served as a new revision, split by weight, each
    branch counted in the branch series and its member's step calls."""
    push(loop, "graph by-route -> local (canary 30%)", {**GRAPHS, "by-route": canary_form(
        SWITCH, SWAPPED, 30
    )})  # fmt: skip
    deadline = time.monotonic() + DEADLINE
    while not branch_counts(url):  # the Switch alone has no node step
        assert time.monotonic() < deadline, "the canary form was never served"
        assert post(url, {"route": "a", "instances": [[42.0, 3]]})[0] == 200
        time.sleep(0.2)
    before = branch_counts(url)
    for _ in range(CANARY_REQUESTS):
        assert post(url, {"route": "a", "instances": [[42.0, 3]]})[0] == 200
    after = branch_counts(url)
    stable = after.get("stable", 0) - before.get("stable", 0)
    canary = after.get("canary", 0) - before.get("canary", 0)
    assert stable + canary == CANARY_REQUESTS
    assert within_binomial(int(canary), CANARY_REQUESTS, 0.3), canary
    calls = {
        (s.labels["node_name"], s.labels["service_name"]): s.value
        for s in scrape(url)
        if s.name == "sluice_graph_step_duration_seconds_count"
    }
    assert calls[("canary", "beta")] == after["canary"]  # the new graph sends route a to beta
    assert calls[("stable", "alpha")] == after["stable"]


def test_a_graph_in_git_is_served_routed_counted_and_removed(
    mlflow_server: MlflowService, tmp_path: Path
) -> None:
    """Progressing then Healthy; routes by field, 404s, counts per member; V1 shape; pruned."""
    uris = register_uris(mlflow_server.tracking_uri, f"graph-{uuid.uuid4().hex[:8]}", count=1)
    loop = Loop(
        create_git_remote(tmp_path), tmp_path / "state", tmp_path / "work", uris,
        mlflow_server.tracking_uri,
    )  # fmt: skip
    push(loop, "Serve two models and three graphs", GRAPHS)
    loop.start(poll_interval=0.5)
    try:
        healths: list[str] = []
        deadline = time.monotonic() + DEADLINE
        while (entry := graph_entry(loop)).get("health", {}).get("status") != "Healthy":
            if entry.get("health"):
                healths.append(entry["health"]["status"])
            assert time.monotonic() < deadline, f"the graph never became Healthy: {entry}"
            assert loop.process is not None
            assert loop.process.alive, loop.process.log_tail()
            time.sleep(0.2)
        assert healths, "the graph was never seen before it was Healthy"
        assert set(healths) == {"Progressing"}  # no status until its members serve
        ready = {c["type"]: c["status"] for c in entry["object"]["status"]["conditions"]}
        assert ready["Ready"] == "True"
        url = entry["url"]
        assert entry["object"]["status"]["url"] == url

        for route in ("a", "a", "a", "b", "b"):
            status, body = post(url, {"route": route, "instances": [[42.0, 3]]})
            assert status == 200
            assert len(body["predictions"]) == 1
        assert post(url, {"route": "z", "instances": [[42.0, 3]]}) == (
            404,
            {
                "error": "Failed to process request",
                "cause": "None of the routes matched with the switch condition",
            },
        )
        steps = {
            s.labels["service_name"]: s.value
            for s in scrape(url)
            if s.name == "sluice_graph_step_duration_seconds_count"
        }
        assert steps == {"alpha": 3, "beta": 2}

        mapped, unmapped = graph_entry(loop, "mapped"), graph_entry(loop, "unmapped")
        assert post(mapped["url"], {"instances": [[42.0, 3]]})[0] == 200
        status, body = post(unmapped["url"], {"instances": [[42.0, 3]]})
        assert status == 400
        assert "instances" in json.dumps(body)

        state = loop.state()
        for name, expected in (("alpha", 3 + 2), ("beta", 2 + 2)):
            member_url = state["inferenceServices"][name]["url"]
            counted = [
                s.value
                for s in scrape(member_url)
                if s.name == "kn_serving_invocation_duration_seconds_count"
            ]
            assert sum(counted) == expected, name  # the graph's calls pass through its route
        resources = state["application"]["status"]["resources"]
        graphs = {
            r["name"]: r["health"]["status"] for r in resources if r["kind"] == "InferenceGraph"
        }
        assert graphs == {"by-route": "Healthy", "mapped": "Healthy", "unmapped": "Healthy"}

        check_canary_form(loop, url)

        push(loop, "Stop routing by field", {})
        deadline = time.monotonic() + DEADLINE
        while loop.state().get("inferenceGraphs"):
            assert time.monotonic() < deadline, "the graphs were never pruned"
            time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError):
            post(url, {"route": "a"})
        kinds = {r["kind"] for r in loop.state()["application"]["status"]["resources"]}
        assert kinds == {"InferenceService"}
    finally:
        assert loop.process is not None
        loop.process.stop()
