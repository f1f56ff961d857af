"""Member InferenceServices of a graph, in this process: a stand-in model server behind a real
local router, and the InferenceService object KServe would show for it.

``tests/test_graph_router.py`` and ``tests/test_graph_plane.py`` route graphs to them; no model
server or runtime process starts, so each test takes milliseconds.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from controller.local.graph.endpoints import resolve_service_urls
from controller.local.graph.spec import parse_inference_graph
from controller.local.graph_router import GraphDeployment, GraphRouter
from controller.local.router import Router, TrafficTarget
from controller.ports import PredictionSink

__all__ = ["Member", "StandInServer", "deploy", "isvc_object", "members"]


class StandInServer(http.server.ThreadingHTTPServer):
    """Answers every POST with ``answer`` (V1 ``predictions`` naming it, unless set) and
    records each request's path and JSON body (and, apart, its headers)."""

    daemon_threads = True

    def __init__(self, name: str, answer: Any = None, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.answer = {"predictions": [{"member": name}]} if answer is None else answer
        self.status = status
        self.received: list[tuple[str, Any]] = []
        self.headers_received: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1
    server: StandInServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.received.append((self.path, json.loads(raw) if raw else None))
            self.server.headers_received.append(dict(self.headers.items()))
        body = json.dumps(self.server.answer).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Member:
    """One member: its model server, its router (revision ``<name>-predictor-00001``)."""

    name: str
    server: StandInServer
    router: Router
    namespace: str = "models-local"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        return f"{self.name}-predictor-00001"

    def obj(self, *, ready: bool = True) -> dict[str, Any]:
        """The InferenceService as KServe shows it (with its address once ready)."""
        return isvc_object(self.name, self.router.url if ready else "", self.namespace)

    def revision_counts(self) -> dict[tuple[str, int], int]:
        """What the member's own router counted, per revision and code."""
        return self.router.metrics.counts()


def isvc_object(name: str, url: str, namespace: str = "models-local") -> dict[str, Any]:
    """A V1 InferenceService whose ``status.address.url`` is ``url`` ("": none yet)."""
    status: dict[str, Any] = {"url": url, "address": {"url": url}} if url else {}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"}}}},
        "status": status,
    }


@contextmanager
def members(
    *names: str, sink: PredictionSink | None = None, **answers: Any
) -> Iterator[dict[str, Member]]:
    """Members ``names`` (``answers[name]`` overrides one's answer), stopped on leaving; each
    router logs its answers to ``sink`` when given."""
    started: dict[str, Member] = {}
    try:
        for name in names:
            server = StandInServer(name, answers.get(name.replace("-", "_")))
            threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
            router = Router(
                isvc=name, namespace="models-local", seed=0, prediction_sink=sink
            ).start()
            member = Member(name, server, router)
            router.set_routes([TrafficTarget(member.revision, server.url, 100)])
            started[name] = member
        yield started
    finally:
        for member in started.values():
            member.router.stop()
            member.server.shutdown()
            member.server.server_close()


def deploy(router: GraphRouter, obj: dict[str, Any], team: dict[str, Member]) -> None:
    """Deploy the InferenceGraph ``obj`` on ``router``, its serviceName steps resolved to the
    ``team``'s routers as KServe's controller resolves them (revision ``<graph>-00001``)."""
    parsed = parse_inference_graph(obj)
    resolution = resolve_service_urls(parsed, {n: m.obj() for n, m in team.items()})
    assert not resolution.problem
    router.deploy(GraphDeployment(parsed, resolution.urls, f"{parsed.name}-00001"))
