"""The only test double in Sluice: a local HTTP server standing in for GitHub's REST API.

Sluice's realism rules say its tests run against the real thing: real git repositories, real
services, real HTTP. GitHub is the one dependency that is unreachable from where the tests run,
so this server takes its place, and it is the only test double Sluice has. To keep what it fakes
as small as possible it implements only the endpoints Sluice calls through PyGithub; every other
request answers 404 in GitHub's shape and is recorded, so a test notices an unexpected call.

It is realistic where Sluice can tell the difference: PyGithub is pointed at it exactly as at
GitHub Enterprise (`Github(base_url=server.api_url, auth=Auth.Token(server.token))`), so base
URL handling, the Authorization header, pagination through `Link` headers, JSON error shapes and
rate-limit headers all go through PyGithub's real code. Branches and commits are never modelled:
each repository is a real bare git repository on disk (the remote Sluice pushes to), pull
requests are validated against its refs, and merging a pull request makes a real merge commit in
it. Only what GitHub keeps beside git (pull requests, comments, labels, statuses, dispatches)
lives in memory, per server instance, behind one lock.

Endpoints (under /api/v3, handlers in `github_routes`): GET /repos/{o}/{r}; GET and POST
.../pulls; GET and PATCH .../pulls/{n}; GET and PUT .../pulls/{n}/merge; GET .../issues/{n};
GET and POST .../issues/{n}/comments; PATCH .../issues/comments/{id}; GET, POST and PUT
.../issues/{n}/labels; DELETE .../issues/{n}/labels/{name}; POST .../statuses/{sha};
GET .../statuses/{ref} and .../commits/{ref}/statuses; GET .../commits/{ref}/status;
GET .../commits/{ref}; POST .../dispatches; GET and POST .../pulls/{n}/reviews;
PUT .../pulls/{n}/reviews/{id}/dismissals.

The server's token is its own user's (`login`, "sluice-bot"); `add_user` gives another user a
token of their own, so a test can review a pull request as a person does (GitHub refuses an
author's approval of their own pull request, and so does this server).

GitHub's limits are enforced as GitHub enforces them: pull request and issue comment bodies
over 65,536 characters and commit status descriptions over 140 answer 422 "Validation Failed",
and a merge whose base branch moved under it answers 405. The limits a test cannot reach by
itself are switched on per endpoint: `rate_limit_next` answers 429 with `Retry-After` (a secondary
rate limit) or 403 with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` (the primary limit),
and `forbid` answers 403 "Resource not accessible by integration" (a token without the
permission the endpoint needs).

The token is only ever compared: it is never logged, and `requests` records no headers.
PyGithub throttles by default (0.25 s between requests, 1 s between writes); pass
`seconds_between_requests=None, seconds_between_writes=None` to keep tests fast.
"""

from __future__ import annotations

import hmac
import json
import re
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .github_render import Renderer
from .github_routes import dispatch
from .github_state import ApiError, Dispatch, GitHubState, Reply

__all__ = ["Dispatch", "GitHubApiServer", "RecordedRequest"]

