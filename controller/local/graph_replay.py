"""The local target's :class:`~controller.ports.GraphReplay`: asks the graph's own router.

Each InferenceGraph's local router answers ``POST /_sluice/replay``
(:mod:`controller.local.graph_router`): what its deployed graph would have answered had one
member answered as given. This adapter finds the graph's router where the runtime saved it
(:meth:`controller.local.target.LocalTarget.graph_router_url`), sends the answers in batches of
at most :data:`~controller.local.graph.replay.MAX_REPLAY_ANSWERS`, and turns what went wrong
into Sluice's errors: a router that does not answer (or answers 503, no graph deployed) is a
:class:`~controller.errors.TransientError`; a graph whose root Sequence does not start with the
member (409) a :class:`~controller.errors.ConfigError`; answers the router refuses (400) an
:class:`~controller.errors.InputError`; each with the router's reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import requests

from controller.errors import ConfigError, InputError, TransientError
from controller.target_types import ReplayedAnswer

__all__ = ["REPLAY_BATCH", "LocalGraphReplay"]

#: Answers per request: the most the router takes at once (``MAX_REPLAY_ANSWERS``; not
#: imported from there, which would import the routing's gjson-py with it).
REPLAY_BATCH = 1000
# Seconds to connect to a router, and to wait for a batch's answers (1,000 walks of the graph).
_CONNECT_TIMEOUT = 2.0
_READ_TIMEOUT = 300.0


class LocalGraphReplay:
    """Replays through the routers of the local target; ``router_url(graph)`` is the graph's
    router URL, or raises :class:`~controller.errors.TransientError` when there is none."""

    def __init__(
        self,
        router_url: Callable[[str], str],
        *,
        batch: int = REPLAY_BATCH,
        timeout: float = _READ_TIMEOUT,
    ) -> None:
        self.router_url = router_url
        self.batch = max(1, min(batch, REPLAY_BATCH))
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"LocalGraphReplay(batch={self.batch})"

    def replay(self, graph: str, member: str, answers: Sequence[object]) -> list[ReplayedAnswer]:
        """The graph's answer to each of ``answers`` as ``member``'s, in order (see the module)."""
        if not answers:
            return []
        url = f"{self.router_url(graph).rstrip('/')}/_sluice/replay"
        replayed: list[ReplayedAnswer] = []
        for start in range(0, len(answers), self.batch):
            chunk = list(answers[start : start + self.batch])
            replayed.extend(self._batch(url, graph, member, chunk))
        return replayed

    def _batch(
        self, url: str, graph: str, member: str, answers: list[object]
    ) -> list[ReplayedAnswer]:
        try:
            body = json.dumps({"member": member, "answers": answers}, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{member}'s answers to replay are not JSON: {exc}") from exc
        try:
            reply = requests.post(
                url,
                data=body.encode(),
                headers={"Content-Type": "application/json"},
                timeout=(_CONNECT_TIMEOUT, self.timeout),
            )
        except requests.RequestException as exc:
            raise TransientError(
                f"the router of InferenceGraph {graph} at {url} did not answer "
                f"({type(exc).__name__}); is the local target up? `sluice local up`, "
                "then `sluice local status`"
            ) from exc
        if reply.status_code != 200:
            raise _refused(graph, member, url, reply.status_code, _reason(reply))
        return _answers(graph, url, reply, len(answers))


def _refused(graph: str, member: str, url: str, status: int, reason: str) -> Exception:
    """The error for the router's non-200 answer."""
    if status == 409:
        return ConfigError(f"InferenceGraph {graph} cannot replay {member}'s answers: {reason}")
    if status == 400:
        return InputError(f"the router of InferenceGraph {graph} refused the replay: {reason}")
    if status in (404, 405):
        return ConfigError(
            f"the router of InferenceGraph {graph} at {url} has no replay ({status}): restart "
            "the local target with this Sluice (`sluice local down`, then `sluice local up`)"
        )
    return TransientError(
        f"the router of InferenceGraph {graph} could not replay ({status}: {reason}); "
        "check `sluice local status`"
    )


def _reason(reply: requests.Response) -> str:
    """The router's ``error`` (or the start of its body)."""
    try:
        error = reply.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error) if error else (reply.text[:200] or "no reason given")


def _answers(graph: str, url: str, reply: requests.Response, expected: int) -> list[ReplayedAnswer]:
    """The reply's answers, checked to be one per answer sent."""
    try:
        entries: Any = reply.json()["answers"]
        replayed = [ReplayedAnswer(int(e["status"]), e.get("output")) for e in entries]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TransientError(
            f"the router of InferenceGraph {graph} at {url} gave no replay answers "
            f"({type(exc).__name__}); check `sluice local status`"
        ) from exc
    if len(replayed) != expected:
        raise TransientError(
            f"the router of InferenceGraph {graph} answered {len(replayed)} replays of "
            f"{expected}; check `sluice local status`"
        )
    return replayed
