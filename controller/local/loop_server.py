"""An HTTP/1.1 server on an event loop thread of its own: the frame of every local router.

The local target answers requests in the runtime's process: an InferenceService's router
(:mod:`controller.local.router`) and an InferenceGraph's (:mod:`controller.local.graph_router`)
each listen on a port of their own, on their own thread, so that a slow model or a busy graph
never stalls the runtime's loop or another router. What they share is here: the thread and its
event loop (uvloop when installed), binding the port (a port that cannot be bound is a
:class:`ConfigError` naming it), the connections (:mod:`controller.local.serving.http1`), and
a stop that closes them all. A subclass answers each request in :meth:`LoopServer.handle` and
closes what it opened in :meth:`LoopServer.closing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Self

from controller.errors import ConfigError
from controller.local.processes import free_port
from controller.local.serving.http1 import ClientConnection, Request

__all__ = ["LoopServer"]


class LoopServer:
    """Serves ``handle`` on ``host:port`` from its own thread once started."""

    def __init__(self, *, name: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        #: What errors and the thread's name call it ("the router of fraud").
        self.server_name = name
        self.host = host
        self.port = port or free_port()
        self._clients: set[asyncio.Transport] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: OSError | None = None

    @property
    def url(self) -> str:
        """Where clients send requests (``http://host:port``), e.g. ``{url}/v1/models/NAME:predict``
        to an InferenceService's router."""
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: Request) -> bytes:
        """The encoded response to ``request`` (a subclass answers)."""
        raise NotImplementedError

    async def closing(self) -> None:
        """Close what the subclass opened on the loop (called once, as the server stops)."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        """Listen on ``host:port``; :class:`ConfigError` when the port cannot be bound."""
        if self._thread is not None:
            raise RuntimeError(f"{self.server_name} was already started")
        name = self.server_name.removeprefix("the ").replace(" ", "-")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise ConfigError(f"{self.server_name} did not start within {timeout:g}s")
        if self._error is not None:
            raise ConfigError(
                f"{self.server_name} cannot listen on {self.host}:{self.port}: "
                f"{self._error.strerror}; choose another port"
            ) from self._error
        return self

    def stop(self) -> None:
        """Stop listening, close every connection (idempotent)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and loop.is_running():
            loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(10.0)

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await self._loop.create_server(
                lambda: ClientConnection(self.handle, self._clients),
                self.host,
                self.port,
                reuse_address=True,
            )
        except OSError as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        server.close()
        for transport in list(self._clients):
            transport.close()
        await self.closing()
        await server.wait_closed()
