"""Per-request metrics from the model server itself, for revisions that have no queue-proxy.

In Serverless mode Knative's queue-proxy in front of each revision counts and times its
requests. KServe's RawDeployment (``Standard``) mode runs plain Deployments without it, and
KServe's own Python server only exports ``request_{preprocess,predict,postprocess,explain}_
seconds`` labelled ``model_name`` (no status code, so no error rate, and nothing that tells a
canary's pods from the primary's). So Sluice's serving wrapper exports what the
``sluice-wrapper`` metrics profile (:mod:`controller.gates.metrics_profile`) queries:

- ``sluice_request_duration_seconds``, a histogram in seconds with OpenTelemetry's HTTP server
  buckets (the ones current Knative's queue-proxy uses), whose ``_count`` counts requests;
- one label, ``code``: the numeric HTTP status of the answer.

The revision is not a label here: on a cluster the PodMonitor puts ``namespace_name``,
``configuration_name`` and ``revision_name`` on the series from the pod's labels
(``manifests/monitoring/podmonitor-model-servers.yaml``), and locally the Prometheus scrape
config does (:mod:`controller.local.scrape`).

What is counted: inference requests only, ``POST /v1/models/NAME:predict``, ``POST
/v2/models/NAME/infer`` and ``POST /v2/models/NAME/versions/V/infer``, whatever model name
(a wrong name is a 404 a client saw). Not counted: health and readiness probes, metadata,
``/metrics`` scrapes. Knative's queue-proxy counts every request that reaches the user
container, but there kubelet's probes are answered by the queue-proxy itself and never
counted; here the kubelet, the local launcher and Prometheus would call the server every few
seconds, and those cheap 200s would dilute a failing canary's error rate and pull its
latency percentiles towards zero. The gates compare what clients of the model saw.

The measure is an ASGI middleware around kserve's FastAPI app: it times from the request's
arrival to the last byte of the answer and records the status the server sent, so answers
made by kserve's exception handlers (400 ``InvalidInput``, 404 ``ModelNotFound``, 503
``ModelNotReady``, 500 for anything else) count with their codes. An exception that escapes
the app (Starlette's outermost error middleware then answers 500, or drops the connection if
the answer had started) counts as 500, since the client got no complete answer.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from controller.gates.metrics_profile import OTEL_BUCKETS_SECONDS, SLUICE_WRAPPER

__all__ = ["INFERENCE_PATH", "WARMING_UP", "WARM_UP_HEADER", "RequestMetrics", "request_histogram"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The paths of KServe's V1 and V2 inference endpoints (kserve's v1_endpoints.py and
#: v2_endpoints.py): the requests that are counted.
INFERENCE_PATH = re.compile(
    r"^/v1/models/[^/]+:predict$|^/v2/models/[^/]+(/versions/[^/]+)?/infer$"
)


def request_histogram(registry: CollectorRegistry | None = REGISTRY) -> Histogram:
    """``sluice_request_duration_seconds{code}``, registered on ``registry`` (kserve's
    ``/metrics`` serves prometheus_client's default one)."""
    name = SLUICE_WRAPPER.latency
    if SLUICE_WRAPPER.requests != f"{name}_count" or SLUICE_WRAPPER.latency_unit != "seconds":
        raise RuntimeError("the sluice-wrapper profile no longer names this histogram")
    return Histogram(
        name,
        "Duration of the model server's inference requests, by HTTP status code",
        labelnames=(SLUICE_WRAPPER.status_label,),
        buckets=OTEL_BUCKETS_SECONDS,
        registry=registry,
    )


#: Marks the model server's own warm-up requests (:mod:`.server`): answered, never counted.
WARM_UP_HEADER = "X-Sluice-Warm-Up"
_WARM_UP = WARM_UP_HEADER.lower().encode()
#: True while the current request is the server's own warm-up (set by :class:`RequestMetrics`,
#: read by the model's readiness, which lets only these through before it is warm).
WARMING_UP: contextvars.ContextVar[bool] = contextvars.ContextVar("warming_up", default=False)


class RequestMetrics:
    """ASGI middleware observing each inference request in ``histogram`` by its status code
    (the server's own warm-up requests excepted: no client sent them)."""

    def __init__(
        self,
        app: ASGIApp,
        histogram: Histogram,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.histogram = histogram
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not INFERENCE_PATH.match(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        if any(name == _WARM_UP for name, _ in scope.get("headers", ())):
            token = WARMING_UP.set(True)
            try:
                await self.app(scope, receive, send)
            finally:
                WARMING_UP.reset(token)
            return
        start = self._clock()
        status = 500  # until the app starts an answer; an escaping exception leaves it so

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except BaseException:
            status = 500  # the answer never completed: the client saw a server error
            raise
        finally:
            self.histogram.labels(str(status)).observe(max(self._clock() - start, 0.0))
