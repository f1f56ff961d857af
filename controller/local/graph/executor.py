"""Answer one request to an InferenceGraph as KServe's router does, through a step caller.

The routing decisions are :mod:`controller.local.graph.routing`; this module runs them in
KServe's order (``routeStep``) and does the I/O through a :class:`StepCaller`: given a step's
target (a service name or URL), a body, headers and where the step sits (:class:`StepRef`, for
the caller's metrics), it returns a status and a body, or raises :class:`StepCallFailed` when
no answer came (KServe's ``callService`` error). Tests give it an in-memory fake; the local
runtime gives it HTTP (:mod:`controller.local.graph_caller`).

Semantics kept from KServe's router:

- an error anywhere (no answer, an Ensemble member that is not a JSON object, a Sequence
  condition on a response that is not JSON) ends the whole request: every enclosing node turns
  it into 500, so only a Switch that is the root answers its own 404; the client gets
  ``{"error":"Failed to process request","cause":"..."}``;
- a step's non-2xx answer is not an error: Switch and Splitter pass it on, a Sequence stops on
  it only for a ``Hard`` step, an Ensemble returns the first failed ``Hard`` member's answer;
- an Ensemble's steps run concurrently (asyncio tasks, as goroutines) and its members are
  taken in step order; once the answer is decided, members still running are cancelled (Go
  leaves them running and drops their answers);
- the response is ``application/json`` when its body is valid JSON.

Every Switch decision is also reported to an optional ``switched`` callback, with the node and
the chosen step's key (its name, else its index; "" when no condition matched): the only place
a Switch that found no branch can be told apart from a member that answered 404, and, nested,
from any other 500 (the router's metrics count it, :mod:`controller.local.graph_metrics`).

Every step that routes to a node (a Splitter's ``stable`` and ``canary`` steps of a graph
canary, a Switch step ``nodeName: blend``) is reported to an optional ``branched`` callback
once the node has answered: where the step sits, the node it routed to, the status the node
answered with (500 when it failed) and how long it took, in milliseconds. A node step makes no
call of its own, so this is the only place its requests can be timed and told apart (the
router's branch series, :mod:`controller.local.graph_metrics`).

A Sequence with no steps, which KServe's router cannot answer (it writes status 0 and the
connection drops), answers 500 here.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.local.graph import go_json
from controller.local.graph.routing import (
    DEFAULT_PROPAGATED_HEADERS,
    NO_SPLITTER_ROUTE,
    NO_SWITCH_MATCH,
    SEQUENCE_INVALID_RESPONSE,
    EnsembleMember,
    SequenceVerdict,
    ensemble_key,
    ensemble_member,
    is_success,
    pick_splitter_step,
    pick_switch_step,
    propagated_headers,
    sequence_condition,
    sequence_request,
)
from controller.local.graph.spec import (
    ROOT_NODE,
    InferenceGraph,
    Node,
    RouterType,
    Step,
    StepTarget,
    parse_inference_graph,
)

__all__ = [
    "ROUTING_FAILED",
    "BranchObserver",
    "GraphAnswer",
    "StepAnswer",
    "StepCallFailed",
    "StepCaller",
    "StepRef",
    "answer_graph_request",
    "error_body",
]

#: The ``error`` of the router's error answer.
ROUTING_FAILED = "Failed to process request"


@dataclass(frozen=True)
class StepAnswer:
    """What a service step answered."""

    status: int
    body: bytes


class StepCallFailed(Exception):
    """No answer from a step's service (refused, timed out, reset): the message is the cause
    the client sees."""


@dataclass(frozen=True)
class StepRef:
    """Where a step sits in the graph: its node, its index there, and its name (or "")."""

    node: str
    index: int
    name: str = ""

    @property
    def key(self) -> str:
        """The step's name, else its index (how KServe keys an Ensemble's members)."""
        return self.name or str(self.index)


#: ``branched(step, node, status, latency_ms)``: a node step's answer (see the module).
BranchObserver = Callable[["StepRef", str, int, float], None]


class StepCaller(Protocol):
    """Sends a step's request to its service (``target.service_name`` or ``service_url``;
    never a node, which the executor routes itself); ``step`` says which step asks."""

    async def __call__(
        self, target: StepTarget, body: bytes, headers: Mapping[str, str], step: StepRef
    ) -> StepAnswer: ...


@dataclass(frozen=True)
class GraphAnswer:
    """The graph's answer to the client."""

    status: int
    body: bytes
    content_type: str | None  # "application/json" when the body is JSON, else None


