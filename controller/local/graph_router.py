"""One InferenceGraph's router on a stable local port: KServe's ``cmd/router`` plus its metrics.

On a cluster KServe deploys a router for each InferenceGraph (a Knative Service named after
the graph, in Serverless mode) that answers every request to the graph's own hostname
(``http://<graph>.<namespace>.<domain>``, any path) by walking the graph from its ``root``
node. Locally an InferenceService's hostname is its router's port, so a graph's is too: the
graph answers on ``http://127.0.0.1:<port>`` (``status.url``), on any path but the two the
local routers keep for themselves (``/metrics``, ``/_sluice/...``: here ``/_sluice/replay``,
below), for any method as KServe's
router does (but ``HEAD``, which is 405 here, as on the InferenceServices' routers).

Each request is answered by :func:`~controller.local.graph.executor.answer_graph_request`
with the graph's step caller (:class:`~controller.local.graph_caller.HttpStepCaller`). The
router serves what was last *deployed* (:meth:`GraphRouter.deploy`): the graph's spec and its
resolved step URLs, which the runtime deploys only once every ``serviceName`` resolves, as
KServe's controller does; until then (and while the graph is stopped) it answers 503.

``GET /metrics`` exports, under the environment's metrics profile, what the queue-proxy in
front of the graph's router would on a cluster (its requests, configuration ``<graph>``,
revision ``<graph>-0000K``: a new one for each deployment, as a new ``--graph-json`` makes a
new Knative revision) and the graph's step series, Switch decisions and branch series (each
node step's answers, by router revision: how a graph canary's ``stable`` and ``canary`` compare)
(:mod:`controller.local.graph_metrics`), and, given the runtime's prediction log, how many of
each member revision's answers were right about each outcome that arrived
(``sluice_graph_outcome_answers``, :mod:`controller.local.graph_outcomes`: read from the log
by a thread of its own every few seconds, never on the loop or in a scrape).
Every answer names the graph's revision in ``X-Sluice-Revision``, as the InferenceServices'
routers do.

``POST /_sluice/replay`` answers what the deployed graph would have answered had one member
answered as given (:mod:`controller.local.graph.replay`), which KServe's router cannot: a
shadow challenger of the graph's first member is judged by the graph's answers to its
decisions. The body is ``{"member": "<InferenceService>", "answers": [<answer>, ...]}`` (at
most 1,000 answers, each the member's JSON answer as logged); for each answer the graph runs
with that answer as the request body, every step whose ``serviceName`` is the member answered
200 with it (no call) and every other step called as for a client, a few answers at once. The
reply is ``{"answers": [{"status": <graph's status>, "output": <its JSON body, or null>}, ...]}``
in order. Replays are not client traffic: none is counted in the graph's request, step, Switch
or branch series (the members' own routers still count the calls they get). 400 for a
malformed body, 409 (``{"error": "replay needs <member> as the first step of the graph's root
Sequence"}``) unless the root is a Sequence whose first step is the member (only then does the
request body reach nothing but the member), 503 while no graph is deployed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controller.gates.metrics_profile import MetricsProfile
from controller.local.graph.executor import StepCaller, StepRef, answer_graph_request, error_body
from controller.local.graph.headers import DEFAULT_PROPAGATED_HEADERS
from controller.local.graph.replay import (
    ReplayRequestError,
    parse_replay_request,
    replay,
    replay_refusal,
)
from controller.local.graph.spec import InferenceGraph
from controller.local.graph_caller import HttpStepCaller
from controller.local.graph_metrics import BranchCall, GraphStepMetrics
from controller.local.graph_outcomes import SEGMENT_ANNOTATION, GraphOutcomes, OutcomeReader
from controller.local.loop_server import LoopServer
from controller.local.revision_metrics import RevisionMetrics
from controller.local.serving.http1 import Request, UpstreamPool, encode_response

__all__ = ["GraphDeployment", "GraphRouter"]

_REVISION_HEADER = b"X-Sluice-Revision"
_JSON = (b"Content-Type", b"application/json")
_RESERVED = (b"/metrics", b"/_sluice/")
#: What the graph would have answered had one member answered as given (the module's doc).
REPLAY_PATH = b"/_sluice/replay"
_log = logging.getLogger("sluice.local.graph")


@dataclass(frozen=True)
class GraphDeployment:
    """What a graph's router runs: the graph, each ``serviceName``'s URL, its revision."""

    graph: InferenceGraph
    urls: Mapping[str, str]
    revision: str
    #: Seconds a step may take to answer (``routerTimeouts.serviceClient``).
    timeout: float = 300.0


@dataclass(frozen=True)
class _Running:
    deployment: GraphDeployment
    caller: StepCaller
    #: Calls the steps as ``caller`` does, counted nowhere: a replay's.
    uncounted: StepCaller


class GraphRouter(LoopServer):
    """The router of InferenceGraph ``graph`` on ``host:port``, run on its own thread."""

    def __init__(
        self,
        *,
        graph: str,
        namespace: str = "default",
        host: str = "127.0.0.1",
        port: int | None = None,
        service_timeout: float = 300.0,
        metrics_profile: MetricsProfile | None = None,
        propagate_headers: Sequence[str] = DEFAULT_PROPAGATED_HEADERS,
        prediction_log: OutcomeReader | None = None,
        outcome_refresh: float | None = None,
        request_metrics: bool = True,
    ) -> None:
        super().__init__(name=f"the router of InferenceGraph {graph}", host=host, port=port)
        self.graph = graph
        #: Patterns of the request headers passed on to every step (KServe's
        #: ``router.headers.propagate``).
        self.propagate_headers = tuple(propagate_headers)
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = RevisionMetrics(namespace, graph, metrics_profile)
        self.steps = GraphStepMetrics(namespace, graph, metrics_profile)
        #: Whether ``/metrics`` exports the graph's request series too (what a queue-proxy
        #: would); not on a cluster, where the queue-proxy in front of the router does.
        self.request_metrics = request_metrics
        if request_metrics:
            self.registry.register(self.metrics)
        self.registry.register(self.steps)
        #: The outcome series, read from ``prediction_log`` (None without one: no series).
        self.outcomes: GraphOutcomes | None = None
        if prediction_log is not None:
            self.outcomes = GraphOutcomes(namespace, graph, prediction_log, metrics_profile)
            if outcome_refresh is not None:
                self.outcomes.refresher.interval = outcome_refresh
            self.registry.register(self.outcomes)
        self._pool = UpstreamPool(service_timeout)
        self._running: _Running | None = None
        self._not_ready = f"InferenceGraph {graph} is not ready"

    def set_metrics_profile(self, profile: MetricsProfile) -> None:
        """Export both kinds of series under ``profile`` from now on."""
        self.metrics.set_profile(profile)
        self.steps.set_profile(profile)
        if self.outcomes is not None:
            self.outcomes.set_profile(profile)

    def start(self, timeout: float = 10.0) -> Self:
        """Listen (:meth:`LoopServer.start`), and refresh the outcome series from the log."""
        super().start(timeout)
        if self.outcomes is not None:
            self.outcomes.refresher.start()
        return self

    def stop(self) -> None:
        """Stop refreshing the outcome series, then listening (idempotent)."""
        if self.outcomes is not None:
            self.outcomes.refresher.stop()
        super().stop()

    def deploy(self, deployment: GraphDeployment | None, why_not: str = "") -> None:
        """Answer with ``deployment`` from the next request on; None stops answering (503,
        saying ``why_not``). Requests in flight finish with what they started with."""
        if deployment is None:
            self._running = None
            self._not_ready = f"InferenceGraph {self.graph} is not ready" + (
                f": {why_not}" if why_not else ""
            )
            return
        self._pool.timeout = deployment.timeout
        caller = HttpStepCaller(deployment.urls, self._pool, self.steps)
        uncounted = HttpStepCaller(deployment.urls, self._pool, None)
        self._running = _Running(deployment, caller, uncounted)
        if self.outcomes is not None:
            graph = deployment.graph
            self.outcomes.set_graph(
                graph.service_names(), graph.annotations.get(SEGMENT_ANNOTATION, "")
            )

    @property
    def deployment(self) -> GraphDeployment | None:
        """What the router answers with now."""
        running = self._running
        return running.deployment if running is not None else None

    async def closing(self) -> None:
        self._pool.close()

    async def handle(self, request: Request) -> bytes:
        if request.url == b"/metrics" or request.url.startswith(b"/metrics?"):
            exported = (
                self.metrics.exposition(self.registry)
                if self.request_metrics
                else generate_latest(self.registry)
            )
            body = self.steps.counter_text().encode() + exported
            return encode_response(200, [(b"Content-Type", CONTENT_TYPE_LATEST.encode())], body)
        if request.url == REPLAY_PATH or request.url.startswith(REPLAY_PATH + b"?"):
            return await self._replay(request)
        if request.url.startswith(_RESERVED):
            return encode_response(404, [_JSON], b'{"error":"not found"}')
        if request.method == b"HEAD":  # a reply with a length but no body: not answered
            return encode_response(405, [(b"Allow", b"GET, POST")], b"")
        running = self._running
        if running is None:
            return encode_response(503, [_JSON], error_body(self._not_ready))
        revision = running.deployment.revision
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
        started = time.perf_counter()

        def branched(step: StepRef, target: str, status: int, latency_ms: float) -> None:
            branch = BranchCall(step.node, step.key, target, revision, status)
            self.steps.observe_branch(branch, latency_ms)

        try:
            answer = await answer_graph_request(
                running.deployment.graph,
                request.body,
                headers,
                running.caller,
                propagate=self.propagate_headers,
                switched=self.steps.observe_switch,
                branched=branched,
            )
        except RecursionError:  # nodes that reach themselves: KServe's router crashes
            _log.warning("InferenceGraph %s: its nodes form a loop", self.graph)
            status, body, content_type = 500, error_body("the graph's nodes form a loop"), True
        except Exception as exc:  # a bug must not hang the client
            _log.exception("InferenceGraph %s failed a request", self.graph)
            status, body, content_type = 500, error_body(f"{type(exc).__name__}: {exc}"), True
        else:
            status, body = answer.status, answer.body
            content_type = answer.content_type is not None
        self.metrics.observe(revision, status, (time.perf_counter() - started) * 1000)
        served = [_JSON] if content_type else []
        served.append((_REVISION_HEADER, revision.encode()))
        return encode_response(status, served, body)

    async def _replay(self, request: Request) -> bytes:
        """``POST /_sluice/replay`` (the module's doc)."""
        if request.method != b"POST":
            return encode_response(405, [(b"Allow", b"POST"), _JSON], _error("use POST"))
        try:
            asked = parse_replay_request(request.body)
        except ReplayRequestError as exc:
            return encode_response(400, [_JSON], _error(str(exc)))
        running = self._running
        if running is None:
            return encode_response(503, [_JSON], _error(self._not_ready))
        graph = running.deployment.graph
        refusal = replay_refusal(graph, asked.member)
        if refusal is not None:
            return encode_response(409, [_JSON], _error(refusal))
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers}
        answers = await replay(
            graph,
            asked,
            headers,
            running.uncounted,
            propagate=self.propagate_headers,
            failed=lambda exc: _log.error(
                "InferenceGraph %s failed a replay", self.graph, exc_info=exc
            ),
        )
        body = {"answers": [{"status": status, "output": output} for status, output in answers]}
        served = [_JSON, (_REVISION_HEADER, running.deployment.revision.encode())]
        return encode_response(200, served, json.dumps(body, separators=(",", ":")).encode())


def _error(message: str) -> bytes:
    """A one-line ``{"error": ...}`` body."""
    return json.dumps({"error": message}).encode()
