"""One InferenceService's front door on a stable local port: split, tag-route, count.

On a cluster, Knative's ingress splits an InferenceService's requests between revisions by
weight, reaches a tagged revision at ``<tag>-<isvc>-predictor.<ns>.<domain>``, and each
revision's queue-proxy counts requests and latencies for Prometheus. Locally this reverse
proxy does all three, so a canary analysis runs the same PromQL against either:

- ``set_routes([TrafficTarget(revision, upstream, percent, tag), ...])`` replaces the split
  at once (requests in flight finish where they started); each request draws from a
  generator seeded with ``seed``, so a test sees the same sequence every run;
- a tagged revision answers at ``/_tag/<tag>/<path>`` (the prefix is removed) or on any path
  with the header ``X-Sluice-Revision-Tag: <tag>``, the local form of Knative's tag hosts;
  a revision reached through its tag is counted like any other request to it;
- ``GET /metrics`` exports, in its own registry, the request metrics a queue-proxy exports
  under the environment's metrics profile (:mod:`controller.gates.metrics_profile`): by
  default current Knative's OpenTelemetry histogram ``kn_serving_invocation_duration_seconds``
  (seconds, its buckets) labelled ``k8s_namespace_name``, ``kn_configuration_name``,
  ``kn_revision_name`` and ``http_response_status_code``, as a Prometheus that promotes the
  OTel resource attributes stores it; under ``knative-opencensus`` Knative 1.18's
  ``revision_app_request_count`` counter and ``revision_app_request_latencies`` histogram in
  milliseconds with ``response_code_class``. A revision that cannot be reached answers 502,
  counted as such;
- ``GET /_sluice/requests?since=T`` answers the same counts live, per revision and response
  code since the epoch second ``T`` (:mod:`controller.local.request_window`): what the
  sequential watch reads between analyses, with no scrape in between.

A replay's call (header ``X-Sluice-Replay``, sent by a graph router answering
``/_sluice/replay``: :mod:`controller.local.graph.replay`) goes to the primary revision (the
one with the largest share, the first listed on a tie) and is neither counted, nor copied, nor
logged: it is the controller asking what the graph would answer, not a client.

A shadow revision (``set_shadow(ShadowTarget(revision, upstream, percent))``) gets a copy of
the main route's requests that no client waits for (:mod:`controller.local.mirror`); every
answer of the main route, primary or shadow, goes to the ``prediction_sink``. Each request
carries an id to the revisions and back to the client in ``X-Request-Id`` (the client's own,
when it sends one of at most 128 visible characters), the id both answers are logged under.

Every response names the revision that served it in ``X-Sluice-Revision``. The proxy runs
on an event loop thread of its own (:mod:`controller.local.loop_server`, uvloop when
installed) and speaks HTTP/1.1 through :mod:`controller.local.serving.http1`, with keep-alive
connections pooled per revision: about 0.2 ms per request on top of a model server
(``benchmarks/router_overhead.py``).
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.parse
import uuid
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from controller.gates.metrics_profile import OTEL_BUCKETS_SECONDS, MetricsProfile
from controller.local.loop_server import LoopServer
from controller.local.mirror import Mirror, ShadowTarget
from controller.local.request_window import RequestWindow
from controller.local.revision_metrics import LATENCY_BUCKETS_MS, RevisionMetrics
from controller.local.route_table import RouteTable, TrafficTarget
from controller.local.serving.http1 import (
    Request,
    UpstreamPool,
    encode_request,
    encode_response,
)
from controller.ports import PredictionSink
from controller.predictions import DiscardPredictions

__all__ = [
    "LATENCY_BUCKETS_MS",
    "OTEL_BUCKETS_SECONDS",
    "REQUESTS_PATH",
    "REQUEST_ID_HEADER",
    "TAG_HEADER",
    "RevisionMetrics",
    "Router",
    "ShadowTarget",
    "TrafficTarget",
]

TAG_HEADER = "X-Sluice-Revision-Tag"
REQUEST_ID_HEADER = "X-Request-Id"
REVISION_HEADER = b"X-Sluice-Revision"
TAG_PREFIX = b"/_tag/"
#: Where the router answers its live request counts (``?since=<epoch seconds>``).
REQUESTS_PATH = b"/_sluice/requests"
_TAG = TAG_HEADER.lower().encode()
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_REQUEST_ID_MAX = 128
_REPLAY = b"x-sluice-replay"


class Router(LoopServer):
    """A reverse proxy for InferenceService ``isvc`` on ``host:port``, run on its own thread."""

    def __init__(
        self,
        *,
        isvc: str,
        namespace: str = "default",
        host: str = "127.0.0.1",
        port: int | None = None,
        seed: int | None = None,
        upstream_timeout: float = 300.0,
        prediction_sink: PredictionSink | None = None,
        shadow_timeout: float = 10.0,
        max_shadow_in_flight: int = 64,
        metrics_profile: MetricsProfile | None = None,
    ) -> None:
        super().__init__(name=f"the router of {isvc}", host=host, port=port)
        self.isvc = isvc
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = RevisionMetrics(namespace, f"{isvc}-predictor", metrics_profile)
        self.registry.register(self.metrics)
        self.window = RequestWindow()
        self._random = random.Random(seed)  # noqa: S311 (traffic splitting, not secrets)
        self._table = RouteTable([])
        self._pool = UpstreamPool(upstream_timeout)
        self.mirror = Mirror(
            model=isvc,
            sink=prediction_sink or DiscardPredictions(),
            registry=self.registry,
            timeout=shadow_timeout,
            max_in_flight=max_shadow_in_flight,
            seed=None if seed is None else seed + 1,
        )

    def set_routes(self, traffic: Sequence[TrafficTarget]) -> None:
        """Replace the split; percents must add up to 100 (an empty list answers 503)."""
        self._table = RouteTable(traffic)

    def set_shadow(self, shadow: ShadowTarget | None) -> None:
        """Copy main-route requests to ``shadow`` from the next request on (None: stop)."""
        self.mirror.set_target(shadow)

    async def closing(self) -> None:
        """Close the revisions' pooled connections and the shadow's copies."""
        self._pool.close()
        await self.mirror.close()

    # -- requests ----------------------------------------------------------------------------

    async def handle(self, request: Request) -> bytes:
        if request.url == b"/metrics" or request.url.startswith(b"/metrics?"):
            body = self.metrics.exposition(self.registry)
            return encode_response(200, [(b"Content-Type", CONTENT_TYPE_LATEST.encode())], body)
        if request.url == REQUESTS_PATH or request.url.startswith(REQUESTS_PATH + b"?"):
            return self._requests(request.url)
        if request.method == b"HEAD":  # a reply with a length but no body: not relayed
            return encode_response(405, [(b"Allow", b"GET, POST")], b"")
        table = self._table
        if any(k.lower() == _REPLAY for k, _ in request.headers):
            return await self._replayed(request, table)
        path, tag = request.url, None
        if path.startswith(TAG_PREFIX):
            raw, _, rest = path[len(TAG_PREFIX) :].partition(b"/")
            tag, path = raw.decode("latin-1"), b"/" + rest
        else:
            tag = next((v.decode("latin-1") for k, v in request.headers if k.lower() == _TAG), None)
        if tag is not None:
            revision = table.by_tag.get(tag)
            if revision is None:
                return _error(404, f"no revision of {self.isvc} is tagged {tag!r}")
        else:
            revision = table.pick(self._random.random())
            if revision is None:
                return _error(503, f"no revision of {self.isvc} is ready to take requests")
        request_id, headers = _with_request_id(request.headers)
        started = time.perf_counter()
        status, body, response = await self._forward(request, path, revision, table, headers)
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.observe(revision, status, latency_ms)
        self.window.observe(revision, status)
        if tag is None:  # tag routes carry load tests: neither logged nor copied
            self.mirror.answered(
                request, path, headers, request_id=request_id, revision=revision,
                version=table.versions[revision], status=status, output=body,
                latency_ms=latency_ms,
            )  # fmt: skip
        return response

    async def _replayed(self, request: Request, table: RouteTable) -> bytes:
        """A replay's call: the primary's answer, uncounted, uncopied, unlogged."""
        revision = table.primary
        if revision is None:
            return _error(503, f"no revision of {self.isvc} is ready to take requests")
        _, headers = _with_request_id(request.headers)
        headers = [(k, v) for k, v in headers if k.lower() != _REPLAY]
        _, _, response = await self._forward(request, request.url, revision, table, headers)
        return response

    def _requests(self, url: bytes) -> bytes:
        """``{"since": T, "revisions": {revision: {code: count}}}`` from the second of T on."""
        query = urllib.parse.parse_qs(url.partition(b"?")[2].decode("latin-1"))
        try:
            since = float(query.get("since", ["0"])[0])
        except ValueError:
            return _error(400, "since must be epoch seconds, e.g. ?since=1764885600")
        if not math.isfinite(since):
            return _error(400, "since must be epoch seconds, e.g. ?since=1764885600")
        counts = self.window.since(since)
        body = {
            "since": since,
            "revisions": {r: {str(c): n for c, n in codes.items()} for r, codes in counts.items()},
        }
        headers = [(b"Content-Type", b"application/json")]
        return encode_response(200, headers, json.dumps(body).encode())

    async def _forward(
        self,
        request: Request,
        path: bytes,
        revision: str,
        table: RouteTable,
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[int, bytes, bytes]:
        """The status, the body and the encoded response of ``revision``'s answer."""
        host, port, prefix = table.upstreams[revision]
        payload = encode_request(request.method, prefix + path, host, port, headers, request.body)
        request_id = headers[-1]  # put last by _with_request_id
        try:
            reply = await self._pool.exchange(host, port, payload)
        except TimeoutError:
            message = f"revision {revision} did not answer in time"
            return 504, b"", _error(504, message, revision, request_id)
        except OSError as exc:  # ConnectionError is one
            message = f"revision {revision} is unreachable: {exc}"
            return 502, b"", _error(502, message, revision, request_id)
        served = [(k, v) for k, v in reply.headers if k.lower() != _REQUEST_ID]
        served += [(REVISION_HEADER, revision.encode()), request_id]
        return reply.status, reply.body, encode_response(reply.status, served, reply.body)


def _with_request_id(
    received: list[tuple[bytes, bytes]],
) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The request's id (the client's if usable, else a new UUID) and the headers to send
    upstream: the client's minus the tag header, the id last."""
    request_id = ""
    headers = []
    for name, value in received:
        lowered = name.lower()
        if lowered == _REQUEST_ID:
            candidate = value.decode("latin-1")
            if 0 < len(candidate) <= _REQUEST_ID_MAX and _visible_ascii(candidate):
                request_id = candidate
        elif lowered != _TAG:
            headers.append((name, value))
    request_id = request_id or str(uuid.uuid4())
    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
    return request_id, headers


def _visible_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable() and " " not in text


def _error(
    status: int, message: str, revision: str = "", request_id: tuple[bytes, bytes] | None = None
) -> bytes:
    headers = [(b"Content-Type", b"application/json")]
    if revision:
        headers.append((REVISION_HEADER, revision.encode()))
    if request_id is not None:
        headers.append(request_id)
    return encode_response(status, headers, json.dumps({"error": message}).encode())
