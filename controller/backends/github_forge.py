"""GitHub as Sluice's forge: proposals become pull requests, rollouts become commit statuses.

PyGithub's defaults do not fit a controller. It sleeps 0.25 s before every request and 1 s
before every write; it retries every 5xx and some 403s up to ten times inside urllib3, waits out
rate-limit resets (up to an hour), and when it gives up raises ``requests``' ``RetryError``
instead of a ``GithubException``. Worse, a transport-level retry of a POST whose answer was lost
(GitHub acted, the gateway answered 502) opens a second pull request or posts a second comment.

So this module turns PyGithub's throttling and retries off and retries *operations* instead,
a bounded number of times: each attempt first re-reads what exists on GitHub, so a retry after
a lost answer finds the pull request or comment the previous attempt made, and a failure after
the last attempt is one deterministic :class:`~controller.errors.ForgeUnavailable`. Everything
PyGithub and ``requests`` raise is translated into :mod:`controller.errors` here, with the token
redacted from every message.

Rate limits are waited out here too, never by PyGithub (``retry=None`` turns its
``GithubRetry`` off, which would otherwise wait on its own inside urllib3, so the two never
wait twice). GitHub answers a rate-limited request with 429 or 403 and changes nothing, so the
same operation is simply tried again after the wait GitHub asks for: ``Retry-After`` seconds,
else until ``X-RateLimit-Reset`` when ``X-RateLimit-Remaining`` is 0, else (a secondary limit
naming no time) a minute, doubling. One operation waits at most ``max_rate_limit_wait_seconds``
in all (:data:`DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS`); a longer wait fails at once with one
:class:`~controller.errors.ForgeUnavailable` line naming the endpoint and when the limit resets.
A 403 that is not a rate limit is a missing permission: one
:class:`~controller.errors.ConfigError` line names the endpoint and the permission it needs
(:data:`PERMISSIONS`). Bodies and status descriptions are cut to GitHub's limits before they are
sent (:mod:`controller.forge_limits`): GitHub would refuse them whole.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from github import Auth, Github, GithubException, RateLimitExceededException
from github.PullRequest import PullRequest as GithubPullRequest
from github.Repository import Repository
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from controller.domain import ChangeRequest, PullRequest
from controller.errors import ConfigError, ForgeUnavailable, PermanentError, SluiceError
from controller.forge_limits import STATUS_DESCRIPTION_LIMIT, fit_body, fit_status_description
from controller.redact import redact, register_secret

__all__ = [
    "DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS",
    "PERMISSIONS",
    "STATUS_DESCRIPTION_LIMIT",
    "GitHubForge",
]

#: The longest one forge operation waits for GitHub's rate limits, in all, by default.
DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS = 60.0
#: The wait for a secondary rate limit that names no time (GitHub: "at least one minute").
_SECONDARY_WAIT_SECONDS = 60.0
#: What a GitHub App or fine-grained token needs for each endpoint Sluice calls: (method, path
#: under /repos/{owner}/{repo}, permission). Classic tokens need the ``repo`` scope for all.
PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("GET", "", "metadata: read"),
    ("GET", "/pulls", "pull_requests: read"),
    ("POST", "/pulls", "pull_requests: write"),
    ("PATCH", "/pulls/{number}", "pull_requests: write"),
    ("GET", "/issues/{number}/comments", "pull_requests: read (or issues: read)"),
    ("POST", "/issues/{number}/comments", "pull_requests: write (or issues: write)"),
    ("POST", "/issues/{number}/labels", "pull_requests: write (or issues: write)"),
    ("POST", "/statuses/{sha}", "statuses: write"),
    ("POST", "/dispatches", "contents: write"),
)
_PERMISSION_PATTERNS = tuple(
    (method, re.compile(re.sub(r"\{\w+\}", "[^/]+", path)), permission)
    for method, path, permission in PERMISSIONS
)
_REPO_PATH = re.compile(r"/repos/[^/]+/[^/]+(?P<rest>/.*)?")
_PERMISSION_FIX = "grant it to the GitHub App or fine-grained token in SLUICE_GITHUB_TOKEN"
_CREDENTIALS_FIX = "set SLUICE_GITHUB_TOKEN (or GITHUB_TOKEN) to a token with pull-requests: write"
_REPOSITORY_FIX = "set SLUICE_GITHUB_REPOSITORY (or GITHUB_REPOSITORY) to owner/name"
_ALREADY_EXISTS = "a pull request already exists"

T = TypeVar("T")


class _Transient(Exception):
    """Internal: an attempt failed in a way the next attempt may not."""


@dataclass
class _Attempts:
    """What earlier attempts of one call did, so a retry can tell its own effects apart."""

    number: int = 0
    tried_create: bool = False
    #: Seconds spent waiting for rate limits, and how many times.
    rate_limit_waited: float = 0.0
    rate_limited: int = 0
    #: The last rate-limited answer's wait, while it is being waited out (or refused).
    rate_limit: _RateLimit | None = None


@dataclass(frozen=True)
class _RateLimit:
    """A rate-limited answer: how long GitHub asks to wait, and when its limit resets."""

    wait: float
    resets_at: float | None
    answer: GithubException


class GitHubForge:
    """The :class:`~controller.ports.Forge` for GitHub and GitHub Enterprise (REST v3)."""

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        repository: str,
        retries: int = 2,
        backoff_seconds: float = 1.0,
        timeout_seconds: int = 15,
        max_rate_limit_wait_seconds: float = DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        register_secret(token)
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ConfigError(
                f"GitHub repository {repository!r} is not owner/name: {_REPOSITORY_FIX}"
            )
        if not token:
            raise ConfigError(f"no GitHub token for {repository}: {_CREDENTIALS_FIX}")
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self._owner = owner
        self._retries = max(0, retries)
        self._backoff_seconds = backoff_seconds
        self._max_rate_limit_wait = max(0.0, max_rate_limit_wait_seconds)
        self._sleep = sleep
        # retry=None: operations are retried here, after re-reading GitHub (module docstring).
        # lazy=True: get_issue/get_commit build objects from their URL instead of a GET each.
        self._github = Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            timeout=timeout_seconds,
            per_page=100,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )
        self._repo: Repository | None = None
        self._api_path = urlsplit(self.api_url).path
        self._last_request: tuple[str, str] | None = None
        self._record_requests()

    def __repr__(self) -> str:
        return f"GitHubForge(api_url={redact(self.api_url)!r}, repository={self.repository!r})"

    def close(self) -> None:
        """Close the HTTP connections; the forge is not used afterwards."""
        self._github.close()

    # -- the Forge protocol ----------------------------------------------------------------------

    def check_access(self) -> None:
        """Read the repository once, so a bad token or name fails before anything is pushed."""
        self._attempt("repository access", lambda _attempts: self._repository())

    def open_or_update(self, change: ChangeRequest) -> PullRequest:
        """Open a pull request for ``change.branch`` or update the open one, add the labels, and
        close older open proposals under ``change.supersedes_prefix`` with a comment.

        Rerunning it converges: an up-to-date pull request is not written to, and a proposal
        already closed as superseded is neither commented on nor closed again.
        """
        # Cut to GitHub's limit here, so the comparison with the open pull request's body
        # compares what would be sent. A model card fits already (controller.model_card).
        fitted = replace(change, body=fit_body(change.body))
        return self._attempt(
            f"opening a pull request for {change.branch}",
            lambda attempts: self._open_or_update(fitted, attempts),
        )

    def report_status(self, sha: str, *, context: str, state: str, description: str) -> None:
        """Set a commit status on ``sha``; the description is cut to GitHub's 140 characters."""
        description = fit_status_description(description, STATUS_DESCRIPTION_LIMIT)

        def create(_attempts: _Attempts) -> None:
            # Statuses are idempotent for a reader: the latest per context wins.
            commit = self._repository().get_commit(sha)
            commit.create_status(state, context=context, description=description)

        self._attempt(f"setting status {context!r} on {sha[:12]}", create)

    def comment(self, number: int, body: str) -> None:
        """Add a comment to pull request ``number``, cut to GitHub's 65,536 characters."""
        body = fit_body(body)

        def create(attempts: _Attempts) -> None:
            issue = self._repository().get_issue(number)
            if attempts.number > 0:
                # The answer to the previous POST may have been lost after GitHub acted on it.
                comments = list(issue.get_comments())
                if comments and comments[-1].body == body:
                    return
            issue.create_comment(body)

        self._attempt(f"commenting on pull request #{number}", create)

    def find_pull_request(self, branch: str) -> int | None:
        """The newest pull request (open, closed or merged) from ``branch``, if any."""

        def find(_attempts: _Attempts) -> int | None:
            repo = self._repository()
            owner = repo.owner.login
            pulls = repo.get_pulls(state="all", head=f"{owner}:{branch}", sort="created")
            numbers = [pr.number for pr in pulls if pr.head.ref == branch]
            return max(numbers) if numbers else None

        return self._attempt(f"finding the pull request of {branch}", find)

    def dispatch(self, event_type: str, payload: Mapping[str, object]) -> None:
        """Send a ``repository_dispatch`` of ``event_type`` with ``payload`` as its
        ``client_payload`` (at most 10 top-level keys, GitHub's limit).

        Tried once, unlike the other operations: GitHub keeps no record of a dispatch that a
        retry could look up, so a retry after a lost answer would start the workflow twice. A
        failure is reported instead, and the caller's caller (Alertmanager) delivers again. A
        rate-limited dispatch is the exception: GitHub refused it unseen, so it is sent again
        after the wait.
        """

        def send(_attempts: _Attempts) -> None:
            repo = self._repository()
            # Not repo.create_repository_dispatch: it returns False on any error status,
            # where this raises GithubException with the status, translated like the rest.
            repo.requester.requestJsonAndCheck(
                "POST",
                f"{repo.url}/dispatches",
                input={"event_type": event_type, "client_payload": dict(payload)},
            )

        self._attempt(f"sending repository_dispatch {event_type!r}", send, retries=0)

    def merge_pull_request(self, branch: str, *, head_sha: str) -> tuple[int, str]:
        """Merge the open pull request from ``branch`` with a merge commit (GitHub's merge
        button, ``PUT .../pulls/N/merge``, only if its head is still ``head_sha``); the branch
        is kept. Returns the pull request's number and the merge commit.

        A retry after a lost answer finds the pull request merged and returns its merge commit.
        No open pull request, or one GitHub cannot merge (a conflict, a moved head), is a
        :class:`PermanentError` naming it and the fix.
        """

        def merge(attempts: _Attempts) -> tuple[int, str]:
            repo = self._repository()
            owner = repo.owner.login
            pulls = list(repo.get_pulls(state="all", head=f"{owner}:{branch}", sort="created"))
            pulls = [pr for pr in pulls if pr.head.ref == branch]
            if attempts.number > 0:
                done = [pr for pr in pulls if pr.merged and pr.head.sha == head_sha]
                if done:
                    return done[-1].number, str(done[-1].merge_commit_sha)
            open_pulls = [pr for pr in pulls if pr.state == "open"]
            if not open_pulls:
                raise PermanentError(
                    f"no open pull request from {branch} in {self.repository}: open it with "
                    "`sluice propose MODEL --env ENV --forge github`"
                )
            pr = open_pulls[-1]
            try:
                status = pr.merge(merge_method="merge", sha=head_sha)
            except GithubException as exc:
                if exc.status not in (405, 409):
                    raise
                raise PermanentError(
                    f"GitHub cannot merge pull request #{pr.number} ({branch}): "
                    f"{redact(_github_message(exc))}; resolve it on GitHub, or propose again"
                ) from None
            return pr.number, str(status.sha)

        return self._attempt(f"merging the pull request of {branch}", merge)

    # -- one attempt of open_or_update ---------------------------------------------------------

    def _open_or_update(self, change: ChangeRequest, attempts: _Attempts) -> PullRequest:
        repo = self._repository()
        # One listing of the open pull requests serves both the lookup and the supersede scan.
        # Only pull requests from this repository count: a fork's branch is not ours to close.
        open_pulls = [pr for pr in repo.get_pulls(state="open") if self._is_own_head(pr)]
        own = _find(open_pulls, change)
        if own is None:
            attempts.tried_create = True
            own = self._create(repo, change)
            created = True
        else:
            # A previous attempt of this call may have created it and lost the answer.
            created = attempts.tried_create
            self._update(own, change)
        self._ensure_labels(own, change.labels)
        superseded = self._supersede(open_pulls, change, own.number)
        return PullRequest(
            number=own.number,
            url=own.html_url,
            branch=change.branch,
            state="open",
            created=created,
            superseded=superseded,
        )

    def _is_own_head(self, pr: GithubPullRequest) -> bool:
        owner, _, _branch = pr.head.label.partition(":")
        return owner.lower() == self._owner.lower()

    def _create(self, repo: Repository, change: ChangeRequest) -> GithubPullRequest:
        try:
            return repo.create_pull(
                base=change.base, head=change.branch, title=change.title, body=change.body
            )
        except GithubException as exc:
            if exc.status != 422 or _ALREADY_EXISTS not in _github_message(exc).lower():
                raise
        # Another run opened it between our listing and our create: adopt it.
        listed = repo.get_pulls(state="open", base=change.base)
        again = _find((pr for pr in listed if self._is_own_head(pr)), change)
        if again is None:
            raise _Transient("did not list the pull request it reported as existing")
        self._update(again, change)
        return again

    @staticmethod
    def _update(pr: GithubPullRequest, change: ChangeRequest) -> None:
        if (pr.title, pr.body or "") != (change.title, change.body):
            pr.edit(title=change.title, body=change.body)

    @staticmethod
    def _ensure_labels(pr: GithubPullRequest, labels: Iterable[str]) -> None:
        present = {label.name.lower() for label in pr.labels}
        missing = [label for label in dict.fromkeys(labels) if label.lower() not in present]
        if missing:
            pr.add_to_labels(*missing)

    @staticmethod
    def _supersede(
        open_pulls: list[GithubPullRequest], change: ChangeRequest, number: int
    ) -> tuple[int, ...]:
        if not change.supersedes_prefix:  # an empty prefix would match every pull request
            return ()
        note = f"Superseded by #{number} ({change.title})"
        closed = []
        for pr in open_pulls:
            branch = pr.head.ref
            if pr.number == number or branch == change.branch:
                continue
            if not branch.startswith(change.supersedes_prefix):
                continue
            # Comment first, then close: a rerun after a failed close finds the comment and
            # does not repeat it; closing first could lose the comment for good.
            if not any(comment.body == note for comment in pr.get_issue_comments()):
                pr.create_issue_comment(note)
            pr.edit(state="closed")
            closed.append(pr.number)
        return tuple(sorted(closed))

    # -- retries and errors --------------------------------------------------------------------

    def _repository(self) -> Repository:
        """The repository, read once: a 401 or 404 here is the configuration, not an object."""
        if self._repo is None:
            repo = self._github.get_repo(self.repository)
            try:
                repo.complete()
            except GithubException as exc:
                if exc.status == 404:
                    raise ConfigError(
                        f"GitHub repository {self.repository} not found at "
                        f"{redact(self.api_url)}, or the token cannot see it: {_REPOSITORY_FIX}"
                    ) from None
                raise
            self._repo = repo
        return self._repo

    def _attempt(
        self, what: str, action: Callable[[_Attempts], T], *, retries: int | None = None
    ) -> T:
        """Run ``action`` up to 1 + retries times while it fails transiently, ``backoff_seconds``
        doubling between attempts, and again after each rate-limit wait (within the maximum
        wait; see the module docstring)."""
        attempts = _Attempts()
        limit = self._retries if retries is None else retries

        def count(_state: RetryCallState) -> None:
            attempts.number += 1

        def attempt() -> T:
            return self._waiting_out_rate_limits(what, action, attempts)

        transient = Retrying(
            stop=stop_after_attempt(limit + 1),
            wait=wait_exponential(multiplier=self._backoff_seconds),
            retry=retry_if_exception(_is_transient),
            before_sleep=count,
            sleep=self._sleep,
        )
        try:
            return transient(attempt)
        except RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            assert isinstance(last, Exception)  # only transient exceptions are retried
            raise self._translate(last, what, attempts.number + 1) from None
        except (GithubException, requests.RequestException, _Transient) as exc:
            raise self._translate(exc, what, attempts.number + 1) from None

    def _waiting_out_rate_limits(
        self, what: str, action: Callable[[_Attempts], T], attempts: _Attempts
    ) -> T:
        """One attempt of ``action``, made again after each rate-limited answer (GitHub refused
        it and changed nothing) for as long as GitHub asks, or failing at once when that is
        beyond what is left of the maximum wait."""

        def asked(state: RetryCallState) -> float:
            answer = state.outcome.exception() if state.outcome else None
            assert isinstance(answer, Exception)  # only rate-limited answers are retried
            attempts.rate_limit = _rate_limit(answer, attempts.rate_limited)
            assert attempts.rate_limit is not None
            return attempts.rate_limit.wait

        def beyond_budget(state: RetryCallState) -> bool:
            return state.upcoming_sleep > self._max_rate_limit_wait - attempts.rate_limit_waited

        def count(state: RetryCallState) -> None:
            attempts.rate_limit_waited += state.upcoming_sleep
            attempts.rate_limited += 1

        def once() -> T:
            self._last_request = None
            return action(attempts)

        waits = Retrying(
            stop=beyond_budget,
            wait=asked,
            retry=retry_if_exception(_is_rate_limited),
            before_sleep=count,
            sleep=self._sleep,
        )
        try:
            return waits(once)
        except RetryError:
            assert attempts.rate_limit is not None
            raise self._rate_limited(what, attempts.rate_limit, attempts) from None

    def _record_requests(self) -> None:
        """Remember the method and URL of each request, so an error can name its endpoint.

        Every request PyGithub makes for this forge (reads, writes, pages, lazy completion) goes
        through its requester's ``requestJsonAndCheck``, which this wraps on this instance only.
        """
        requester = self._github.requester
        send = requester.requestJsonAndCheck

        def recorded(verb: str, url: str, *args: Any, **kwargs: Any) -> Any:
            self._last_request = (verb, url)
            return send(verb, url, *args, **kwargs)

        setattr(requester, "requestJsonAndCheck", recorded)  # noqa: B010

    def _endpoint(self) -> tuple[str, str] | None:
        """The last request's method and its path under the API URL ("/repos/o/r/pulls")."""
        if self._last_request is None:
            return None
        verb, url = self._last_request
        path = urlsplit(url).path
        if path.startswith(self._api_path):
            path = path[len(self._api_path) :] or "/"
        return verb, redact(path)

    def _endpoint_name(self) -> str:
        endpoint = self._endpoint()
        return f"{endpoint[0]} {endpoint[1]}" if endpoint else "a GitHub API request"

    def _permission(self) -> str | None:
        """The permission the last request's endpoint needs (:data:`PERMISSIONS`)."""
        endpoint = self._endpoint()
        match = _REPO_PATH.fullmatch(endpoint[1]) if endpoint else None
        if endpoint is None or match is None:
            return None
        rest = match.group("rest") or ""
        for method, pattern, permission in _PERMISSION_PATTERNS:
            if method == endpoint[0] and pattern.fullmatch(rest):
                return permission
        return None

    def _rate_limited(self, what: str, limit: _RateLimit, attempts: _Attempts) -> ForgeUnavailable:
        answer = limit.answer
        detail = redact(f"{answer.status} {_github_message(answer)}")
        if limit.resets_at is not None:
            at = datetime.fromtimestamp(limit.resets_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            resets = f"the limit resets at {at} (in {limit.wait:.0f} s)"
        else:
            resets = f"GitHub asks to wait {limit.wait:.0f} s"
        waited = (
            f", {attempts.rate_limit_waited:.0f} s already waited" if attempts.rate_limited else ""
        )
        return ForgeUnavailable(
            f"GitHub is rate-limiting {self._endpoint_name()} ({detail}) while {what} in "
            f"{self.repository}: {resets}, beyond the {self._max_rate_limit_wait:.0f} s Sluice "
            f"waits{waited}; run again after that"
        )

    def _translate(self, exc: Exception, what: str, tries: int) -> SluiceError:
        where = redact(self.api_url)
        if isinstance(exc, GithubException):
            return self._translate_answer(exc, what, tries)
        if isinstance(exc, _Transient):
            return ForgeUnavailable(f"GitHub at {where} {exc} while {what} ({_times(tries)})")
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if not _is_transient(exc):  # a malformed URL, an unsupported scheme
            return ConfigError(
                f"GitHub API URL {where} cannot be used ({reason}): set SLUICE_GITHUB_API_URL "
                "to https://api.github.com or https://HOST/api/v3"
            )
        return ForgeUnavailable(
            f"GitHub at {where} is unreachable while {what}: {reason} ({_times(tries)}); "
            "check SLUICE_GITHUB_API_URL and the network"
        )

    def _translate_answer(self, exc: GithubException, what: str, tries: int) -> SluiceError:
        where = redact(self.api_url)
        status = exc.status
        detail = redact(f"{status} {_github_message(exc)}")
        if status == 403:  # rate limits never get here: _attempt waits them out or fails
            permission = self._permission()
            needs = (
                f"the token needs {permission} on {self.repository}; {_PERMISSION_FIX}"
                if permission is not None
                else f"the token lacks a permission this needs: {_CREDENTIALS_FIX}"
            )
            return ConfigError(
                f"GitHub refused {self._endpoint_name()} while {what} ({detail}): {needs}"
            )
        if status == 401:
            return ConfigError(
                f"GitHub rejected the token for {self.repository} ({detail}): {_CREDENTIALS_FIX}"
            )
        if status >= 500:
            return ForgeUnavailable(
                f"GitHub at {where} answered {detail} while {what} ({_times(tries)})"
            )
        return PermanentError(f"GitHub answered {detail} while {what} in {self.repository}")


def _find(pulls: Iterable[GithubPullRequest], change: ChangeRequest) -> GithubPullRequest | None:
    for pr in pulls:
        if pr.head.ref == change.branch and pr.base.ref == change.base:
            return pr
    return None


def _is_rate_limited(exc: BaseException) -> bool:
    """Whether ``exc`` is GitHub refusing a request for its rate limits (429, or 403 with the
    limit exhausted), which changed nothing."""
    if not isinstance(exc, GithubException) or exc.status not in (403, 429):
        return False
    remaining = (exc.headers or {}).get("x-ratelimit-remaining")
    return exc.status == 429 or isinstance(exc, RateLimitExceededException) or remaining == "0"


def _rate_limit(exc: Exception, earlier: int) -> _RateLimit | None:
    """How long a rate-limited answer asks to wait (GitHub's documented order), or None if
    ``exc`` is not one; ``earlier`` rate-limited answers in this operation double the default."""
    if not isinstance(exc, GithubException) or not _is_rate_limited(exc):
        return None
    headers = exc.headers or {}
    remaining = headers.get("x-ratelimit-remaining")
    retry_after = _seconds(headers.get("retry-after"))
    reset = _seconds(headers.get("x-ratelimit-reset"))
    now = time.time()
    if retry_after is not None:
        wait = retry_after
        resets_at: float | None = now + retry_after
    elif remaining == "0" and reset is not None:
        wait = reset - now + 1  # the reset is a whole second: wait into the next one
        resets_at = reset
    else:
        wait, resets_at = _SECONDARY_WAIT_SECONDS * 2**earlier, None
    return _RateLimit(max(wait, 1.0), resets_at, exc)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # Retry-After may be an HTTP date; GitHub sends seconds
        return None


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _Transient):
        return True
    if isinstance(exc, GithubException):
        # Not 429 or rate limits: waiting for a reset can take an hour; say so instead.
        return exc.status >= 500
    # ConnectTimeout is both; RetryError cannot happen with retry=None but means the same.
    transport = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    )
    return isinstance(exc, (*transport, requests.exceptions.RetryError))


def _github_message(exc: GithubException) -> str:
    """GitHub's message and, for a 422, what each validation error says."""
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc.message or "no message")
    details = []
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            field = ".".join(str(error[key]) for key in ("resource", "field") if key in error)
            details.append(str(error.get("message") or f"{field} {error.get('code', 'invalid')}"))
        else:
            details.append(str(error))
    return f"{message}: {'; '.join(details)}" if details else message


def _times(tries: int) -> str:
    return "tried once" if tries == 1 else f"tried {tries} times"
