"""``X-Sluice-Revision`` on every answer of the model server: which revision answered.

An InferenceGraph's router labels each step call with the member revision that answered it
(the step series, :mod:`controller.local.graph_metrics`), read from the answer's
``X-Sluice-Revision`` header. Locally each InferenceService's router adds it
(:mod:`controller.local.router`); on a cluster the request passes Knative's activator and the
revision's queue-proxy instead, neither of which names the revision, so the model server says
it itself. Knative sets ``K_REVISION`` (the revision's name, e.g. ``fraud-predictor-00002``)
in the environment of every revision's user container; where it is unset (KServe's
RawDeployment mode, a local process) no header is added.

The header is added outside Starlette's outermost error middleware
(:func:`answer_with_revision` wraps the app's whole middleware stack), so a 500 of kserve's
generic exception handler, a failing canary's typical answer, names its revision too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["REVISION_HEADER", "RevisionHeader", "answer_with_revision"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The header, as ASGI spells header names (lower case).
REVISION_HEADER = b"x-sluice-revision"


class RevisionHeader:
    """ASGI middleware: every HTTP answer of ``app`` carries ``X-Sluice-Revision: revision``
    (replacing one the app set)."""

    def __init__(self, app: ASGIApp, revision: str) -> None:
        self.app = app
        self.revision = revision.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if bytes(name).lower() != REVISION_HEADER
                ]
                headers.append((REVISION_HEADER, self.revision))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_named)


def answer_with_revision(app: Any, revision: str | None) -> None:
    """Make every answer of the Starlette (FastAPI) ``app`` name ``revision``; nothing when it
    is None or empty. Call before the app serves its first request: Starlette builds its
    middleware stack then, and this wraps what it builds, its error middleware included."""
    if not revision:
        return
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_named() -> ASGIApp:
        return RevisionHeader(build(), revision)

    setattr(app, "build_middleware_stack", build_named)  # noqa: B010 (an instance's method)