class _RoutingError(Exception):
    """KServe's ``err``: ends the request; ``status`` counts only at the root."""

    def __init__(self, cause: str, status: int = 500) -> None:
        super().__init__(cause)
        self.status = status


def error_body(cause: str) -> bytes:
    """KServe's ``InferenceGraphRoutingError`` as Go marshals it."""
    error, reason = go_json.encode_string(ROUTING_FAILED), go_json.encode_string(cause)
    return f'{{"error":{error},"cause":{reason}}}'.encode()


def _draw() -> int:
    return secrets.randbelow(100)  # KServe draws with crypto/rand too


async def answer_graph_request(
    graph: InferenceGraph | Mapping[str, Any],
    body: bytes,
    headers: Mapping[str, str],
    caller: StepCaller,
    *,
    draw: Callable[[], int] = _draw,
    propagate: Sequence[str] = DEFAULT_PROPAGATED_HEADERS,
    switched: Callable[[str, str], None] | None = None,
    branched: BranchObserver | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> GraphAnswer:
    """The answer of ``graph`` (an InferenceGraph object or its parsed form) to one request.

    ``draw`` returns a uniform integer in [0, 100) for each Splitter decision (inject a
    seeded one for repeatable tests); ``propagate`` are the header patterns KServe's router
    configuration propagates to the steps (``headers.propagate``); ``switched`` is called with
    each Switch node's name and the key of the step it chose ("" when none matched);
    ``branched`` with each node step's answer, timed by ``clock`` (seconds).
    """
    parsed = graph if isinstance(graph, InferenceGraph) else parse_inference_graph(graph)
    headers = propagated_headers(headers, propagate)
    router = _Router(parsed, caller, draw, headers, switched, branched, clock)
    try:
        status, response = await router.route(ROOT_NODE, body)
    except _RoutingError as exc:
        return GraphAnswer(exc.status, error_body(str(exc)), "application/json")
    content_type = "application/json" if go_json.is_valid(response) else None
    return GraphAnswer(status, response, content_type)


class _Router:
    """One request's walk through the graph (KServe's ``routeStep`` and ``executeStep``)."""

    def __init__(
        self,
        graph: InferenceGraph,
        caller: StepCaller,
        draw: Callable[[], int],
        headers: Mapping[str, str],
        switched: Callable[[str, str], None] | None = None,
        branched: BranchObserver | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.graph = graph
        self.caller = caller
        self.draw = draw
        self.headers = headers
        self.switched = switched
        self.branched = branched
        self.clock = clock

    async def route(self, node_name: str, body: bytes) -> tuple[int, bytes]:
        node = self.graph.nodes.get(node_name)
        router_type = node.router_type if node else ""
        if node is None or router_type not in {t.value for t in RouterType}:
            raise _RoutingError(f"invalid route type: {router_type}")
        if router_type == RouterType.SPLITTER:
            step = pick_splitter_step(node.steps, self.draw())
            if step is None:
                raise _RoutingError(NO_SPLITTER_ROUTE)
            return await self.execute(node_name, node, step, body)
        if router_type == RouterType.SWITCH:
            step = pick_switch_step(node.steps, body)
            if self.switched is not None:
                self.switched(node_name, _switch_key(node, step))
            if step is None:
                raise _RoutingError(NO_SWITCH_MATCH, 404)
            return await self.execute(node_name, node, step, body)
        if router_type == RouterType.ENSEMBLE:
            return await self.ensemble(node_name, node, body)
        return await self.sequence(node_name, node, body)

    async def execute(
        self, node_name: str, node: Node, step: Step, body: bytes
    ) -> tuple[int, bytes]:
        """A step's answer; an error of a nested node comes back as 500 (KServe's callers
        return ``nil, 500, err``)."""
        index = next(i for i, s in enumerate(node.steps) if s is step)
        where = StepRef(node_name, index, step.name)
        try:
            if step.target.is_node:
                return await self.branch(where, step.target.node_name, body)
            answer = await self.caller(step.target, body, self.headers, where)
        except _RoutingError as exc:
            raise _RoutingError(str(exc)) from None
        except StepCallFailed as exc:
            raise _RoutingError(str(exc)) from None
        return answer.status, answer.body

    async def branch(self, where: StepRef, target: str, body: bytes) -> tuple[int, bytes]:
        """A node step's answer, reported to ``branched`` (status 500 when it failed)."""
        if self.branched is None:
            return await self.route(target, body)
        started = self.clock()
        try:
            status, answer = await self.route(target, body)
        except _RoutingError:
            self.branched(where, target, 500, (self.clock() - started) * 1000)
            raise
        self.branched(where, target, status, (self.clock() - started) * 1000)
        return status, answer

    async def sequence(self, node_name: str, node: Node, request: bytes) -> tuple[int, bytes]:
        if not node.steps:
            raise _RoutingError("sequence node has no steps")
        status, response = 0, b""
        for index, step in enumerate(node.steps):
            previous = response if index > 0 else None
            body = sequence_request(step, index, request, previous)
            verdict = sequence_condition(step, previous)
            if verdict is SequenceVerdict.INVALID:
                raise _RoutingError(SEQUENCE_INVALID_RESPONSE)
            if verdict is SequenceVerdict.STOP:
                return 200, response
            status, response = await self.execute(node_name, node, step, body)
            if step.hard and not is_success(status):
                return status, response
        return status, response

    async def ensemble(self, node_name: str, node: Node, body: bytes) -> tuple[int, bytes]:
        tasks = [
            asyncio.create_task(self._member(node_name, node, step, body)) for step in node.steps
        ]
        try:
            return await self._merge(node.steps, tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _member(self, node_name: str, node: Node, step: Step, body: bytes) -> EnsembleMember:
        """One member's answer, decoded as the merge takes it, in its own task (KServe
        decodes in the step's goroutine, so a bad body is an error like no answer)."""
        status, answer = await self.execute(node_name, node, step, body)
        member = ensemble_member(status, answer)
        if member.error:
            raise _RoutingError(member.error)
        return member

    async def _merge(
        self, steps: Sequence[Step], tasks: list[asyncio.Task[EnsembleMember]]
    ) -> tuple[int, bytes]:
        """Members in step order. While a member is awaited, any member's error ends the node
        (Go's ``select`` on the step's channel and the shared error channel); when both are
        there, the awaited member is taken first."""
        merged: dict[str, Any] = {}
        for index, (step, task) in enumerate(zip(steps, tasks, strict=True)):
            while not task.done():
                failure = _first_failure(tasks)
                if failure is not None:
                    raise failure
                pending = [t for t in tasks if not t.done()]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            member = task.result()  # raises the member's own error
            if step.hard and not is_success(member.status):
                return member.status, go_json.encode(member.value)
            merged[ensemble_key(step, index)] = member.value
        return 200, go_json.encode(merged)


def _switch_key(node: Node, step: Step | None) -> str:
    """The chosen step's name, else its index in the Switch; "" when none was chosen."""
    if step is None:
        return ""
    return step.name or str(next(i for i, s in enumerate(node.steps) if s is step))


def _first_failure(tasks: list[asyncio.Task[EnsembleMember]]) -> BaseException | None:
    """The error of the first finished member that failed, if any."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return task.exception()
    return None
