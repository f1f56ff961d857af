"""Sluice's graph router as KServe's router image: started as KServe's controller starts it.

The process gets what a cluster gives it (``--graph-json`` with every ``serviceName`` step's
``serviceUrl`` filled in, ``PROPAGATE_HEADERS``, Knative's ``K_REVISION`` and ``K_SERVICE``)
plus the overrides a test needs: ``SLUICE_GRAPH_ROUTER_PORT`` (KServe's port is a fixed 8080),
``SLUICE_NAMESPACE`` (a cluster's router finds it in the members' URLs) and
``SLUICE_DRAIN_SECONDS`` (KServe's router drains 30 s). The members are stand-in model servers
behind real local routers (:mod:`support.graph_members`), which name their revision in
``X-Sluice-Revision`` as Sluice's model server does on a cluster.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.graph_members import Member, members

from controller.gates.metrics_profile import KNATIVE_OPENCENSUS, KNATIVE_OTEL
from controller.local.kserve_graph_router import (
    KSERVE_ROUTER_PORT,
    KServeGraphRouter,
    RouterSetupError,
    cluster_deployment,
    router_settings,
)
from controller.local.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "models-local"
ROUTER_REVISION = "by-route-00003"
NO_MATCH_CAUSE = "None of the routes matched with the switch condition"


def kserve_spec(team: dict[str, Member]) -> dict[str, Any]:
    """A graph canary's shape as KServe hands it to the router: a root Splitter whose
    ``stable`` step routes to a Switch over two members, their URLs filled in."""

    def url(name: str) -> str:
        return f"{team[name].router.url}/v1/models/{name}:predict"

    return {
        "nodes": {
            "root": {
                "routerType": "Splitter",
                "steps": [{"name": "stable", "nodeName": "by-route", "weight": 100}],
            },
            "by-route": {
                "routerType": "Switch",
                "steps": [
                    {
                        "name": "a",
                        "serviceName": "alpha",
                        "serviceUrl": url("alpha"),
                        "condition": '[@this].#(route=="a")',
                    },
                    {
                        "serviceName": "beta",
                        "serviceUrl": url("beta"),
                        "condition": '[@this].#(route=="b")',
                    },
                ],
            },
        },
        "routerTimeouts": {"serviceClient": 10},
    }


@pytest.fixture
def team() -> Iterator[dict[str, Member]]:
    with members("alpha", "beta") as started:
        yield started


def start_router(spec: dict[str, Any], port: int, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "K_REVISION": ROUTER_REVISION,
        "K_SERVICE": "by-route",
        "K_CONFIGURATION": "by-route",
        "PROPAGATE_HEADERS": "Authorization,X-Request-Id",
        "SLUICE_NAMESPACE": NAMESPACE,
        "SLUICE_GRAPH_ROUTER_PORT": str(port),
        "SLUICE_DRAIN_SECONDS": "1",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "controller.local.kserve_graph_router",
         "--graph-json", json.dumps(spec)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def call(
    port: int, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = None if payload is None else json.dumps(payload).encode()
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    return response.status, answer, dict(response.getheaders())


def wait_ready(router: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if call(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        assert router.poll() is None, router.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the router did not become ready"
        time.sleep(0.1)


def samples(port: int) -> dict[str, list[Any]]:
    status, text, headers = call(port, "GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(text.decode())
    return {family.name: family.samples for family in families}


def test_the_router_serves_kserves_contract_and_exports_the_step_series(
    team: dict[str, Member],
) -> None:
    """Requests follow KServe's semantics; /metrics has the step series labelled with the member
    revision that answered, the branch series with the router's own revision, no request
    series; /readyz is 200 until SIGTERM, 503 while draining, and the process then exits 0."""
    port = free_port()
    router = start_router(kserve_spec(team), port)
    try:
        wait_ready(router, port)
        # Any path is the graph's; KServe's propagate patterns pick the headers passed on.
        status, body, headers = call(
            port, "POST", "/", {"route": "a", "instances": [[1]]},
            {"X-Request-Id": "r-1", "X-Other": "kept back"},
        )  # fmt: skip
        assert (status, json.loads(body)) == (200, {"predictions": [{"member": "alpha"}]})
        assert headers["X-Sluice-Revision"] == ROUTER_REVISION
        ((path, received),) = team["alpha"].server.received
        assert (path, received) == ("/v1/models/alpha:predict", {"route": "a", "instances": [[1]]})
        sent = team["alpha"].server.headers_received[0]
        assert sent["X-Request-Id"] == "r-1"
        assert "X-Other" not in sent
        status, body, _ = call(port, "POST", "/v1/models/by-route:predict", {"route": "b"})
        assert (status, json.loads(body)) == (200, {"predictions": [{"member": "beta"}]})
        # A Switch that matches nothing, under a Splitter: KServe's nested 500.
        status, body, _ = call(port, "POST", "/", {"route": "c"})
        assert status == 500
        assert json.loads(body)["cause"] == NO_MATCH_CAUSE

        scraped = samples(port)
        steps = {
            (s.labels["step_name"], s.labels["service_name"], s.labels["kn_revision_name"]): s
            for s in scraped["sluice_graph_step_duration_seconds"]
            if s.name.endswith("_count")
        }
        assert set(steps) == {
            ("a", "alpha", "alpha-predictor-00001"),
            ("1", "beta", "beta-predictor-00001"),
        }
        for sample in steps.values():
            assert sample.value == 1
            assert sample.labels["k8s_namespace_name"] == NAMESPACE
            assert sample.labels["graph_name"] == "by-route"
            assert sample.labels["node_name"] == "by-route"
            assert sample.labels["service_url"] == ""  # as locally: a serviceName step
            assert sample.labels["http_response_status_code"] == "200"
        branches = [
            s for s in scraped["sluice_graph_branch_duration_seconds"] if s.name.endswith("_count")
        ]
        assert {
            (s.labels["step_name"], s.labels["target_node"], s.labels["kn_revision_name"],
             s.labels["http_response_status_code"], s.value)
            for s in branches
        } == {
            ("stable", "by-route", ROUTER_REVISION, "200", 2),
            ("stable", "by-route", ROUTER_REVISION, "500", 1),
        }  # fmt: skip
        assert all(s.labels["k8s_namespace_name"] == NAMESPACE for s in branches)
        switched = {s.labels["step_name"]: s.value for s in scraped["sluice_graph_switch_requests"]}
        assert switched == {"a": 1, "1": 1, "": 1}
        # The queue-proxy in front of the router counts the graph's requests, not the router.
        assert "kn_serving_invocation_duration_seconds" not in scraped

        router.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while (answer := call(port, "GET", "/readyz"))[0] != 503:
            assert time.monotonic() < deadline, "/readyz stayed 200 after SIGTERM"
            time.sleep(0.05)
        assert answer[1] == b"shutting down\n"
        assert router.wait(timeout=15) == 0
    finally:
        router.kill()
        router.wait()


def test_a_spec_that_is_no_graph_exits_as_kserves_router_does() -> None:
    """Malformed ``--graph-json`` exits 1; an unknown metrics profile exits 2, naming it."""
    port = free_port()
    for spec, env, code, said in (
        ("{not json", {}, 1, "failed to unmarshall inference graph json"),
        ('{"nodes": 3}', {}, 1, "failed to unmarshall inference graph json"),
        ('{"nodes": {}}', {"SLUICE_METRICS_PROFILE": "statsd"}, 2, "'statsd' is not one of"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "controller.local.kserve_graph_router", "--graph-json", spec],
            env={**os.environ, "PYTHONPATH": str(ROOT), "SLUICE_GRAPH_ROUTER_PORT": str(port),
                 **env},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == code, result.stderr
        assert said in result.stderr


def test_settings_come_from_kserve_and_knative_else_from_the_pod(tmp_path: Path) -> None:
    """KServe's port and drain, no propagated header without PROPAGATE_HEADERS; without
    Knative (RawDeployment), the graph is the pod's Deployment, the revision one per spec, the
    namespace the members' cluster-local URLs'."""
    spec = {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {
                        "serviceName": "fraud",
                        "serviceUrl": "http://fraud.models-prod.svc.cluster.local/v1/models/fraud:predict",
                    }
                ],
            }
        }
    }
    text = json.dumps(spec)
    absent = tmp_path / "namespace"
    raw = router_settings(text, spec, {"HOSTNAME": "fraud-graph-7d9c6b5f4-x2k9p"}, absent)
    assert (raw.graph, raw.namespace, raw.port, raw.drain_seconds) == (
        "fraud-graph", "models-prod", KSERVE_ROUTER_PORT, 30.0,
    )  # fmt: skip
    assert raw.revision.startswith("fraud-graph-")
    assert len(raw.revision) == len("fraud-graph-") + 10
    assert raw.revision == router_settings(text, spec, {"HOSTNAME": "fraud-graph-1-abcde"}).revision
    assert raw.propagate_headers == ()
    assert raw.profile == KNATIVE_OTEL
    absent.write_text("from-the-file\n")
    knative = router_settings(
        text, spec,
        {"K_SERVICE": "fraud-graph", "K_REVISION": "fraud-graph-00002",
         "PROPAGATE_HEADERS": "Authorization,(unclosed", "SLUICE_METRICS_PROFILE":
         "knative-opencensus"},
        absent,
    )  # fmt: skip
    assert (knative.graph, knative.revision, knative.namespace) == (
        "fraud-graph", "fraud-graph-00002", "from-the-file",
    )  # fmt: skip
    assert knative.propagate_headers == ("Authorization",)
    assert knative.profile == KNATIVE_OPENCENSUS
    with pytest.raises(RouterSetupError, match="SLUICE_DRAIN_SECONDS"):
        router_settings(text, spec, {"SLUICE_DRAIN_SECONDS": "soon"}, absent)


def test_a_service_name_step_without_a_url_fails_as_in_kserves_router(
    team: dict[str, Member],
) -> None:
    """KServe's router calls only ``serviceUrl``: a ``serviceName`` step the controller did not
    fill in is a failed call (500), counted as a 502 step call of the member."""
    spec = kserve_spec(team)
    del spec["nodes"]["by-route"]["steps"][1]["serviceUrl"]
    text = json.dumps(spec)
    settings = router_settings(
        text, spec, {"K_SERVICE": "by-route", "K_REVISION": ROUTER_REVISION,
                     "SLUICE_NAMESPACE": NAMESPACE, "SLUICE_GRAPH_ROUTER_PORT": str(free_port())},
    )  # fmt: skip
    deployment = cluster_deployment(spec, settings)
    assert deployment.urls == {"alpha": f"{team['alpha'].router.url}/v1/models/alpha:predict"}
    assert deployment.timeout == 10.0
    with KServeGraphRouter(settings, host="127.0.0.1") as router:
        router.deploy(deployment)
        status, body, _ = call(router.port, "POST", "/", {"route": "b"})
        assert status == 500
        assert json.loads(body)["cause"] == 'Post "": unsupported protocol scheme ""'
        assert call(router.port, "GET", "/readyz")[:2] == (200, b"")
        (calls,) = router.steps.counts()
        assert (calls.service_name, calls.code, calls.revision) == ("beta", 502, "")
