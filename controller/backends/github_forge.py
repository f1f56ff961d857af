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
sent (:mod:`controller.text.forge_limits`): GitHub would refuse them whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from github import Auth, Github, GithubException
from github.Repository import Repository
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from controller.backends.github_errors import (
    CREDENTIALS_FIX,
    PERMISSIONS,
    REPOSITORY_FIX,
    RetryableFailure,
    github_message,
    is_transient,
    rate_limit_error,
    translate_error,
)
from controller.backends.github_pull_requests import open_or_update
from controller.backends.github_rate_limits import (
    DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS,
    Attempts,
    is_rate_limited,
    rate_limit_of,
)
from controller.domain import (
    ChangeRequest,
    PullRequest,
    PullRequestApprovals,
    Review,
    current_approvals,
)
from controller.errors import ConfigError, PermanentError, SluiceError
from controller.redact import redact, register_secret
from controller.text.forge_limits import STATUS_DESCRIPTION_LIMIT, fit_body, fit_status_description

__all__ = [
    "DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS",
    "PERMISSIONS",
    "STATUS_DESCRIPTION_LIMIT",
    "GitHubForge",
]

T = TypeVar("T")


class GitHubForge:
    """The :class:`~controller.ports.Forge` for GitHub and GitHub Enterprise (REST v3)."""

    #: Proposals become pull requests, retrainings the train workflow's dispatches.
    opens_pull_requests = True

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
                f"GitHub repository {repository!r} is not owner/name: {REPOSITORY_FIX}"
            )
        if not token:
            raise ConfigError(f"no GitHub token for {repository}: {CREDENTIALS_FIX}")
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
        # compares what would be sent. A model card fits already (controller.proposals.model_card).
        fitted = replace(change, body=fit_body(change.body))
        return self._attempt(
            f"opening a pull request for {change.branch}",
            lambda attempts: open_or_update(self._repository(), self._owner, fitted, attempts),
        )

    def report_status(self, sha: str, *, context: str, state: str, description: str) -> None:
        """Set a commit status on ``sha``; the description is cut to GitHub's 140 characters."""
        description = fit_status_description(description, STATUS_DESCRIPTION_LIMIT)

        def create(_attempts: Attempts) -> None:
            # Statuses are idempotent for a reader: the latest per context wins.
            commit = self._repository().get_commit(sha)
            commit.create_status(state, context=context, description=description)

        self._attempt(f"setting status {context!r} on {sha[:12]}", create)

    def comment(self, number: int, body: str) -> None:
        """Add a comment to pull request ``number``, cut to GitHub's 65,536 characters."""
        body = fit_body(body)

        def create(attempts: Attempts) -> None:
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

        def find(_attempts: Attempts) -> int | None:
            repo = self._repository()
            owner = repo.owner.login
            pulls = repo.get_pulls(state="all", head=f"{owner}:{branch}", sort="created")
            numbers = [pr.number for pr in pulls if pr.head.ref == branch]
            return max(numbers) if numbers else None

        return self._attempt(f"finding the pull request of {branch}", find)

    def approvals(self, number: int) -> PullRequestApprovals:
        """Who approves pull request ``number`` now, from its reviews (``GET .../pulls/N`` and
        ``GET .../pulls/N/reviews``): each reviewer's latest approving, requesting-changes or
        dismissed review decides, and an approval counts for the current head only, never
        the author's (:func:`~controller.domain.current_approvals`)."""

        def read(_attempts: Attempts) -> PullRequestApprovals:
            pull = self._repository().get_pull(number)
            head_sha, author = str(pull.head.sha), str(pull.user.login)
            reviews = [
                Review(
                    login=str(review.user.login) if review.user is not None else "",
                    state=str(review.state),
                    commit=str(review.commit_id),
                    at=review.submitted_at.timestamp() if review.submitted_at else 0.0,
                )
                for review in pull.get_reviews()
            ]
            return PullRequestApprovals(
                number=number,
                url=str(pull.html_url),
                state=str(pull.state),
                merged=bool(pull.merged),
                head_sha=head_sha,
                author=author,
                approvals=current_approvals(reviews, head_sha=head_sha, author=author),
                branch=str(pull.head.ref),
            )

        return self._attempt(f"reading the reviews of pull request #{number}", read)

    def rewrite_body(self, number: int, rewrite: Callable[[str], str]) -> bool:
        """Replace pull request ``number``'s body with ``rewrite`` of the body it has now
        (``GET .../pulls/N``, then ``PATCH .../pulls/N`` with the body alone, cut to GitHub's
        65,536 characters), unless that changes nothing. Each attempt reads the body again, so
        a retry after a lost answer finds the rewritten body and writes nothing."""

        def edit(_attempts: Attempts) -> bool:
            pull = self._repository().get_pull(number)
            now = pull.body or ""
            body = fit_body(rewrite(now))
            if body == now:
                return False
            pull.edit(body=body)
            return True

        return self._attempt(f"rewriting the body of pull request #{number}", edit)

    def dispatch(self, event_type: str, payload: Mapping[str, object]) -> None:
        """Send a ``repository_dispatch`` of ``event_type`` with ``payload`` as its
        ``client_payload`` (at most 10 top-level keys, GitHub's limit).

        Tried once, unlike the other operations: GitHub keeps no record of a dispatch that a
        retry could look up, so a retry after a lost answer would start the workflow twice. A
        failure is reported instead, and the caller's caller (Alertmanager) delivers again. A
        rate-limited dispatch is the exception: GitHub refused it unseen, so it is sent again
        after the wait.
        """

        def send(_attempts: Attempts) -> None:
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

        def merge(attempts: Attempts) -> tuple[int, str]:
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
                    f"{redact(github_message(exc))}; resolve it on GitHub, or propose again"
                ) from None
            return pr.number, str(status.sha)

        return self._attempt(f"merging the pull request of {branch}", merge)

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
                        f"{redact(self.api_url)}, or the token cannot see it: {REPOSITORY_FIX}"
                    ) from None
                raise
            self._repo = repo
        return self._repo

    def _attempt(
        self, what: str, action: Callable[[Attempts], T], *, retries: int | None = None
    ) -> T:
        """Run ``action`` up to 1 + retries times while it fails transiently, ``backoff_seconds``
        doubling between attempts, and again after each rate-limit wait (within the maximum
        wait; see the module docstring)."""
        attempts = Attempts()
        limit = self._retries if retries is None else retries

        def count(_state: RetryCallState) -> None:
            attempts.number += 1

        def attempt() -> T:
            return self._waiting_out_rate_limits(what, action, attempts)

        transient = Retrying(
            stop=stop_after_attempt(limit + 1),
            wait=wait_exponential(multiplier=self._backoff_seconds),
            retry=retry_if_exception(is_transient),
            before_sleep=count,
            sleep=self._sleep,
        )
        try:
            return transient(attempt)
        except RetryError as exhausted:
            last = exhausted.last_attempt.exception()
            assert isinstance(last, Exception)  # only transient exceptions are retried
            raise self._translate(last, what, attempts.number + 1) from None
        except (GithubException, requests.RequestException, RetryableFailure) as exc:
            raise self._translate(exc, what, attempts.number + 1) from None

    def _waiting_out_rate_limits(
        self, what: str, action: Callable[[Attempts], T], attempts: Attempts
    ) -> T:
        """One attempt of ``action``, made again after each rate-limited answer (GitHub refused
        it and changed nothing) for as long as GitHub asks, or failing at once when that is
        beyond what is left of the maximum wait."""

        def asked(state: RetryCallState) -> float:
            answer = state.outcome.exception() if state.outcome else None
            assert isinstance(answer, Exception)  # only rate-limited answers are retried
            attempts.rate_limit = rate_limit_of(answer, attempts.rate_limited)
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
            retry=retry_if_exception(is_rate_limited),
            before_sleep=count,
            sleep=self._sleep,
        )
        try:
            return waits(once)
        except RetryError:
            assert attempts.rate_limit is not None
            raise rate_limit_error(
                what,
                attempts.rate_limit,
                attempts,
                repository=self.repository,
                endpoint=self._endpoint(),
                max_wait=self._max_rate_limit_wait,
            ) from None

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

    def _translate(self, exc: Exception, what: str, tries: int) -> SluiceError:
        return translate_error(
            exc,
            what,
            tries,
            api_url=self.api_url,
            repository=self.repository,
            endpoint=self._endpoint(),
        )
