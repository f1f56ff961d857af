"""The HTTP side of ``sluice serve``: health, metrics and the webhooks that wake the loop.

Routes are plain functions from a :class:`Request` to a :class:`Response`, kept in a table keyed
by method and path, so each is tested without sockets and later routes (``POST
/hooks/alertmanager``, built in :mod:`controller.alertmanager_hook`) are one more entry in
:func:`sluice_routes`.

The transport is the standard library's ``ThreadingHTTPServer``, not FastAPI and uvicorn: a
handful of small JSON and text routes need no framework, the raw body that a webhook signature
covers is at hand without middleware, and a server started on port 0 in a thread stops with
one ``shutdown()`` call, which keeps tests in-process. It binds 127.0.0.1 unless told
otherwise; it is meant to sit behind a Kubernetes Service or an ingress that terminates TLS.
Bodies must declare their length and stay under ``max_body_bytes``, and a client that stalls
is dropped after ``request_timeout_seconds``.

Metrics live in a ``CollectorRegistry`` owned by :class:`ServeMetrics`, never the global one,
so two servers in one process (as in the tests) count separately.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from controller.errors import ConfigError
from controller.redact import redact
from controller.webhooks import ReplayGuard, WebhookRejected, verify_mlflow_delivery

__all__ = [
    "Handler",
    "Request",
    "Response",
    "Route",
    "ServeMetrics",
    "SluiceServer",
    "health_route",
    "metrics_route",
    "mlflow_hook_route",
    "page_route",
    "sluice_routes",
]

_log = logging.getLogger("sluice.server")

#: Alias events wake the loop; their payload names the model and alias (MLflow 3).
_ALIAS_ENTITY = "model_version_alias"
_REJECTION_RESULTS = {400: "malformed", 401: "unauthorized", 409: "replayed"}


@dataclass(frozen=True)
class Request:
    """One HTTP request, read in full. Header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: str = ""


@dataclass(frozen=True)
class Response:
    """What a route answers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(value).encode("utf-8"), "application/json")


Handler = Callable[[Request], Response]
#: (method, path), e.g. ``("POST", "/hooks/mlflow")``.
Route = tuple[str, str]


class ServeMetrics:
    """The counters of ``sluice serve``, in a registry of their own.

    It is also the :class:`~controller.watch.WatchObserver` of the watcher, so the loop and the
    HTTP side report into one ``/metrics``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self._deliveries = counter(
            "sluice_webhook_deliveries",
            "Webhook requests by sender and result (queued, ignored, malformed, unauthorized, "
            "replayed, error).",
            ["source", "result"],
        )
        self._polls = counter("sluice_poll_runs", "Full registry polls by result.", ["result"])
        self._proposals = counter(
            "sluice_proposals_triggered",
            "New alias versions handed to the proposal step, by model and cause "
            "(startup, poll, webhook).",
            ["model", "trigger"],
        )
        self._errors = counter(
            "sluice_watch_errors",
            "Failed registry lookups and proposal steps, by model and stage.",
            ["model", "stage"],
        )
        self._retrains = counter(
            "sluice_retrains",
            "Retrainings asked for by drift alerts, by model, environment and result (started, "
            "cooldown, unknown-model, failed).",
            ["model", "environment", "result"],
        )
        # Series that exist from the start, so that rate() and absent() work before any event.
        for result in ("ok", "error"):
            self._polls.labels(result)
        for result in ("queued", "ignored", *_REJECTION_RESULTS.values()):
            self._deliveries.labels("mlflow", result)
        for result in ("accepted", "ignored", "malformed", "unauthorized", "error"):
            self._deliveries.labels("alertmanager", result)

    def webhook_delivery(self, source: str, result: str) -> None:
        """Count one webhook request."""
        self._deliveries.labels(source, result).inc()

    def poll_finished(self, result: str) -> None:
        """Count one full poll."""
        self._polls.labels(result).inc()

    def proposal_triggered(self, model: str, trigger: str) -> None:
        """Count one call of the proposal step."""
        self._proposals.labels(model, trigger).inc()

    def watch_error(self, model: str, stage: str) -> None:
        """Count one failed lookup or proposal step."""
        self._errors.labels(model, stage).inc()

    def retrain(self, model: str, environment: str, result: str) -> None:
        """Count one retraining asked for by an alert, by what became of it."""
        self._retrains.labels(model, environment, result).inc()


