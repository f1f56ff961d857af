"""How ``sluice serve``'s routes reach the network: Starlette's routing on uvicorn, in a thread.

A route is a plain function from a :class:`Request` (read in full) to a :class:`Response`, in a
table keyed by method and path (:data:`Route`), so routes are tested without sockets or an
event loop. :func:`build_app` turns the table into a Starlette application, which
``starlette.testclient.TestClient`` drives in tests; :class:`SluiceServer` serves it with
uvicorn from a background thread, on a socket it binds itself, so port 0 works, the bound
port is known as soon as :meth:`SluiceServer.start` returns, and a taken port is a
:class:`~controller.errors.ConfigError` there rather than a log line in the thread.

Routes run in Starlette's thread pool (anyio's, 40 threads): they block (a registry call, a
file write) without holding up the event loop. The limits are the ones of the standard-library
server this replaced (issue #15): a body must declare its length (a POST without
``Content-Length`` is 411) and stay under ``max_body_bytes`` (413), both before any route
runs; a client that has not sent its whole request within ``request_timeout_seconds`` is
dropped (uvicorn alone only times out idle keep-alive connections); and every response closes
its connection, so nothing waits on an idle client. It binds 127.0.0.1 unless told otherwise:
it is meant to sit behind a Kubernetes Service or an ingress that terminates TLS. uvicorn
speaks HTTP/1.1 through h11 on the asyncio loop whatever else is installed, as in the
controller's image.

Why Starlette and not the standard library's ``ThreadingHTTPServer`` it replaced:
``benchmarks/serve_http.py`` (2 shared cores, each server in a process of its own, a new
connection per request) measured the two, and the difference does not matter at Sluice's few
requests a second. One client at a time, Starlette adds about a quarter of a millisecond at
p50 (``GET /healthz`` 0.75 against 0.49 ms, a signed ``POST /hooks/mlflow`` 0.85 against
0.61 ms) and a few at p99 (9.9 against 4.8 ms, 9.5 against 7.4 ms); with 8 clients at once it
serves more (2,173 against 885 and 964 against 871 requests/s), since the old server's listen
backlog of 5 overflowed and dropped connections that came back a second later. For that,
routing, request parsing and response writing are the library's, and tests drive the
application through ``TestClient`` without sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from controller.errors import ConfigError
from controller.redact import redact

__all__ = ["Handler", "Request", "Response", "Route", "SluiceServer", "build_app"]

_log = logging.getLogger("sluice.server")

DEFAULT_MAX_BODY_BYTES = 1 << 20


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


def build_app(
    routes: Mapping[Route, Handler], *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """The Starlette application serving ``routes``: a path outside the table is 404 ``{"error":
    "not found"}``, a method the path lacks 405 with ``Allow``, a route that raises 500
    ``{"error": "internal error"}`` (logged in one redacted line). ``GET`` routes answer
    ``HEAD`` too, without a body."""
    by_path: dict[str, dict[str, Handler]] = {}
    for (method, path), handler in routes.items():
        by_path.setdefault(path, {})[method.upper()] = handler
    table = [
        StarletteRoute(path, _endpoint(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]

    async def not_found(request: StarletteRequest, exc: Exception) -> StarletteResponse:
        return _starlette(Response.json(404, {"error": "not found"}))

    async def not_allowed(request: StarletteRequest, exc: Exception) -> StarletteResponse:
        allow = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        methods = sorted(method.strip() for method in allow.split(",") if method.strip())
        return _starlette(Response(405, b"", headers={"Allow": ", ".join(methods)}))

    app = Starlette(
        routes=table,
        middleware=[Middleware(_RequestLimits, max_body_bytes=max_body_bytes)],
        exception_handlers={404: not_found, 405: not_allowed},
    )
    # /healthz/ is not /healthz: no redirect to a path the table does not name.
    app.router.redirect_slashes = False
    return app


def _endpoint(
    handlers: Mapping[str, Handler],
) -> Callable[[StarletteRequest], Awaitable[StarletteResponse]]:
    async def respond(request: StarletteRequest) -> StarletteResponse:
        method = request.method
        path = str(request.scope["path"])
        # Starlette lets HEAD through wherever GET is allowed.
        handler = handlers.get(method) or handlers["GET"]
        try:
            body = await request.body()
        except ClientDisconnect:
            _log.debug("%s %s: the client went away before its body was read", method, path)
            return StarletteResponse(status_code=400)  # nobody is left to read it
        query = bytes(request.scope.get("query_string", b"")).decode("latin-1")
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            answer = await run_in_threadpool(handler, Request(method, path, headers, body, query))
        except Exception as exc:
            _log.error("%s %s failed: %s", method, path, _one_line(exc))
            answer = Response.json(500, {"error": "internal error"})
        _log.debug("%s %s %d", method, redact(path), answer.status)
        return _starlette(answer)

    return respond


def _starlette(response: Response) -> StarletteResponse:
    headers = {
        "Content-Type": response.content_type,
        "Cache-Control": "no-store",
        # One request per connection: no idle keep-alive connection to time out.
        "Connection": "close",
        **response.headers,
    }
    return StarletteResponse(response.body, response.status, headers=headers)


class _RequestLimits:
    """ASGI middleware: refuses a body of unknown length or over the limit before routing."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await _starlette(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {bytes(name).lower(): bytes(value) for name, value in scope["headers"]}
        length = headers.get(b"content-length")
        if length is None:
            if scope["method"] == "POST" or b"transfer-encoding" in headers:
                return Response.json(411, {"error": "Content-Length required"})
            return None
        if not length.isascii() or not length.isdigit():
            return Response.json(400, {"error": "malformed Content-Length"})
        if int(length) > self.max_body_bytes:
            return Response.json(413, {"error": "body too large"})
        return None


