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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import requests
from github import Auth, Github, GithubException, RateLimitExceededException
from github.PullRequest import PullRequest as GithubPullRequest
from github.Repository import Repository

from controller.domain import ChangeRequest, PullRequest
from controller.errors import ConfigError, ForgeUnavailable, PermanentError, SluiceError
from controller.redact import redact, register_secret

__all__ = ["STATUS_DESCRIPTION_LIMIT", "GitHubForge"]

#: GitHub refuses commit status descriptions longer than this.
STATUS_DESCRIPTION_LIMIT = 140
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
        return self._attempt(
            f"opening a pull request for {change.branch}",
            lambda attempts: self._open_or_update(change, attempts),
        )

    def report_status(self, sha: str, *, context: str, state: str, description: str) -> None:
        """Set a commit status on ``sha``; the description is cut to GitHub's 140 characters."""
        if len(description) > STATUS_DESCRIPTION_LIMIT:
            description = description[: STATUS_DESCRIPTION_LIMIT - 1] + "…"

        def create(_attempts: _Attempts) -> None:
            # Statuses are idempotent for a reader: the latest per context wins.
            commit = self._repository().get_commit(sha)
            commit.create_status(state, context=context, description=description)

        self._attempt(f"setting status {context!r} on {sha[:12]}", create)

    def comment(self, number: int, body: str) -> None:
        """Add a comment to pull request ``number``."""

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
        failure is reported instead, and the caller's caller (Alertmanager) delivers again.
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
        """Run ``action`` up to 1 + retries times while it fails transiently."""
        attempts = _Attempts()
        limit = self._retries if retries is None else retries
        while True:
            try:
                return action(attempts)
            except SluiceError:
                raise
            except (GithubException, requests.RequestException, _Transient) as exc:
                if not _is_transient(exc) or attempts.number >= limit:
                    raise self._translate(exc, what, attempts.number + 1) from None
            time.sleep(self._backoff_seconds * 2**attempts.number)
            attempts.number += 1

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
        if isinstance(exc, RateLimitExceededException) or status == 429:
            return ForgeUnavailable(
                f"GitHub at {where} is rate-limiting requests ({detail}) while {what}; "
                "try again after the limit resets"
            )
        if status in (401, 403):
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


def _is_transient(exc: Exception) -> bool:
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