# -- routes -------------------------------------------------------------------------------------


def health_route(status: Callable[[], Mapping[str, object]]) -> Handler:
    """``GET /healthz``: 200 with ``{"status": "ok", ...}`` and the loop's own status."""

    def health(request: Request) -> Response:
        return Response.json(200, {"status": "ok", **status()})

    return health


def metrics_route(metrics: ServeMetrics) -> Handler:
    """``GET /metrics``: Prometheus text format."""

    def exposition(request: Request) -> Response:
        return Response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)

    return exposition


def page_route(render: Callable[[], str]) -> Handler:
    """``GET /``: the read-only status page ``render()`` writes (HTML)."""

    def page(request: Request) -> Response:
        return Response(200, render().encode("utf-8"), "text/html; charset=utf-8")

    return page


def mlflow_hook_route(
    *,
    secret: str,
    trigger: Callable[[str, str], bool],
    metrics: ServeMetrics,
    guard: ReplayGuard | None = None,
    clock: Callable[[], float] = time.time,
    max_age_seconds: float = 300.0,
) -> Handler:
    """``POST /hooks/mlflow``: verify a registry delivery and wake the loop for its model.

    ``trigger(model, alias)`` queues a check and says whether the pair is watched. Answers 200
    ``{"result": "queued" | "ignored"}`` (MLflow counts any status below 400 as delivered),
    400/401/409 ``{"error": reason}`` on rejection, and 500 if queueing failed, which MLflow
    retries with the same delivery id.
    """
    if not secret:
        raise ConfigError("the MLflow webhook route needs a secret: set SLUICE_WEBHOOK_SECRET")
    # Not `guard or ...`: an empty guard is falsy (it has a length).
    replays = guard if guard is not None else ReplayGuard(max_age_seconds=max_age_seconds)

    def receive(request: Request) -> Response:
        now = clock()
        try:
            delivery = verify_mlflow_delivery(
                request.headers,
                request.body,
                secret=secret,
                now=now,
                max_age_seconds=max_age_seconds,
            )
            replays.admit(delivery.delivery_id, delivery.timestamp, now=now)
        except WebhookRejected as rejected:
            metrics.webhook_delivery("mlflow", _REJECTION_RESULTS.get(rejected.status, "error"))
            _log.warning("POST /hooks/mlflow: %s", rejected.message)
            return Response.json(rejected.status, {"error": rejected.reason})
        if delivery.entity != _ALIAS_ENTITY or delivery.model is None or delivery.alias is None:
            metrics.webhook_delivery("mlflow", "ignored")
            return Response.json(200, {"result": "ignored", "event": delivery.event})
        try:
            queued = trigger(delivery.model, delivery.alias)
        except Exception as exc:
            # Let MLflow's retry (same delivery id) through: we did not act on this one.
            replays.forget(delivery.delivery_id)
            metrics.webhook_delivery("mlflow", "error")
            _log.error("POST /hooks/mlflow: queueing failed: %s", _one_line(exc))
            return Response.json(500, {"error": "could not queue the delivery"})
        result = "queued" if queued else "ignored"
        metrics.webhook_delivery("mlflow", result)
        what = f"{delivery.event} {delivery.model}@{delivery.alias}={delivery.version}"
        _log.info("POST /hooks/mlflow: %s: %s", what, result)
        return Response.json(200, {"result": result, "delivery_id": delivery.delivery_id})

    return receive


