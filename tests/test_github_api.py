"""Tests of the local GitHub API server, driven only through PyGithub as Sluice drives GitHub."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from github import (
    Auth,
    BadCredentialsException,
    Github,
    GithubException,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.PullRequest import PullRequest
from github.Repository import Repository
from support.github_api import Dispatch, GitHubApiServer
from support.github_git import BareRepo
from support.gitrepo import git
from support.working_remote import WorkingRemote as Remote
from support.working_remote import copy_remote, make_template

TOKEN = "ghp_sluiceTestToken0123456789abcdefABCDEF"
REPO = "acme/gitops"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    """A bare repository with one commit on main and a clone of it, made once per module."""
    return make_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def remote(template: Remote, tmp_path: Path) -> Remote:
    """A fresh copy of the template repository and clone (copying is faster than git init)."""
    return copy_remote(template, tmp_path)


@pytest.fixture
def server(remote: Remote) -> Iterator[GitHubApiServer]:
    """The local GitHub API server serving acme/gitops from the bare repository."""
    with GitHubApiServer(token=TOKEN, repositories={REPO: remote.bare}) as running:
        yield running


@pytest.fixture
def connect(server: GitHubApiServer) -> Iterator[Callable[..., Github]]:
    """Make PyGithub clients pointed at the server as at GitHub Enterprise; close them after.

    Retries are off (PyGithub's default retries 5xx) and so is PyGithub's default throttling
    of 0.25 s between requests and 1 s between writes, which would make these tests slow.
    """
    made: list[Github] = []

    def connect(token: str = TOKEN, per_page: int = 30) -> Github:
        github = Github(
            base_url=server.api_url,
            auth=Auth.Token(token),
            retry=None,
            per_page=per_page,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        made.append(github)
        return github

    yield connect
    for github in made:
        github.close()


@pytest.fixture
def repo(connect: Callable[..., Github]) -> Repository:
    """acme/gitops as PyGithub sees it."""
    return connect().get_repo(REPO)


def open_pull(remote: Remote, repo: Repository, branch: str = "feature") -> PullRequest:
    """Push a branch with one commit and open a pull request from it into main."""
    remote.commit(branch, f"{branch}.yaml", f"branch: {branch}\n")
    return repo.create_pull(base="main", head=branch, title=f"Promote {branch}", body="Why")


def test_created_pull_request_reads_back(remote: Remote, repo: Repository) -> None:
    """A pull request created through PyGithub reads back with GitHub's fields."""
    tip = remote.commit("feature", "model.yaml", "version: 2\n")
    created = repo.create_pull(base="main", head="acme:feature", title="Promote", body="Why")
    pr = repo.get_pull(created.number)
    assert (pr.number, pr.title, pr.body, pr.state) == (1, "Promote", "Why", "open")
    assert (pr.head.ref, pr.head.sha, pr.head.label, pr.base.ref) == (
        "feature",
        tip,
        "acme:feature",
        "main",
    )
    assert pr.head.repo.full_name == REPO
    assert pr.user.login == "sluice-bot"
    assert (pr.mergeable, pr.merged, pr.commits, pr.changed_files) == (True, False, 1, 1)


def test_head_sha_follows_the_branch(remote: Remote, repo: Repository) -> None:
    """An open pull request's head.sha is the branch tip at each read."""
    pr = open_pull(remote, repo)
    tip = remote.commit("feature", "second.yaml", "more\n")
    assert repo.get_pull(pr.number).head.sha == tip


def test_duplicate_pull_request_is_rejected(remote: Remote, repo: Repository) -> None:
    """A second open pull request for the same head and base fails with 422."""
    open_pull(remote, repo)
    with pytest.raises(GithubException) as caught:
        repo.create_pull(base="main", head="feature", title="Again")
    assert caught.value.status == 422
    assert caught.value.data["errors"][0]["message"] == (
        "A pull request already exists for acme:feature."
    )


def test_pull_request_from_missing_branch_is_rejected(repo: Repository) -> None:
    """A pull request whose head branch does not exist fails with 422 Validation Failed."""
    with pytest.raises(GithubException) as caught:
        repo.create_pull(base="main", head="no-such-branch", title="Nothing")
    assert caught.value.status == 422
    assert caught.value.data["message"] == "Validation Failed"
    assert caught.value.data["errors"][0]["field"] == "head"


def test_list_filters_by_owner_and_branch(remote: Remote, repo: Repository) -> None:
    """The head filter in owner:branch form selects only that branch's pull request."""
    open_pull(remote, repo, "one")
    two = open_pull(remote, repo, "two")
    assert [pr.number for pr in repo.get_pulls(head="acme:two")] == [two.number]


def test_list_ignores_head_filter_without_owner(remote: Remote, repo: Repository) -> None:
    """Like GitHub, a head filter without the owner prefix is ignored."""
    open_pull(remote, repo, "one")
    open_pull(remote, repo, "two")
    assert len(list(repo.get_pulls(head="two"))) == 2


def test_list_paginates_with_link_headers(
    remote: Remote, server: GitHubApiServer, repo: Repository, connect: Callable[..., Github]
) -> None:
    """Listing more pull requests than fit a page follows the Link header page by page."""
    numbers = [open_pull(remote, repo, f"branch-{index}").number for index in range(3)]
    paged = connect(per_page=2).get_repo(REPO)
    assert [pr.number for pr in paged.get_pulls(state="all")] == sorted(numbers, reverse=True)
    pages = [r.query.get("page", "1") for r in server.requests_to("GET", f"/repos/{REPO}/pulls")]
    assert pages == ["1", "2"]


def test_edit_changes_title_body_and_closes(remote: Remote, repo: Repository) -> None:
    """Editing a pull request changes its title and body and can close it."""
    pr = open_pull(remote, repo)
    pr.edit(title="New title", body="New body", state="closed")
    again = repo.get_pull(pr.number)
    assert (again.title, again.body, again.state) == ("New title", "New body", "closed")
    assert again.closed_at is not None
    assert [p.number for p in repo.get_pulls(state="open")] == []


def test_comments_are_created_edited_and_listed(remote: Remote, repo: Repository) -> None:
    """Issue comments on a pull request can be created, edited and listed."""
    pr = open_pull(remote, repo)
    comment = pr.create_issue_comment("Canary at 10%")
    comment.edit("Canary at 50%")
    assert [c.body for c in pr.get_issue_comments()] == ["Canary at 50%"]
    assert repo.get_issue(pr.number).comments == 1


def test_labels_are_added_and_removed(remote: Remote, repo: Repository) -> None:
    """Labels are added (created on first use) and removed; the issue view shows the rest."""
    pr = open_pull(remote, repo)
    pr.add_to_labels("sluice", "canary")
    pr.remove_from_labels("canary")
    assert [label.name for label in pr.get_labels()] == ["sluice"]
    assert [label.name for label in repo.get_issue(pr.number).labels] == ["sluice"]


def test_statuses_are_listed_newest_first(remote: Remote, repo: Repository) -> None:
    """Commit statuses on a sha are listed newest first."""
    commit = repo.get_commit(remote.commit("feature", "model.yaml", "v: 1\n"))
    commit.create_status("pending", context="sluice/canary", description="Rolling out")
    commit.create_status("success", "https://ci.invalid/1", "Promoted", "sluice/canary")
    listed = [(s.state, s.context) for s in commit.get_statuses()]
    assert listed == [("success", "sluice/canary"), ("pending", "sluice/canary")]


def test_combined_status_uses_latest_per_context(remote: Remote, repo: Repository) -> None:
    """The combined status takes each context's latest status and fails if any failed."""
    commit = repo.get_commit(remote.commit("feature", "model.yaml", "v: 1\n"))
    commit.create_status("failure", context="quality-gate")
    commit.create_status("success", context="quality-gate")
    commit.create_status("error", context="canary")
    combined = commit.get_combined_status()
    assert (combined.state, combined.total_count, combined.sha) == ("failure", 2, commit.sha)


def test_repository_dispatch_is_recorded(server: GitHubApiServer, repo: Repository) -> None:
    """A repository_dispatch answers 204 and is recorded with its payload."""
    assert repo.create_repository_dispatch("sluice-promote", {"model": "churn", "version": 7})
    assert server.dispatches == [Dispatch(REPO, "sluice-promote", {"model": "churn", "version": 7})]


def test_merge_makes_a_real_merge_commit(remote: Remote, repo: Repository) -> None:
    """Merging makes a two-parent merge commit on main in the bare repository."""
    pr = open_pull(remote, repo)
    status = pr.merge()
    assert status.merged
    assert remote.log("main", "%H") == status.sha
    assert remote.log("main", "%B") == "Merge pull request #1 from acme/feature\n\nPromote feature"
    assert remote.log("main", "%P").split() == [remote.log("main^1", "%H"), pr.head.sha]
    merged = repo.get_pull(pr.number)
    assert (merged.merged, merged.state, merged.merge_commit_sha) == (True, "closed", status.sha)
    assert merged.is_merged()


def test_squash_merge_makes_one_commit(remote: Remote, repo: Repository) -> None:
    """A squash merge puts one single-parent commit titled after the pull request on main."""
    pr = open_pull(remote, repo)
    sha = pr.merge(merge_method="squash").sha
    assert remote.log("main", "%H|%s") == f"{sha}|Promote feature (#1)"
    assert len(remote.log("main", "%P").split()) == 1


def test_conflicting_pull_request_cannot_merge(remote: Remote, repo: Repository) -> None:
    """A pull request that conflicts with its base answers 405 and leaves main alone."""
    remote.commit("feature", "README.md", "feature\n")
    pr = repo.create_pull(base="main", head="feature", title="Conflicts")
    main = remote.commit("main", "README.md", "main\n")
    assert repo.get_pull(pr.number).mergeable is False
    with pytest.raises(GithubException) as caught:
        pr.merge()
    assert caught.value.status == 405
    assert remote.log("main", "%H") == main


def test_merge_with_stale_sha_is_refused(remote: Remote, repo: Repository) -> None:
    """Merging with a sha that is no longer the head answers 409 and merges nothing."""
    pr = open_pull(remote, repo)
    stale = pr.head.sha
    remote.commit("feature", "late.yaml", "late\n")
    with pytest.raises(GithubException) as caught:
        pr.merge(sha=stale)
    assert caught.value.status == 409
    assert not repo.get_pull(pr.number).merged


def test_merge_when_base_moved_answers_405(
    remote: Remote, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push to the base between computing a merge and moving the branch answers 405 "Base
    branch was modified" (GitHub's merge endpoint: 405 when it cannot merge, 409 only for a stale
    `sha`), and the pushed commit stays the tip of main."""
    pr = open_pull(remote, repo)
    merge_tree = BareRepo.merge_tree
    pushed: list[str] = []

    def racing(self: BareRepo, base: str, head: str) -> str | None:
        tree = merge_tree(self, base, head)
        if not pushed:  # the first merge computed: someone pushes to main before it lands
            pushed.append(remote.commit("main", "racer.yaml", "pushed during the merge\n"))
        return tree

    monkeypatch.setattr(BareRepo, "merge_tree", racing)
    with pytest.raises(GithubException) as caught:
        pr.merge()
    assert caught.value.status == 405
    assert caught.value.data["message"] == (
        "Base branch was modified. Review and try the merge again."
    )
    assert remote.log("main", "%H") == pushed[0]
    assert not repo.get_pull(pr.number).merged


def test_reviews_are_each_users_and_the_author_cannot_approve(
    server: GitHubApiServer, remote: Remote, repo: Repository, connect: Callable[..., Github]
) -> None:
    """A reviewer with a token of their own approves the head; the author's own approval is
    refused with GitHub's 422; a dismissed review reads DISMISSED; reviews list in order."""
    pr = open_pull(remote, repo)
    with pytest.raises(GithubException) as caught:
        pr.create_review(event="APPROVE")
    assert caught.value.status == 422
    assert "Can not approve your own pull request" in str(caught.value.data)
    alice = connect(server.add_user("alice")).get_repo(REPO).get_pull(pr.number)
    approved = alice.create_review(event="APPROVE")
    alice.create_review(event="COMMENT", body="looks fine")
    approved.dismiss("stale")
    reviews = list(repo.get_pull(pr.number).get_reviews())
    assert [(r.user.login, r.state, r.commit_id) for r in reviews] == [
        ("alice", "DISMISSED", pr.head.sha),
        ("alice", "COMMENTED", pr.head.sha),
    ]
    assert reviews[0].submitted_at is not None


def test_deleting_head_branch_closes_pull_request(remote: Remote, repo: Repository) -> None:
    """Like GitHub, deleting an open pull request's head branch closes it."""
    pr = open_pull(remote, repo)
    git("push", "--quiet", "origin", "--delete", "feature", cwd=remote.work)
    assert repo.get_pull(pr.number).state == "closed"


def test_bad_token_is_refused(connect: Callable[..., Github]) -> None:
    """A wrong token raises BadCredentialsException."""
    with pytest.raises(BadCredentialsException):
        connect(token="ghp_wrong").get_repo(REPO)


def test_unknown_repository_is_not_found(connect: Callable[..., Github]) -> None:
    """A repository the server does not serve raises UnknownObjectException."""
    with pytest.raises(UnknownObjectException):
        connect().get_repo("acme/elsewhere")


def test_unimplemented_endpoint_answers_404_and_is_recorded(
    server: GitHubApiServer, repo: Repository
) -> None:
    """An endpoint the server does not implement answers 404 and shows up in the record."""
    with pytest.raises(UnknownObjectException):
        list(repo.get_branches())
    assert [r.status for r in server.requests_to("GET", f"/repos/{REPO}/branches")] == [404]


def test_injected_502_surfaces_as_github_exception(
    server: GitHubApiServer, repo: Repository
) -> None:
    """fail_next(502) makes the next matching request fail with status 502, then recovers."""
    server.fail_next(502, path_regex=f"/repos/{REPO}/pulls")
    with pytest.raises(GithubException) as caught:
        list(repo.get_pulls())
    assert caught.value.status == 502
    assert list(repo.get_pulls()) == []


def test_fault_after_effect_loses_only_the_answer(
    remote: Remote, server: GitHubApiServer, repo: Repository
) -> None:
    """With after_effect the request takes effect although its answer is an error."""
    remote.commit("feature", "model.yaml", "v: 1\n")
    server.fail_next(502, after_effect=True)
    with pytest.raises(GithubException):
        repo.create_pull(base="main", head="feature", title="Promote")
    assert [pr.head.ref for pr in repo.get_pulls(head="acme:feature")] == ["feature"]


def test_token_never_recorded(
    remote: Remote, server: GitHubApiServer, repo: Repository, connect: Callable[..., Github]
) -> None:
    """The token appears nowhere in the recorded requests."""
    open_pull(remote, repo).create_issue_comment("hello")
    with pytest.raises(BadCredentialsException):
        connect(token=TOKEN + "x").get_repo(REPO)
    assert server.requests
    assert TOKEN not in repr(server.requests)


# -- GitHub's limits ----------------------------------------------------------------------------


def test_secondary_rate_limit_answers_429_with_retry_after(
    remote: Remote, server: GitHubApiServer, repo: Repository
) -> None:
    """rate_limit_next(retry_after=...) answers the next N calls of the endpoint with 429 and
    Retry-After, changes nothing, and leaves other endpoints and later calls alone."""
    remote.commit("feature", "model.yaml", "v: 1\n")
    server.rate_limit_next(f"/repos/{REPO}/pulls", count=2, method="POST", retry_after=30)
    assert list(repo.get_pulls()) == []  # GET of the same path is not limited
    for _ in range(2):
        with pytest.raises(GithubException) as caught:
            repo.create_pull(base="main", head="feature", title="Promote")
        assert caught.value.status == 429
        assert caught.value.headers["retry-after"] == "30"
        assert "secondary rate limit" in caught.value.data["message"]
    assert list(repo.get_pulls()) == []
    assert repo.create_pull(base="main", head="feature", title="Promote").number == 1


def test_primary_rate_limit_answers_403_with_reset(
    remote: Remote, server: GitHubApiServer, repo: Repository
) -> None:
    """rate_limit_next(reset_in=...) answers 403 "API rate limit exceeded for ..." with
    X-RateLimit-Remaining 0 and the reset in epoch seconds, which PyGithub recognises."""
    pr = open_pull(remote, repo)
    server.rate_limit_next(f"/repos/{REPO}/issues/{pr.number}/comments", reset_in=120)
    with pytest.raises(RateLimitExceededException) as caught:
        pr.create_issue_comment("hello")
    headers = caught.value.headers
    assert caught.value.status == 403
    assert caught.value.data["message"].startswith("API rate limit exceeded for ")
    assert headers["x-ratelimit-remaining"] == "0"
    assert abs(int(headers["x-ratelimit-reset"]) - (time.time() + 120)) < 5
    assert pr.get_issue_comments().totalCount == 0
    pr.create_issue_comment("hello")
    assert pr.get_issue_comments().totalCount == 1


def test_forbidden_endpoint_answers_resource_not_accessible(
    remote: Remote, server: GitHubApiServer, repo: Repository
) -> None:
    """forbid() answers 403 "Resource not accessible by integration" on that endpoint alone,
    until allow()."""
    remote.commit("feature", "model.yaml", "v: 1\n")
    server.forbid(f"/repos/{REPO}/pulls", method="POST")
    for _ in range(2):
        with pytest.raises(GithubException) as caught:
            repo.create_pull(base="main", head="feature", title="Promote")
        assert caught.value.status == 403
        assert caught.value.data["message"] == "Resource not accessible by integration"
    assert list(repo.get_pulls()) == []
    server.allow()
    assert repo.create_pull(base="main", head="feature", title="Promote").number == 1


def test_bodies_over_65536_characters_are_refused(remote: Remote, repo: Repository) -> None:
    """Pull request and comment bodies over 65,536 characters answer 422 as on GitHub; a body
    of exactly 65,536 is accepted."""
    remote.commit("feature", "model.yaml", "v: 1\n")
    too_long = "x" * 65537
    message = "body is too long (maximum is 65536 characters)"
    with pytest.raises(GithubException) as caught:
        repo.create_pull(base="main", head="feature", title="Promote", body=too_long)
    assert (caught.value.status, caught.value.data["message"]) == (422, "Validation Failed")
    assert caught.value.data["errors"][0]["message"] == message
    assert list(repo.get_pulls()) == []
    pr = repo.create_pull(base="main", head="feature", title="Promote", body="x" * 65536)
    for write in (
        lambda: pr.edit(body=too_long),
        lambda: pr.create_issue_comment(too_long),
        lambda: pr.create_issue_comment("short").edit(too_long),
    ):
        with pytest.raises(GithubException) as caught:
            write()
        assert caught.value.status == 422
        assert caught.value.data["errors"][0]["message"] == message
    assert len(repo.get_pull(pr.number).body) == 65536
    assert [c.body for c in pr.get_issue_comments()] == ["short"]


def test_status_description_over_140_characters_is_refused(
    remote: Remote, repo: Repository
) -> None:
    """A commit status description over 140 characters answers 422; 140 is accepted."""
    sha = remote.commit("feature", "model.yaml", "v: 1\n")
    commit = repo.get_commit(sha)
    with pytest.raises(GithubException) as caught:
        commit.create_status("success", description="d" * 141, context="ci")
    assert caught.value.status == 422
    assert caught.value.data["errors"][0]["message"] == (
        "description is too long (maximum is 140 characters)"
    )
    assert commit.get_statuses().totalCount == 0
    commit.create_status("success", description="d" * 140, context="ci")
    assert commit.get_statuses().totalCount == 1
