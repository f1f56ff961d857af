"""What a graph would have answered had one member answered as given: the router's replays.

A challenger in shadow answers copies of a member's requests; to judge it by what matters
downstream, the question is what the *graph* would have answered had the challenger's answer
been the member's. The graph's router answers that (``POST /_sluice/replay``,
:mod:`controller.local.graph_router`) with this module: for each given answer it runs the
deployed graph (:func:`~controller.local.graph.executor.answer_graph_request`) on a request
whose body is that answer, through a :class:`ReplayCaller` that answers every step whose
``serviceName`` is the member with the given answer (no call) and calls every other step as
the router does.

This stands for "the graph's answer with the member answering X" only when the request body
reaches nothing but the member: when the root is a Sequence whose first step is the member
(the body goes to that first step, and the steps after it read its answer, or, with
``data: $request``, the body, which then *is* the answer). :func:`replay_refusal` checks that
once per call. Every later step of the member (an Ensemble that asks it again) is answered
with the same answer: the member's answer to a request is what was logged for it.

Every call a replay makes carries ``X-Sluice-Replay: 1`` (:data:`REPLAY_HEADER`), whatever
the graph's ``headers.propagate`` says: a member's local router then sends it to its primary
revision only, and neither counts it in its revision series nor mirrors nor logs it
(:mod:`controller.local.router`), so a replay moves no member's canary gates, shadow pairs or
prediction log, and every replay of one judgement meets the same members.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.local.graph import go_json
from controller.local.graph.executor import (
    GraphAnswer,
    StepAnswer,
    StepCaller,
    StepRef,
    answer_graph_request,
    error_body,
)
from controller.local.graph.spec import ROOT_NODE, InferenceGraph, RouterType, StepTarget

__all__ = [
    "MAX_REPLAY_ANSWERS",
    "REPLAY_CONCURRENCY",
    "REPLAY_HEADER",
    "ReplayCaller",
    "ReplayRequest",
    "ReplayRequestError",
    "parse_replay_request",
    "replay",
    "replay_refusal",
]

#: The most answers one ``POST /_sluice/replay`` takes (a client sends more in batches).
MAX_REPLAY_ANSWERS = 1000
#: How many of one call's answers run through the graph at once.
REPLAY_CONCURRENCY = 8


class ReplayRequestError(ValueError):
    """A replay request that is not ``{"member": "<name>", "answers": [...]}``."""


@dataclass(frozen=True)
class ReplayRequest:
    """Whose answers to replay, each as the JSON body the member would have answered."""

    member: str
    answers: tuple[bytes, ...]


def parse_replay_request(body: bytes) -> ReplayRequest:
    """The request's member and answers (each encoded as Go would marshal it);
    :class:`ReplayRequestError` with a one-line reason when it is malformed."""
    try:
        parsed = go_json.decode(body)
    except go_json.GoJsonError as exc:
        raise ReplayRequestError(f"the body is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ReplayRequestError('the body must be {"member": "<name>", "answers": [...]}')
    member, answers = parsed.get("member"), parsed.get("answers")
    if not isinstance(member, str) or not member:
        raise ReplayRequestError('"member" must name an InferenceService')
    if not isinstance(answers, list):
        raise ReplayRequestError('"answers" must be a list of the member\'s answers')
    if len(answers) > MAX_REPLAY_ANSWERS:
        raise ReplayRequestError(
            f"{len(answers)} answers: at most {MAX_REPLAY_ANSWERS} per call, send them in batches"
        )
    return ReplayRequest(member, tuple(go_json.encode(answer) for answer in answers))


def replay_refusal(graph: InferenceGraph, member: str) -> str | None:
    """Why ``graph`` cannot replay ``member``'s answers (None: it can): only a root Sequence
    whose first step is the member reads the request body nowhere else."""
    root = graph.nodes.get(ROOT_NODE)
    first = root.steps[0].target if root is not None and root.steps else None
    if (
        root is None
        or root.router_type != RouterType.SEQUENCE
        or first is None
        or first.is_node
        or first.service_url
        or first.service_name != member
    ):
        return f"replay needs {member} as the first step of the graph's root Sequence"
    return None


#: The header a replay's step calls carry, which the members' local routers read.
REPLAY_HEADER = "X-Sluice-Replay"


class ReplayCaller:
    """Answers ``member``'s steps with ``answer`` (200, no call); the others go to ``calls``."""

    def __init__(self, member: str, answer: bytes, calls: StepCaller) -> None:
        self.member = member
        self.answer = StepAnswer(200, answer)
        self.calls = calls

    async def __call__(
        self, target: StepTarget, body: bytes, headers: Mapping[str, str], step: StepRef
    ) -> StepAnswer:
        if not target.service_url and target.service_name == self.member:
            return self.answer
        return await self.calls(target, body, {**headers, REPLAY_HEADER: "1"}, step)


async def replay(
    graph: InferenceGraph,
    request: ReplayRequest,
    headers: Mapping[str, str],
    calls: StepCaller,
    *,
    propagate: Sequence[str],
    concurrency: int = REPLAY_CONCURRENCY,
    failed: Callable[[BaseException], None] | None = None,
) -> list[tuple[int, Any]]:
    """Each answer's graph answer, in order: its status and its body parsed (None when the
    body is not JSON). No Switch or branch is reported: a replay is not the graph's traffic.
    A request the graph fails on (a bug, nodes that loop) is 500 with the router's error body,
    after ``failed`` is told why."""
    bound = asyncio.Semaphore(max(1, concurrency))

    async def one(answer: bytes) -> tuple[int, Any]:
        async with bound:
            try:
                result = await answer_graph_request(
                    graph,
                    answer,
                    headers,
                    ReplayCaller(request.member, answer, calls),
                    propagate=propagate,
                )
            except RecursionError:
                result = GraphAnswer(500, error_body("the graph's nodes form a loop"), None)
            except Exception as exc:  # one answer's bug must not lose the others
                if failed is not None:
                    failed(exc)
                result = GraphAnswer(500, error_body(f"{type(exc).__name__}: {exc}"), None)
        return result.status, _parsed(result.body)

    return list(await asyncio.gather(*(one(answer) for answer in request.answers)))


def _parsed(body: bytes) -> Any:
    """The body as JSON (integers kept), None when Go would not read it as JSON."""
    return json.loads(body) if go_json.is_valid(body) else None