def sluice_routes(
    *,
    metrics: ServeMetrics,
    status: Callable[[], Mapping[str, object]],
    mlflow_trigger: Callable[[str, str], bool],
    mlflow_webhook_secret: str | None,
    clock: Callable[[], float] = time.time,
    max_age_seconds: float = 300.0,
    alertmanager_hook: Handler | None = None,
    feedback: Handler | None = None,
    replay_file: Path | None = None,
    page: Callable[[], str] | None = None,
) -> dict[Route, Handler]:
    """Every route of ``sluice serve``; ``POST /hooks/mlflow`` only when a secret is set,
    ``POST /hooks/alertmanager`` and ``POST /v1/feedback`` only when their handlers are given
    (:func:`controller.alertmanager_hook.alertmanager_hook_route`,
    :func:`controller.feedback.feedback_route`), and ``GET /`` when ``page`` renders it.
    ``replay_file`` keeps the MLflow deliveries already received across restarts
    (:class:`~controller.webhooks.ReplayGuard`)."""
    routes: dict[Route, Handler] = {
        ("GET", "/healthz"): health_route(status),
        ("GET", "/metrics"): metrics_route(metrics),
    }
    if mlflow_webhook_secret:
        routes["POST", "/hooks/mlflow"] = mlflow_hook_route(
            secret=mlflow_webhook_secret,
            trigger=mlflow_trigger,
            metrics=metrics,
            clock=clock,
            max_age_seconds=max_age_seconds,
            guard=ReplayGuard(max_age_seconds=max_age_seconds, path=replay_file),
        )
    if alertmanager_hook is not None:
        routes["POST", "/hooks/alertmanager"] = alertmanager_hook
    if feedback is not None:
        routes["POST", "/v1/feedback"] = feedback
    if page is not None:
        routes["GET", "/"] = page_route(page)
    return routes


# -- transport ----------------------------------------------------------------------------------


class SluiceServer:
    """Serves a route table on ``host:port`` from a background thread.

    ``port=0`` picks a free port (see :attr:`port` once started). Use as a context manager, or
    call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        routes: Mapping[Route, Handler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = 1 << 20,
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self.routes = dict(routes)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.request_timeout_seconds = request_timeout_seconds
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when started with port 0)."""
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8089``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve; :class:`ConfigError` if the address cannot be bound."""
        if self._httpd is not None:
            return self
        server_class = _HTTPServer6 if ":" in self.host else _HTTPServer
        try:
            httpd = server_class((self.host, self._requested_port), _RequestHandler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.host}:{self._requested_port} ({exc.strerror}); "
                "choose another host or port, or stop what listens there"
            ) from None
        httpd.app = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="sluice-http"
        )
        self._thread.daemon = True
        self._thread.start()
        _log.info("listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def handle(self, request: Request) -> Response:
        """Answer one request from the route table (404, 405 and 500 included)."""
        methods = {method for method, path in self.routes if path == request.path}
        if not methods:
            return Response.json(404, {"error": "not found"})
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            allow = ", ".join(sorted(methods))
            return Response(405, b"", headers={"Allow": allow})
        try:
            return handler(request)
        except Exception as exc:
            _log.error("%s %s failed: %s", request.method, request.path, _one_line(exc))
            return Response.json(500, {"error": "internal error"})


class _HTTPServer(ThreadingHTTPServer):
    app: SluiceServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup nothing here needs.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _RequestHandler(BaseHTTPRequestHandler):
    # One request per connection: no idle keep-alive connections holding threads.
    protocol_version = "HTTP/1.0"
    server_version = "sluice"
    sys_version = ""

    @property
    def app(self) -> SluiceServer:
        return cast(_HTTPServer, self.server).app

    def setup(self) -> None:
        super().setup()
        # A client that stalls mid-request is dropped instead of holding a thread.
        self.connection.settimeout(self.app.request_timeout_seconds)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = b""
        if self.command == "POST":
            length = headers.get("content-length")
            if length is None:
                self._send(Response.json(411, {"error": "Content-Length required"}))
                return
            if not length.isascii() or not length.isdigit():
                self._send(Response.json(400, {"error": "malformed Content-Length"}))
                return
            if int(length) > self.app.max_body_bytes:
                self._send(Response.json(413, {"error": "body too large"}))
                return
            body = self.rfile.read(int(length))
        request = Request(self.command, path, headers, body, query)
        self._send(self.app.handle(request))

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            _log.debug("client went away before the response was sent")

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("%s %s", self.address_string(), redact(format % args))


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
