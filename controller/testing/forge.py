"""A forge in memory: pull requests by branch, comments, labels, statuses and dispatches.

Why it exists: a proposal opens or updates a pull request and sets a status, a rollout reports
each step to it, a drift alert dispatches a retraining; a service test should see what reached
the forge without an HTTP server. :class:`MemoryForge` is the :class:`~controller.ports.Forge`
of :class:`~controller.backends.github_forge.GitHubForge` (and its ``merge_pull_request``), with
its rules:

- one open pull request per branch and base: opened once, then updated in place (title and
  body only when they changed), its missing labels added (case-insensitively), never a second;
- older open proposals under ``supersedes_prefix`` are commented on (once) and closed, and
  their numbers returned sorted; an empty prefix supersedes nothing;
- bodies and comments are cut to GitHub's 65,536 characters, status descriptions to 140
  (:mod:`controller.text.forge_limits`), as the real one cuts them before sending;
- a comment on a pull request that does not exist is a
  :class:`~controller.errors.PermanentError` naming it (GitHub's 404);
- :meth:`~MemoryForge.find_pull_request` finds the newest pull request of a branch in any state;
- :meth:`~MemoryForge.rewrite_body` rewrites the body a pull request has now, writing (and
  needing ``pull_requests: write``) only when that changes it.

Faults, raising what GitHubForge raises for them: :attr:`~MemoryForge.outage` (GitHub cannot
be reached: :class:`~controller.errors.ForgeUnavailable` after its tries),
:meth:`~MemoryForge.rate_limit` (a limit that resets beyond the wait Sluice accepts:
ForgeUnavailable at once) and :meth:`~MemoryForge.forbid` (the token lacks a permission:
:class:`~controller.errors.ConfigError` naming the endpoint and the permission). A reviewer's
hand: :meth:`~MemoryForge.merge` and :meth:`~MemoryForge.close`.
``tests/test_forge_contract.py`` holds it and GitHubForge (on the local GitHub API server) to
the same behaviour.

What it is not: GitHub. It keeps no branches, so it cannot refuse a pull request whose branch
has nothing to merge, and it never waits (a rate limit within the wait is no fault here).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.domain import (
    ChangeRequest,
    PullRequest,
    PullRequestApprovals,
    Review,
    current_approvals,
)
from controller.errors import ConfigError, ForgeUnavailable, PermanentError
from controller.text.forge_limits import fit_body, fit_status_description

if TYPE_CHECKING:
    from controller.ports import Forge

__all__ = ["MemoryForge", "MemoryPull", "Status"]

_FIX = "grant it to the GitHub App or fine-grained token in SLUICE_GITHUB_TOKEN"


@dataclass
class MemoryPull:
    """One pull request as the forge keeps it (``state`` open or closed, ``merged`` apart)."""

    number: int
    branch: str
    base: str
    title: str
    body: str
    head_sha: str
    labels: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    state: str = "open"
    merged: bool = False
    merge_sha: str | None = None
    author: str = "sluice-bot"
    #: Each review as submitted, oldest first.
    reviews: list[Review] = field(default_factory=list)


@dataclass(frozen=True)
class Status:
    """A commit status as it was set."""

    sha: str
    context: str
    state: str
    description: str


class MemoryForge:
    """A forge in memory for ``repository`` (thread-safe); ``api_url`` names it in errors."""

    opens_pull_requests = True

    def __init__(
        self,
        *,
        repository: str = "acme/gitops",
        api_url: str = "https://api.github.com",
        web_url: str = "https://github.com",
        tries: int = 3,
        max_rate_limit_wait_seconds: float = 60.0,
    ) -> None:
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self.tries = tries
        self.max_rate_limit_wait_seconds = max_rate_limit_wait_seconds
        self.pulls: dict[int, MemoryPull] = {}
        self.statuses: list[Status] = []
        self.dispatches: list[tuple[str, dict[str, object]]] = []
        self._lock = threading.RLock()
        #: Every call fails as an unreachable GitHub does.
        self.outage = False
        self._rate_limit_resets_at: float | None = None
        self._forbidden: set[str] = set()

    # -- faults --------------------------------------------------------------------------

    def rate_limit(self, *, resets_at: float) -> None:
        """Every call is rate-limited until ``resets_at`` (epoch seconds), beyond the wait."""
        self._rate_limit_resets_at = resets_at

    def forbid(self, permission: str) -> None:
        """The token lacks ``permission`` (``statuses: write``, ``pull_requests: read``...)."""
        self._forbidden.add(permission)

    def allow(self) -> None:
        """Lift every fault."""
        self.outage = False
        self._rate_limit_resets_at = None
        self._forbidden.clear()

    def _request(self, what: str, method: str, path: str, permission: str | None) -> None:
        """Fail as GitHubForge does when the request ``method path`` (under the repository)
        made while doing ``what`` cannot be answered."""
        endpoint = f"{method} /repos/{self.repository}{path}"
        if self.outage:
            tries = "tried once" if self.tries == 1 else f"tried {self.tries} times"
            raise ForgeUnavailable(
                f"GitHub at {self.api_url} is unreachable while {what}: connection refused "
                f"({tries}); check SLUICE_GITHUB_API_URL and the network"
            )
        if self._rate_limit_resets_at is not None:
            at = datetime.fromtimestamp(self._rate_limit_resets_at, UTC)
            raise ForgeUnavailable(
                f"GitHub is rate-limiting {endpoint} (403 API rate limit exceeded) while "
                f"{what} in {self.repository}: the limit resets at "
                f"{at.strftime('%Y-%m-%dT%H:%M:%SZ')}, beyond the "
                f"{self.max_rate_limit_wait_seconds:.0f} s Sluice waits; run again after that"
            )
        if permission in self._forbidden:
            raise ConfigError(
                f"GitHub refused {endpoint} while {what} (403 Resource not accessible by "
                f"integration): the token needs {permission} on {self.repository}; {_FIX}"
            )

    # -- the Forge protocol --------------------------------------------------------------

    def check_access(self) -> None:
        self._request("repository access", "GET", "", "metadata: read")

    def open_or_update(self, change: ChangeRequest) -> PullRequest:
        what = f"opening a pull request for {change.branch}"
        body = fit_body(change.body)
        with self._lock:
            self._request(what, "GET", "/pulls", "pull_requests: read")
            own = next(
                (
                    pr
                    for pr in self.pulls.values()
                    if pr.state == "open" and (pr.branch, pr.base) == (change.branch, change.base)
                ),
                None,
            )
            created = own is None
            if own is None:
                self._request(what, "POST", "/pulls", "pull_requests: write")
                number = max(self.pulls, default=0) + 1
                own = MemoryPull(
                    number, change.branch, change.base, change.title, body, change.head_sha
                )
                self.pulls[number] = own
            elif (own.title, own.body) != (change.title, body):
                self._request(what, "PATCH", f"/pulls/{own.number}", "pull_requests: write")
                own.title, own.body = change.title, body
            own.head_sha = change.head_sha
            present = {label.lower() for label in own.labels}
            missing = [
                label for label in dict.fromkeys(change.labels) if label.lower() not in present
            ]
            if missing:
                permission = "pull_requests: write (or issues: write)"
                self._request(what, "POST", f"/issues/{own.number}/labels", permission)
                own.labels += missing
            superseded = self._supersede(change, own.number, what)
            return PullRequest(
                number=own.number,
                url=f"{self.web_url}/{self.repository}/pull/{own.number}",
                branch=change.branch,
                state="open",
                created=created,
                superseded=superseded,
            )

    def _supersede(self, change: ChangeRequest, number: int, what: str) -> tuple[int, ...]:
        if not change.supersedes_prefix:  # an empty prefix would match every pull request
            return ()
        note = f"Superseded by #{number} ({change.title})"
        closed = []
        for pr in self.pulls.values():
            if pr.state != "open" or pr.number == number or pr.branch == change.branch:
                continue
            if not pr.branch.startswith(change.supersedes_prefix):
                continue
            if note not in pr.comments:
                permission = "pull_requests: write (or issues: write)"
                self._request(what, "POST", f"/issues/{pr.number}/comments", permission)
                pr.comments.append(note)
            self._request(what, "PATCH", f"/pulls/{pr.number}", "pull_requests: write")
            pr.state = "closed"
            closed.append(pr.number)
        return tuple(sorted(closed))

    def report_status(self, sha: str, *, context: str, state: str, description: str) -> None:
        what = f"setting status {context!r} on {sha[:12]}"
        with self._lock:
            self._request(what, "POST", f"/statuses/{sha}", "statuses: write")
            self.statuses.append(Status(sha, context, state, fit_status_description(description)))

    def _pull(self, number: int, what: str) -> MemoryPull:
        """Pull request ``number``, or GitHub's 404 while doing ``what`` (hold the lock)."""
        pr = self.pulls.get(number)
        if pr is None:
            raise PermanentError(f"GitHub answered 404 Not Found while {what} in {self.repository}")
        return pr

    def comment(self, number: int, body: str) -> None:
        what = f"commenting on pull request #{number}"
        with self._lock:
            permission = "pull_requests: write (or issues: write)"
            self._request(what, "POST", f"/issues/{number}/comments", permission)
            pr = self._pull(number, what)
            pr.comments.append(fit_body(body))

    def find_pull_request(self, branch: str) -> int | None:
        with self._lock:
            what = f"finding the pull request of {branch}"
            self._request(what, "GET", "/pulls", "pull_requests: read")
            numbers = [pr.number for pr in self.pulls.values() if pr.branch == branch]
            return max(numbers) if numbers else None

    def dispatch(self, event_type: str, payload: Mapping[str, object]) -> None:
        with self._lock:
            what = f"sending repository_dispatch {event_type!r}"
            self._request(what, "POST", "/dispatches", "contents: write")
            self.dispatches.append((event_type, dict(payload)))

    def merge_pull_request(self, branch: str, *, head_sha: str) -> tuple[int, str]:
        """Merge the open pull request from ``branch`` (GitHub's merge button), as
        :meth:`GitHubForge.merge_pull_request <controller.backends.github_forge.GitHubForge.
        merge_pull_request>`: its number and the merge commit."""
        with self._lock:
            what = f"merging the pull request of {branch}"
            self._request(what, "GET", "/pulls", "pull_requests: read")
            open_pulls = [
                p for p in self.pulls.values() if p.branch == branch and p.state == "open"
            ]
            if not open_pulls:
                raise PermanentError(
                    f"no open pull request from {branch} in {self.repository}: open it with "
                    "`sluice propose MODEL --env ENV --forge github`"
                )
            pr = open_pulls[-1]
            if pr.head_sha != head_sha:
                raise PermanentError(
                    f"GitHub cannot merge pull request #{pr.number} ({branch}): Head branch "
                    "was modified. Review and try the merge again.; resolve it on GitHub, or "
                    "propose again"
                )
            self._request(what, "PUT", f"/pulls/{pr.number}/merge", None)
            return pr.number, self.merge(pr.number)

    def approvals(self, number: int) -> PullRequestApprovals:
        what = f"reading the reviews of pull request #{number}"
        with self._lock:
            self._request(what, "GET", f"/pulls/{number}/reviews", "pull_requests: read")
            pr = self._pull(number, what)
            return PullRequestApprovals(
                number=number,
                url=f"{self.web_url}/{self.repository}/pull/{number}",
                state=pr.state,
                merged=pr.merged,
                head_sha=pr.head_sha,
                author=pr.author,
                approvals=current_approvals(pr.reviews, head_sha=pr.head_sha, author=pr.author),
                branch=pr.branch,
            )

    def rewrite_body(self, number: int, rewrite: Callable[[str], str]) -> bool:
        what = f"rewriting the body of pull request #{number}"
        with self._lock:
            self._request(what, "GET", f"/pulls/{number}", "pull_requests: read")
            pr = self._pull(number, what)
            body = fit_body(rewrite(pr.body))
            if body == pr.body:
                return False
            self._request(what, "PATCH", f"/pulls/{number}", "pull_requests: write")
            pr.body = body
            return True

    # -- a reviewer's hand ---------------------------------------------------------------

    def review(self, number: int, login: str, state: str = "APPROVED", *, at: float = 0.0) -> None:
        """``login`` reviews pull request ``number``'s current head (``APPROVED``,
        ``CHANGES_REQUESTED``, ``COMMENTED``), as a reviewer does on GitHub; the author may
        not approve their own (GitHub's 422)."""
        with self._lock:
            pr = self.pulls[number]
            if login == pr.author and state == "APPROVED":
                raise PermanentError("Can not approve your own pull request")
            pr.reviews.append(Review(login, state, pr.head_sha, at))

    def dismiss(self, number: int, login: str) -> None:
        """Dismiss ``login``'s latest review of pull request ``number``, as a maintainer does."""
        with self._lock:
            pr = self.pulls[number]
            for index in reversed(range(len(pr.reviews))):
                if pr.reviews[index].login == login:
                    pr.reviews[index] = replace(pr.reviews[index], state="DISMISSED")
                    return

    def merge(self, number: int) -> str:
        """Merge pull request ``number`` as a reviewer does; returns the merge commit."""
        with self._lock:
            pr = self.pulls[number]
            seed = f"merge {pr.number} {pr.head_sha} {pr.base}".encode()
            pr.state, pr.merged = "closed", True
            pr.merge_sha = hashlib.sha1(seed, usedforsecurity=False).hexdigest()
            return pr.merge_sha

    def close(self, number: int) -> None:
        """Close pull request ``number`` unmerged, as a reviewer does."""
        with self._lock:
            self.pulls[number].state = "closed"

    def statuses_of(self, sha: str) -> list[Status]:
        """The statuses set on ``sha``, newest first (as GitHub lists them)."""
        with self._lock:
            return [s for s in reversed(self.statuses) if s.sha == sha]


if TYPE_CHECKING:  # mypy holds the fake to its port
    _port: type[Forge] = MemoryForge