API_PREFIX = "/api/v3"
RATE_LIMIT = 5000


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server answered: never its headers, so never the token."""

    method: str
    path: str  # without the /api/v3 prefix
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int


#: GitHub's message for a token without the permission an endpoint needs.
NOT_ACCESSIBLE = "Resource not accessible by integration"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: every matching request, until lifted
    pattern: re.Pattern[str] | None
    message: str
    after_effect: bool
    method: str | None = None
    headers: Callable[[], dict[str, str]] | None = None
    documentation_url: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.pattern is None or self.pattern.fullmatch(path) is not None


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"  # keep-alive, as PyGithub's requests session expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: test output is not the place for request lines."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        reply = self.server.api.answer(
            self.command, self.path, raw, self.headers.get("Authorization")
        )
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: GitHubApiServer) -> None:
        self.api = api
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup, which can stall on some hosts."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class GitHubApiServer:
    """GitHub's REST API, as much of it as Sluice uses, on 127.0.0.1 in a daemon thread.

    `repositories` maps "owner/name" to the path of a bare git repository. The server starts
    when constructed; use it as a context manager (or call `stop()`) to shut it down.
    """

    def __init__(
        self,
        token: str,
        repositories: Mapping[str, Path] | None = None,
        *,
        login: str = "sluice-bot",
    ) -> None:
        self.token = token
        self.login = login
        #: Every token this server accepts, and whose it is.
        self._users: dict[str, str] = {token: login}
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._used = 0
        self._reset = int(time.time()) + 3600
        self._http = _HttpServer(self)
        host, port = self._http.server_address[:2]
        self.web_url = f"http://{host!s}:{port}"
        self.api_url = f"{self.web_url}{API_PREFIX}"
        self._state = GitHubState(Renderer(self.api_url, self.web_url), login, repositories or {})
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.05,), name=f"github-api-{port}", daemon=True
        )
        self._thread.start()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> GitHubApiServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread.is_alive():
            self._http.shutdown()
            self._thread.join()
        self._http.server_close()

    # -- what tests set up and inspect -----------------------------------------------------------

    def add_repository(self, full_name: str, git_dir: Path) -> None:
        """Serve one more repository ("owner/name" backed by the bare repository `git_dir`)."""
        with self._lock:
            self._state.add_repository(full_name, git_dir)

    def add_user(self, login: str) -> str:
        """A token for another user, ``login`` (a reviewer): requests made with it are that
        user's."""
        token = f"ghp_{uuid.uuid4().hex}"
        with self._lock:
            self._users[token] = login
        return token

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def dispatches(self) -> list[Dispatch]:
        """A snapshot of the repository_dispatch events received, oldest first."""
        with self._lock:
            return list(self._state.dispatches)

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """The recorded requests with this method whose path (no prefix) fully matches."""
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    def fail_next(
        self,
        status: int,
        count: int = 1,
        path_regex: str | None = None,
        *,
        message: str | None = None,
        after_effect: bool = False,
    ) -> None:
        """Answer the next `count` requests (whose path fully matches `path_regex`) with `status`.

        By default the failing requests change nothing, like a gateway error in front of GitHub.
        With `after_effect=True` the request takes effect first and only its answer is lost, like
        a timeout after GitHub has acted: the case that makes retries need to be idempotent.
        """
        pattern = re.compile(path_regex) if path_regex is not None else None
        text = message or HTTPStatus(status).phrase
        with self._lock:
            self._faults.append(_Fault(status, count, pattern, text, after_effect))

    def rate_limit_next(
        self,
        path_regex: str,
        count: int = 1,
        *,
        method: str | None = None,
        retry_after: int | None = None,
        reset_in: int | None = None,
        status: int | None = None,
    ) -> None:
        """Answer the next `count` requests to an endpoint as a rate-limited GitHub does.

        With `retry_after` (seconds): a secondary rate limit, 429 with a `Retry-After` header.
        With `reset_in` (seconds from each answer): the primary limit, 403 with
        `X-RateLimit-Remaining: 0`, `X-RateLimit-Reset` (epoch seconds) and "API rate limit
        exceeded for ...". GitHub documents both statuses for both limits; `status` overrides.
        A rate-limited request changes nothing. `method` narrows the endpoint to one verb.
        """
        if (retry_after is None) == (reset_in is None):
            raise ValueError("give exactly one of retry_after (secondary) or reset_in (primary)")
        user_id = self._state.render.user(self.login)["id"]

        def headers() -> dict[str, str]:
            if retry_after is not None:
                return {"Retry-After": str(retry_after)}
            assert reset_in is not None
            return {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + reset_in),
            }

        if retry_after is not None:
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                "try again. If you reach out to GitHub Support for help, please include the "
                "request ID 0000:0000:0000000:0000000:00000000."
            )
            default_status = 429
        else:
            message = f"API rate limit exceeded for user ID {user_id}."
            default_status = 403
        fault = _Fault(
            status or default_status, count, re.compile(path_regex), message, False,
            method=method, headers=headers, documentation_url=RATE_LIMIT_DOCS,
        )  # fmt: skip
        with self._lock:
            self._faults.append(fault)

    def forbid(
        self, path_regex: str, *, method: str | None = None, count: int | None = None
    ) -> None:
        """Answer requests to an endpoint with 403 "Resource not accessible by integration", as
        GitHub answers a GitHub App or fine-grained token that lacks the endpoint's permission:
        every matching request until `allow` (or only the next `count`). Nothing changes."""
        fault = _Fault(403, count, re.compile(path_regex), NOT_ACCESSIBLE, False, method=method)
        with self._lock:
            self._faults.append(fault)

    def allow(self) -> None:
        """Lift every fault, rate limit and `forbid` still pending."""
        with self._lock:
            self._faults.clear()

    # -- answering -------------------------------------------------------------------------------

    def answer(self, method: str, target: str, raw_body: bytes, authorization: str | None) -> Reply:
        """Answer one HTTP request (called by the handler threads)."""
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        with self._lock:
            try:
                body = json.loads(raw_body) if raw_body else None
            except ValueError:
                body = None
                reply = self._error(ApiError(400, "Problems parsing JSON"))
            else:
                reply = self._answer_locked(method, path, query, body, authorization)
            recorded_path = path.removeprefix(API_PREFIX) if path.startswith(API_PREFIX) else path
            self._requests.append(RecordedRequest(method, recorded_path, query, body, reply.status))
        if reply.body is not None:
            reply.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        reply.headers.update(self._standard_headers())
        reply.headers.update(reply.overrides)  # a rate limit's own X-RateLimit-* win
        return reply

    def _answer_locked(
        self, method: str, path: str, query: dict[str, str], body: Any, authorization: str | None
    ) -> Reply:
        route_path = path.removeprefix(API_PREFIX)
        fault = self._take_fault(method, route_path)
        if fault is not None and not fault.after_effect:
            return self._fault_reply(fault)
        caller = self._caller(authorization) if authorization else None
        if not authorization:
            reply = self._error(ApiError(401, "Requires authentication"))
        elif caller is None:
            reply = self._error(ApiError(401, "Bad credentials"))
        elif not path.startswith(f"{API_PREFIX}/"):
            reply = self._error(ApiError(404, "Not Found"))
        else:
            self._used += 1
            try:
                reply = dispatch(self._state, method, route_path, query, body, caller)
            except ApiError as error:
                reply = self._error(error)
            except Exception as error:  # a bug in this server: answer it, do not drop the line
                reply = self._error(ApiError(500, f"GitHubApiServer failed: {error!r}"))
        if fault is not None:
            return self._fault_reply(fault)
        return reply

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _fault_reply(self, fault: _Fault) -> Reply:
        reply = self._error(ApiError(fault.status, fault.message))
        if fault.documentation_url is not None:
            reply.body["documentation_url"] = fault.documentation_url
        if fault.headers is not None:
            reply.overrides = fault.headers()
        return reply

    def _caller(self, authorization: str) -> str | None:
        """The login whose token ``authorization`` carries; None for no token of ours."""
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        given = credential.strip().encode()
        found = None
        for token, login in self._users.items():  # compare every one: no early exit
            if hmac.compare_digest(given, token.encode()):
                found = login
        return found

    @staticmethod
    def _error(error: ApiError) -> Reply:
        return Reply(error.status, error.body())

    def _standard_headers(self) -> dict[str, str]:
        with self._lock:
            used = self._used
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(max(RATE_LIMIT - used, 0)),
            "X-RateLimit-Reset": str(self._reset),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": uuid.uuid4().hex[:16].upper(),
        }
