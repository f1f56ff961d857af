"""A shadow revision's copy of the router's live requests, which no client ever waits for.

Istio's ``mirror`` sends a copy of each request to another service and drops its answer;
Sluice keeps the answer, so a challenger can be judged on production traffic before it takes
any (:mod:`controller.shadow.judge`). Locally the router does it with this class:

- the copy is sent by a task of its own on the router's event loop, created after the
  primary has answered and before the client's answer is written, so the client's latency
  never includes the shadow's; the copy goes through a connection pool of its own, with its
  own timeout, so a hanging shadow holds none of the primary's connections;
- at most ``max_in_flight`` copies wait for the shadow at once; beyond that a copy is not
  sent (``dropped``), so a slow shadow costs a bounded amount of memory and sockets;
- only requests of the main route are copied (tag routes carry load tests), and each with
  probability ``percent``/100, as Istio's ``mirrorPercentage``;
- both answers go to the :class:`~controller.ports.PredictionSink` with the
  request's id; copies are counted in ``sluice_shadow_requests_total{revision, result}``
  (``ok``: the shadow answered below 500; ``error``: 5xx or unreachable; ``timeout``;
  ``dropped``), never in the revisions' Knative request metrics, which stay client traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import urllib.parse
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from controller.errors import ConfigError
from controller.local.serving.http1 import Request, UpstreamPool, encode_request
from controller.ports import PredictionSink
from controller.predictions import Prediction

__all__ = ["MIRROR_RESULTS", "Mirror", "ShadowTarget"]

_log = logging.getLogger("sluice.local.mirror")

MIRROR_RESULTS = ("ok", "error", "timeout", "dropped")
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class ShadowTarget:
    """A revision that gets a copy of the main route's requests; clients never see its answers."""

    revision: str
    upstream: str  # http://127.0.0.1:PORT
    #: Share of the requests copied, as Istio's ``mirrorPercentage`` (0-100).
    percent: float = 100.0
    #: The model version the revision serves, for the prediction log.
    version: str = ""
    #: Copy only requests the split sends to this revision; "" copies them all.
    primary: str = ""


@dataclass(frozen=True)
class _Shadow:
    target: ShadowTarget
    host: str
    port: int
    prefix: bytes


def parse_upstream(url: str) -> tuple[str, int, bytes]:
    """``http://HOST:PORT[/PATH]`` as host, port and path prefix; :class:`ConfigError` else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"upstream {url!r} must be http://HOST:PORT[/PATH]")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/").encode()


class Mirror:
    """Logs the primary's answers and copies requests to the shadow; used from one event loop.

    ``set_target`` may be called from any thread: it swaps one immutable value.
    """

    def __init__(
        self,
        *,
        model: str,
        sink: PredictionSink,
        registry: CollectorRegistry,
        timeout: float = 10.0,
        max_in_flight: int = 64,
        seed: int | None = None,
    ) -> None:
        if timeout <= 0 or max_in_flight < 1:
            raise ConfigError("a shadow needs a positive timeout and max_in_flight >= 1")
        self.model = model
        self.sink = sink
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._shadow: _Shadow | None = None
        self._random = random.Random(seed)  # noqa: S311 (sampling, not secrets)
        self._pool = UpstreamPool(timeout)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sink_failed = False
        self._requests = Counter(
            "sluice_shadow_requests",
            "Requests copied to a shadow revision, by result (ok, error, timeout, dropped).",
            ["revision", "result"],
            registry=registry,
        )

    @property
    def target(self) -> ShadowTarget | None:
        """The shadow now, if any."""
        shadow = self._shadow
        return shadow.target if shadow is not None else None

    def set_target(self, target: ShadowTarget | None) -> None:
        """Start copying to ``target`` (None: stop); copies in flight finish where they went."""
        if target is None:
            self._shadow = None
            return
        if not 0 <= target.percent <= 100:
            raise ConfigError(f"mirror percent {target.percent} of {target.revision}")
        host, port, prefix = parse_upstream(target.upstream)
        for result in MIRROR_RESULTS:  # every series exists from the start, at 0
            self._requests.labels(target.revision, result)
        self._shadow = _Shadow(target, host, port, prefix)

    @property
    def in_flight(self) -> int:
        """Copies waiting for the shadow's answer."""
        return len(self._tasks)

    def answered(
        self,
        request: Request,
        path: bytes,
        headers: Headers,
        *,
        request_id: str,
        revision: str,
        version: str,
        status: int,
        output: bytes,
        latency_ms: float,
    ) -> None:
        """The primary ``revision`` answered a main-route request: log it, maybe copy it.

        ``headers`` are those sent to the primary (the request id among them).
        """
        now = time.time()
        self._record(
            Prediction(
                request_id, now - latency_ms / 1000, self.model, version, revision, "primary",
                request.body, status, output, latency_ms,
            )
        )  # fmt: skip
        shadow = self._shadow
        if shadow is None or (shadow.target.primary and shadow.target.primary != revision):
            return
        if shadow.target.percent < 100 and self._random.random() * 100 >= shadow.target.percent:
            return
        if len(self._tasks) >= self.max_in_flight:
            self._requests.labels(shadow.target.revision, "dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(
            self._copy(shadow, request, path, headers, request_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _copy(
        self, shadow: _Shadow, request: Request, path: bytes, headers: Headers, request_id: str
    ) -> None:
        target = shadow.target
        payload = encode_request(
            request.method, shadow.prefix + path, shadow.host, shadow.port, headers, request.body
        )
        sent, started = time.time(), time.perf_counter()
        output = b""
        try:
            # The pool's own timer ends a hung exchange (and closes its connection); this
            # bound also covers a connect that hangs.
            async with asyncio.timeout(2 * self.timeout):
                reply = await self._pool.exchange(shadow.host, shadow.port, payload)
            status, output = reply.status, reply.body
            result = "ok" if status < 500 else "error"
        except TimeoutError:
            status, result = 504, "timeout"
        except OSError:  # ConnectionError is one
            status, result = 502, "error"
        except Exception:  # a copy must never take the router down
            _log.exception("copy of %s to shadow %s failed", request_id, target.revision)
            status, result = 502, "error"
        latency_ms = (time.perf_counter() - started) * 1000
        self._requests.labels(target.revision, result).inc()
        self._record(
            Prediction(
                request_id, sent, self.model, target.version, target.revision, "shadow",
                request.body, status, output, latency_ms,
            )
        )  # fmt: skip

    def _record(self, prediction: Prediction) -> None:
        try:
            self.sink.record(prediction)
        except Exception:  # the log must never fail a client's request
            if not self._sink_failed:
                _log.exception(
                    "the prediction sink of %s failed; answers are not logged", self.model
                )
            self._sink_failed = True

    async def close(self) -> None:
        """Cancel the copies in flight and close the shadow's connections."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.close()
