"""Pull requests on GitHub, one attempt at a time: a proposal's pull request found or opened
(adopted when another run opened it first), kept up to date and labelled, and the older
proposals it supersedes closed with a comment. Each step checks what is there first, so an
attempt repeated after a lost answer converges instead of doing things twice."""

from __future__ import annotations

from collections.abc import Iterable

from github import GithubException
from github.PullRequest import PullRequest as GithubPullRequest
from github.Repository import Repository

from controller.backends.github_errors import RetryableFailure, github_message
from controller.backends.github_rate_limits import Attempts
from controller.domain import ChangeRequest, PullRequest

__all__ = ["find_open", "open_or_update"]

_ALREADY_EXISTS = "a pull request already exists"


def open_or_update(
    repo: Repository, owner: str, change: ChangeRequest, attempts: Attempts
) -> PullRequest:
    """One attempt of :meth:`GitHubForge.open_or_update` on ``repo``, whose branches belong to
    ``owner``: find or create the pull request, label it, close the proposals it supersedes."""
    # One listing of the open pull requests serves both the lookup and the supersede scan.
    # Only pull requests from this repository count: a fork's branch is not ours to close.
    open_pulls = [pr for pr in repo.get_pulls(state="open") if _is_own_head(pr, owner)]
    own = find_open(open_pulls, change)
    if own is None:
        attempts.tried_create = True
        own = _create(repo, owner, change)
        created = True
    else:
        # A previous attempt of this call may have created it and lost the answer.
        created = attempts.tried_create
        _update(own, change)
    _ensure_labels(own, change.labels)
    superseded = _supersede(open_pulls, change, own.number)
    return PullRequest(
        number=own.number,
        url=own.html_url,
        branch=change.branch,
        state="open",
        created=created,
        superseded=superseded,
    )


def _is_own_head(pr: GithubPullRequest, owner: str) -> bool:
    head_owner, _, _branch = pr.head.label.partition(":")
    return head_owner.lower() == owner.lower()


def _create(repo: Repository, owner: str, change: ChangeRequest) -> GithubPullRequest:
    try:
        return repo.create_pull(
            base=change.base, head=change.branch, title=change.title, body=change.body
        )
    except GithubException as exc:
        if exc.status != 422 or _ALREADY_EXISTS not in github_message(exc).lower():
            raise
    # Another run opened it between our listing and our create: adopt it.
    listed = repo.get_pulls(state="open", base=change.base)
    again = find_open((pr for pr in listed if _is_own_head(pr, owner)), change)
    if again is None:
        raise RetryableFailure("did not list the pull request it reported as existing")
    _update(again, change)
    return again


def _update(pr: GithubPullRequest, change: ChangeRequest) -> None:
    if (pr.title, pr.body or "") != (change.title, change.body):
        pr.edit(title=change.title, body=change.body)


def _ensure_labels(pr: GithubPullRequest, labels: Iterable[str]) -> None:
    present = {label.name.lower() for label in pr.labels}
    missing = [label for label in dict.fromkeys(labels) if label.lower() not in present]
    if missing:
        pr.add_to_labels(*missing)


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


def find_open(
    pulls: Iterable[GithubPullRequest], change: ChangeRequest
) -> GithubPullRequest | None:
    """The pull request among ``pulls`` from ``change.branch`` into ``change.base``."""
    for pr in pulls:
        if pr.head.ref == change.branch and pr.base.ref == change.base:
            return pr
    return None