class _DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request has not arrived in full
    within :attr:`deadline_seconds` of its opening (uvicorn waits on it forever)."""

    deadline_seconds = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.deadline_seconds, self._drop)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.more_body:
            self._disarm()  # read in full: the route takes the time it needs

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _drop(self) -> None:
        self._deadline = None
        _log.debug("dropped a client that sent no whole request in %s s", self.deadline_seconds)
        self.transport.close()


class SluiceServer:
    """Serves a route table on ``host:port`` from a background thread.

    ``port=0`` picks a free port (see :attr:`port` once started). Use as a context manager, or
    call :meth:`start` and :meth:`stop`. :attr:`app` is the Starlette application itself, for
    ``TestClient``.
    """

    def __init__(
        self,
        routes: Mapping[Route, Handler],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        request_timeout_seconds: float = 10.0,
    ) -> None:
        self.routes = dict(routes)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.request_timeout_seconds = request_timeout_seconds
        self.app = build_app(self.routes, max_body_bytes=max_body_bytes)
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._bound_port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when started with port 0)."""
        return self._requested_port if self._bound_port is None else self._bound_port

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8089``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve; :class:`ConfigError` if the address cannot be bound."""
        if self._server is not None:
            return self
        sock = self._listen()

        class Protocol(_DeadlineProtocol):
            deadline_seconds = self.request_timeout_seconds

        config = uvicorn.Config(
            self.app,
            http=Protocol,
            loop="asyncio",
            ws="none",
            lifespan="off",
            # uvicorn's own lines (started, shutting down) stay out of Sluice's log.
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, math.ceil(self.request_timeout_seconds)),
        )
        server = uvicorn.Server(config)
        self._socket, self._server = sock, server
        self._bound_port = int(sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self._serve, args=(server, sock), name="sluice-http", daemon=True
        )
        self._thread.start()
        _log.info("listening on %s", self.url)
        return self

    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            # Listening before the loop starts: a client connecting right after start() waits
            # in the backlog instead of being refused.
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.host}:{self._requested_port} ({exc.strerror}); "
                "choose another host or port, or stop what listens there"
            ) from None
        return sock

    @staticmethod
    def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # a thread's exception would vanish into stderr
            _log.error("the HTTP server stopped: %s", _one_line(exc))
        finally:
            sock.close()

    def stop(self) -> None:
        """Stop serving and free the port (idempotent). A request already being answered gets
        up to ``request_timeout_seconds`` to finish."""
        server, thread, sock = self._server, self._thread, self._socket
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join()
        if sock is not None:
            sock.close()
        self._server, self._thread, self._socket, self._bound_port = None, None, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
