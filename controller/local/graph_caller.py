"""An InferenceGraph's step calls over HTTP, as KServe's router makes them (``callService``).

The executor (:mod:`controller.local.graph.executor`) decides which steps run and with which
body; this :class:`~controller.local.graph.executor.StepCaller` sends each one: a ``POST`` of
the body, with the propagated headers, to the step's URL, which for a ``serviceName`` step is
the InferenceService's predictor endpoint KServe resolved when the router was deployed
(:mod:`controller.local.graph.endpoints`): the member's own router, so the call is split
between its revisions and counted in its revision metrics like any client's. A ``serviceUrl``
step is called as written (``http://`` only: the local target has no TLS).

Whatever answered, with any status, is the step's answer; no answer (refused, reset, timed out)
is :class:`~controller.local.graph.executor.StepCallFailed`, with a cause worded as Go's HTTP
client words it (``Post "<url>": ...``). Every call is counted per node, step and member in
the graph's step metrics (:mod:`controller.local.graph_metrics`), but by a caller made without
them (``metrics=None``): the router's replays (``POST /_sluice/replay``) are not client traffic.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from functools import lru_cache

from controller.local.graph.executor import StepAnswer, StepCallFailed, StepRef
from controller.local.graph.spec import StepTarget
from controller.local.graph_metrics import GraphStepMetrics, StepCall
from controller.local.serving.http1 import UpstreamPool, encode_request

__all__ = ["REVISION_HEADER", "HttpStepCaller", "parse_step_url"]

#: The header a member's router names its answering revision in.
REVISION_HEADER = b"x-sluice-revision"
_POST = b"POST"


class StepUrlError(ValueError):
    """A step URL the local target cannot call; the message is Go's client's words."""


@lru_cache(maxsize=256)
def parse_step_url(url: str) -> tuple[str, int, bytes]:
    """``http://HOST[:PORT]/PATH?QUERY`` as host, port and request target."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        raise StepUrlError(f'Post "{url}": the local target calls http:// step URLs only')
    if parts.scheme != "http":
        raise StepUrlError(f'Post "{url}": unsupported protocol scheme "{parts.scheme}"')
    if not parts.hostname:
        raise StepUrlError(f'Post "{url}": http: no Host in request URL')
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, target.encode()


class HttpStepCaller:
    """Calls a deployed graph's steps through ``pool``; ``urls`` are the resolved
    ``serviceName`` endpoints (fixed for the deployment, as KServe bakes them in); each call is
    counted in ``metrics``, none when it is None."""

    def __init__(
        self, urls: Mapping[str, str], pool: UpstreamPool, metrics: GraphStepMetrics | None
    ) -> None:
        self.urls = dict(urls)
        self.pool = pool
        self.metrics = metrics

    async def __call__(
        self, target: StepTarget, body: bytes, headers: Mapping[str, str], step: StepRef
    ) -> StepAnswer:
        url = target.service_url or self.urls.get(target.service_name, "")
        call = (step.node, step.key, target.service_name, target.service_url)
        started = time.perf_counter()
        try:
            host, port, path = parse_step_url(url)
        except StepUrlError as exc:
            self._observe(call, 502, "", started)
            raise StepCallFailed(str(exc)) from None
        sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        payload = encode_request(_POST, path, host, port, sent, body)
        try:
            reply = await self.pool.exchange(host, port, payload)
        except TimeoutError:
            self._observe(call, 504, "", started)
            raise StepCallFailed(
                f'Post "{url}": context deadline exceeded (Client.Timeout exceeded while '
                "awaiting headers)"
            ) from None
        except OSError as exc:  # ConnectionError is one
            self._observe(call, 502, "", started)
            raise StepCallFailed(f'Post "{url}": {_reason(exc)}') from None
        revision = next(
            (v.decode("latin-1") for k, v in reply.headers if k.lower() == REVISION_HEADER), ""
        )
        self._observe(call, reply.status, revision, started)
        return StepAnswer(reply.status, reply.body)

    def _observe(
        self, call: tuple[str, str, str, str], code: int, revision: str, started: float
    ) -> None:
        if self.metrics is None:
            return
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.observe(StepCall(*call, revision, code), latency_ms)


def _reason(exc: OSError) -> str:
    """Go's words for the common failures; the OS's otherwise."""
    if isinstance(exc, ConnectionRefusedError):
        return "dial tcp: connect: connection refused"
    if isinstance(exc, ConnectionResetError):
        return "read: connection reset by peer"
    return exc.strerror or str(exc) or type(exc).__name__
