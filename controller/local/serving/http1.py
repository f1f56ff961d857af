"""HTTP/1.1 between clients, the local router and model servers: asyncio protocols, httptools.

The router (:mod:`controller.local.router`) sits in front of every request to a model, so
what it costs per request matters. aiohttp on both sides added 0.6-0.9 ms per request in
front of a 5 ms model on two cores; these protocols, with the C parser uvicorn uses, add about
0.2 ms. They do only what a reverse proxy for JSON inference needs: whole bodies (read fully,
sent with ``Content-Length``), keep-alive, answers in request order on a connection, and
``Expect: 100-continue`` (curl sends it for bodies over 1 kB).
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, cast

import httptools

__all__ = [
    "HOP_BY_HOP",
    "ClientConnection",
    "Reply",
    "Request",
    "UpstreamPool",
    "encode_request",
    "encode_response",
]

# Hop-by-hop headers (RFC 9110 7.6.1) and the framing headers the proxy writes itself.
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
        b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"expect",
    }
)  # fmt: skip
_IDLE_SECONDS = 30.0  # pooled connections idle longer are closed (kserve keeps them 65 s)

Headers = list[tuple[bytes, bytes]]


class Request(NamedTuple):
    """A request as received: method, request target (path and query), headers, body."""

    method: bytes
    url: bytes
    headers: Headers
    body: bytes


class Reply(NamedTuple):
    """An upstream's answer."""

    status: int
    headers: Headers
    body: bytes


def encode_request(
    method: bytes, target: bytes, host: str, port: int, headers: Headers, body: bytes
) -> bytes:
    """A request for ``host:port`` with ``headers`` minus hop-by-hop ones."""
    lines = [b"%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (method, target, host.encode(), port)]
    lines += [k + b": " + v + b"\r\n" for k, v in headers if k.lower() not in HOP_BY_HOP]
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    return b"".join(lines) + body


def encode_response(status: int, headers: Headers, body: bytes) -> bytes:
    """A response with ``headers`` minus hop-by-hop ones and a ``Content-Length``."""
    try:
        reason = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b"Unknown"
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    lines += [k + b": " + v + b"\r\n" for k, v in headers if k.lower() not in HOP_BY_HOP]
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    return b"".join(lines) + body


class _UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream, carrying one exchange at a time."""

    def __init__(self, idle: list[_UpstreamConnection]) -> None:
        self._idle = idle
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future[Reply] | None = None
        self._headers: Headers = []
        self._body: list[bytes] = []
        self.received = False  # any byte of the current reply
        self.used_at = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    async def exchange(self, request: bytes, timeout: float) -> Reply:
        """Send one request and wait for its reply."""
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Reply] = loop.create_future()
        self._reply, self._headers, self._body, self.received = reply, [], [], False
        self._transport.write(request)
        timer = loop.call_later(timeout, self._expire)  # asyncio.wait_for costs a task
        try:
            return await reply
        finally:
            timer.cancel()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _expire(self) -> None:
        self._fail(TimeoutError())
        self.close()

    def _fail(self, exc: Exception) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad reply: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        reply, self._reply = self._reply, None
        if self._parser.should_keep_alive():
            self.used_at = time.monotonic()
            self._idle.append(self)
        else:
            self.close()
        if reply is not None and not reply.done():
            body = b"".join(self._body)
            reply.set_result(Reply(self._parser.get_status_code(), self._headers, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self._idle:
            self._idle.remove(self)
        self._fail(ConnectionError(f"connection closed: {exc or 'by the server'}"))


class UpstreamPool:
    """Keep-alive connections per upstream ``(host, port)``, used from one event loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[tuple[str, int], list[_UpstreamConnection]] = {}

    async def exchange(self, host: str, port: int, request: bytes) -> Reply:
        """Send ``request``; ``OSError`` (``ConnectionError``) if the upstream cannot be
        reached or hangs up, ``TimeoutError`` after ``timeout`` seconds. A pooled connection
        the server closed while it was idle is replaced once, transparently."""
        idle = self._idle.setdefault((host, port), [])
        while idle:
            connection = idle.pop()
            if time.monotonic() - connection.used_at < _IDLE_SECONDS:
                try:
                    return await connection.exchange(request, self.timeout)
                except ConnectionError:
                    if connection.received:
                        raise
                    break
            connection.close()
        loop = asyncio.get_running_loop()
        _, fresh = await loop.create_connection(lambda: _UpstreamConnection(idle), host, port)
        return await fresh.exchange(request, self.timeout)

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in list(idle):
                connection.close()


class ClientConnection(asyncio.Protocol):
    """One client's connection: each parsed request goes to ``handler``, whose encoded
    response is written back in request order. ``open`` tracks live connections."""

    def __init__(
        self, handler: Callable[[Request], Awaitable[bytes]], open: set[asyncio.Transport]
    ) -> None:
        self._handler = handler
        self._open = open
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._previous: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._open.add(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(encode_response(400, [], b"bad request"), keep_alive=False)

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if any(k.lower() == b"expect" and v.lower() == b"100-continue" for k, v in self._headers):
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n", keep_alive=True)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        request = Request(method, self._url, self._headers, b"".join(self._body))
        answer = self._answer(request, self._parser.should_keep_alive(), self._previous)
        self._previous = asyncio.ensure_future(answer)

    async def _answer(
        self, request: Request, keep_alive: bool, previous: asyncio.Future[None] | None
    ) -> None:
        response = await self._handler(request)
        if previous is not None:
            await previous  # a pipelining client gets its answers in order
        self._write(response, keep_alive)

    def _write(self, data: bytes, keep_alive: bool) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            if not keep_alive:
                self._transport.close()
