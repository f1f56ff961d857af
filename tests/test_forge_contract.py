"""One contract, two implementations: GitHubForge on the local GitHub API server (a real bare
remote behind it) and the in-memory MemoryForge pass the same behavioural tests, so a test
that reports to the fake learns what GitHub would have been told."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Protocol

import pytest
from github import Auth, Github
from github.Repository import Repository
from support.github_api import GitHubApiServer
from support.working_remote import WorkingRemote, copy_remote, make_template

from controller.backends.github_forge import GitHubForge
from controller.domain import ChangeRequest
from controller.errors import ConfigError, ForgeUnavailable, PermanentError
from controller.ports import Forge
from controller.testing import MemoryForge
from controller.text.forge_limits import BODY_LIMIT

TOKEN = "ghp_sluiceForgeContract0123456789abcdefAB"
REPO = "acme/gitops"


class MergingForge(Forge, Protocol):
    """The port, and the merge button ``sluice local merge --forge github`` presses."""

    def merge_pull_request(self, branch: str, *, head_sha: str) -> tuple[int, str]: ...


class Harness(Protocol):
    """A forge of one kind and what a reviewer sees of it."""

    @property
    def forge(self) -> MergingForge: ...

    def propose(self, version: int = 2, **fields: str) -> ChangeRequest:
        """The change request of a pushed proposal branch ``sluice/staging/fraud/vN``."""
        ...

    def pull(self, number: int) -> tuple[str, bool, str, str, list[str], list[str]]:
        """state, merged, title, body, sorted labels and comments of a pull request."""
        ...

    def statuses(self, sha: str) -> list[tuple[str, str, str]]:
        """(context, state, description) of each status on ``sha``, newest first."""
        ...

    def dispatches(self) -> list[tuple[str, Mapping[str, object]]]: ...

    def merge(self, number: int) -> None:
        """A reviewer merges the pull request."""
        ...

    def review(self, number: int, login: str, event: str) -> None:
        """``login`` reviews the pull request: ``APPROVE``, ``REQUEST_CHANGES``, ``COMMENT``."""
        ...

    def unreachable(self) -> Forge:
        """A forge of this kind that cannot reach its GitHub."""
        ...

    def rate_limit(self) -> None:
        """Every request is rate-limited for an hour from now on."""
        ...

    def forbid(self, permission: str, method: str, path: str) -> None:
        """The token lacks ``permission``, which ``method path`` (under the repo) needs."""
        ...


def _change(version: int, sha: str, fields: Mapping[str, str]) -> ChangeRequest:
    branch = f"sluice/staging/fraud/v{version}"
    return ChangeRequest(
        branch=branch, base="main", title=fields.get("title", f"fraud v{version} → staging"),
        body=fields.get("body", f"Model card of fraud v{version}"),
        labels=("sluice", "model:fraud", "env:staging"), head_sha=sha,
        supersedes_prefix=fields.get("supersedes_prefix", "sluice/staging/fraud/"),
    )  # fmt: skip


class GitHubHarness:
    def __init__(self, remote: WorkingRemote, server: GitHubApiServer) -> None:
        self.remote = remote
        self.server = server
        self.forge = GitHubForge(
            api_url=server.api_url, token=TOKEN, repository=REPO, retries=2,
            backoff_seconds=0, max_rate_limit_wait_seconds=60,
        )  # fmt: skip
        self._client = Github(
            base_url=server.api_url, auth=Auth.Token(TOKEN), retry=None,
            seconds_between_requests=None, seconds_between_writes=None,
        )  # fmt: skip
        self.github: Repository = self._client.get_repo(REPO)

    def close(self) -> None:
        self.forge.close()
        self._client.close()

    def propose(self, version: int = 2, **fields: str) -> ChangeRequest:
        branch = f"sluice/staging/fraud/v{version}"
        sha = self.remote.commit(branch, "pin.yaml", f"version: {version}\n", allow_empty=True)
        return _change(version, sha, fields)

    def pull(self, number: int) -> tuple[str, bool, str, str, list[str], list[str]]:
        pr = self.github.get_pull(number)
        labels = sorted(label.name for label in pr.labels)
        comments = [c.body for c in pr.get_issue_comments()]
        return pr.state, pr.merged, pr.title, pr.body or "", labels, comments

    def statuses(self, sha: str) -> list[tuple[str, str, str]]:
        found = self.github.get_commit(sha).get_statuses()
        return [(s.context, s.state, s.description) for s in found]

    def dispatches(self) -> list[tuple[str, Mapping[str, object]]]:
        return [(d.event_type, d.client_payload) for d in self.server.dispatches]

    def merge(self, number: int) -> None:
        self.github.get_pull(number).merge(merge_method="merge")

    def review(self, number: int, login: str, event: str) -> None:
        token = self.server.add_user(login)
        with Github(
            base_url=self.server.api_url, auth=Auth.Token(token), retry=None,
            seconds_between_requests=None, seconds_between_writes=None,
        ) as reviewer:  # fmt: skip
            pull = reviewer.get_repo(REPO).get_pull(number)
            pull.create_review(event=event, body="" if event == "APPROVE" else "see inline")

    def unreachable(self) -> Forge:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        api_url = f"http://127.0.0.1:{port}/api/v3"
        return GitHubForge(api_url=api_url, token=TOKEN, repository=REPO, backoff_seconds=0)

    def rate_limit(self) -> None:
        self.server.rate_limit_next(".*", count=1000, reset_in=3600)

    def forbid(self, permission: str, method: str, path: str) -> None:
        self.server.forbid(f"/repos/{REPO}{path}", method=method)


class MemoryHarness:
    def __init__(self) -> None:
        self.forge = MemoryForge(repository=REPO)

    def propose(self, version: int = 2, **fields: str) -> ChangeRequest:
        return _change(version, f"{version:040x}", fields)

    def pull(self, number: int) -> tuple[str, bool, str, str, list[str], list[str]]:
        pr = self.forge.pulls[number]
        return pr.state, pr.merged, pr.title, pr.body, sorted(pr.labels), list(pr.comments)

    def statuses(self, sha: str) -> list[tuple[str, str, str]]:
        return [(s.context, s.state, s.description) for s in self.forge.statuses_of(sha)]

    def dispatches(self) -> list[tuple[str, Mapping[str, object]]]:
        return list(self.forge.dispatches)

    def merge(self, number: int) -> None:
        self.forge.merge(number)

    def review(self, number: int, login: str, event: str) -> None:
        states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}
        self.forge.review(number, login, states.get(event, "COMMENTED"))

    def unreachable(self) -> Forge:
        self.forge.outage = True
        return self.forge

    def rate_limit(self) -> None:
        self.forge.rate_limit(resets_at=time.time() + 3600)

    def forbid(self, permission: str, method: str, path: str) -> None:
        self.forge.forbid(permission)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> WorkingRemote:
    return make_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(params=["github", "memory"])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, template: WorkingRemote
) -> Iterator[Harness]:
    """A forge on the local GitHub API server, or in memory."""
    if request.param == "memory":
        yield MemoryHarness()
        return
    remote = copy_remote(template, tmp_path)
    with GitHubApiServer(token=TOKEN, repositories={REPO: remote.bare}) as server:
        made = GitHubHarness(remote, server)
        yield made
        made.close()


def test_a_proposal_opens_one_pull_request_and_updates_it_in_place(harness: Harness) -> None:
    """The first call opens it with the title, body and labels; the same call again finds it
    (created False); a changed body is written to it; there is never a second."""
    forge = harness.forge
    first = forge.open_or_update(harness.propose(body="old card"))
    assert (first.created, first.state, first.superseded) == (True, "open", ())
    assert first.branch == "sluice/staging/fraud/v2"
    assert first.url.endswith(f"/{REPO}/pull/{first.number}")
    again = forge.open_or_update(harness.propose(body="old card"))
    assert (again.number, again.created) == (first.number, False)
    forge.open_or_update(harness.propose(body="new card"))
    state, merged, title, body, labels, comments = harness.pull(first.number)
    assert (state, merged, title, body) == ("open", False, "fraud v2 → staging", "new card")
    assert labels == ["env:staging", "model:fraud", "sluice"]
    assert comments == []
    assert forge.find_pull_request("sluice/staging/fraud/v2") == first.number


def test_a_newer_proposal_supersedes_the_open_one_once(harness: Harness) -> None:
    """Proposing v3 closes the open v2 proposal with one comment naming the new pull request;
    running it again closes and comments nothing more."""
    forge = harness.forge
    old = forge.open_or_update(harness.propose(version=2))
    change = harness.propose(version=3)
    new = forge.open_or_update(change)
    assert new.superseded == (old.number,)
    state, _merged, _title, _body, _labels, comments = harness.pull(old.number)
    assert state == "closed"
    assert comments == [f"Superseded by #{new.number} (fraud v3 → staging)"]
    assert forge.open_or_update(change).superseded == ()
    assert harness.pull(old.number)[5] == comments
    assert forge.find_pull_request("sluice/staging/fraud/v2") == old.number  # closed: found


def test_an_empty_prefix_supersedes_nothing(harness: Harness) -> None:
    """An onboarding (supersedes_prefix empty) leaves every other pull request open."""
    forge = harness.forge
    other = forge.open_or_update(harness.propose(version=2))
    forge.open_or_update(harness.propose(version=3, supersedes_prefix=""))
    assert harness.pull(other.number)[0] == "open"


def test_statuses_and_comments_reach_the_pull_request(harness: Harness) -> None:
    """A status is set on the sha (its description cut to 140 characters); a comment lands on
    the pull request; one on a pull request that does not exist is a PermanentError."""
    forge = harness.forge
    change = harness.propose()
    number = forge.open_or_update(change).number
    forge.report_status(
        change.head_sha, context="sluice/validate", state="pending", description="a"
    )
    long = "ok " * 60
    forge.report_status(
        change.head_sha, context="sluice/validate", state="success", description=long
    )
    [newest, oldest] = harness.statuses(change.head_sha)
    assert oldest == ("sluice/validate", "pending", "a")
    assert newest[:2] == ("sluice/validate", "success")
    assert len(newest[2]) == 140
    assert newest[2].endswith("…")
    forge.comment(number, "Canary at 10%: gates passing")
    assert harness.pull(number)[5] == ["Canary at 10%: gates passing"]
    with pytest.raises(PermanentError) as caught:
        forge.comment(number + 40, "hello")
    assert "404" in caught.value.message
    assert f"pull request #{number + 40}" in caught.value.message


def test_an_oversized_body_and_comment_are_cut_to_fit(harness: Harness) -> None:
    forge = harness.forge
    number = forge.open_or_update(harness.propose(body="x" * (BODY_LIMIT + 10))).number
    forge.comment(number, "y" * (BODY_LIMIT + 10))
    _state, _merged, _title, body, _labels, comments = harness.pull(number)
    assert len(body) <= BODY_LIMIT
    assert len(comments[0]) <= BODY_LIMIT


def test_find_pull_request_knows_only_branches_that_became_one(harness: Harness) -> None:
    assert harness.forge.find_pull_request("sluice/staging/fraud/v9") is None


def test_a_dispatch_is_sent_with_its_payload(harness: Harness) -> None:
    harness.forge.dispatch("retrain", {"model": "fraud", "features": ["amount"]})
    assert harness.dispatches() == [("retrain", {"model": "fraud", "features": ["amount"]})]


def test_merging_presses_the_merge_button_of_the_open_pull_request(harness: Harness) -> None:
    """The open pull request of a branch is merged if its head is still the one given; a moved
    head, or no open pull request, is a PermanentError naming the fix."""
    forge = harness.forge
    change = harness.propose()
    opened = forge.open_or_update(change)
    with pytest.raises(PermanentError, match="Head branch was modified"):
        forge.merge_pull_request(change.branch, head_sha="f" * 40)
    number, sha = forge.merge_pull_request(change.branch, head_sha=change.head_sha)
    assert number == opened.number
    assert len(sha) == 40
    state, merged, *_ = harness.pull(number)
    assert (state, merged) == ("closed", True)
    with pytest.raises(PermanentError, match="no open pull request from sluice/staging/fraud/v2"):
        forge.merge_pull_request(change.branch, head_sha=change.head_sha)


def test_a_reviewers_merge_is_found_and_not_superseded(harness: Harness) -> None:
    """A merged proposal is still the pull request its branch became; a newer proposal does
    not close it again."""
    forge = harness.forge
    old = forge.open_or_update(harness.propose(version=2))
    harness.merge(old.number)
    assert forge.find_pull_request("sluice/staging/fraud/v2") == old.number
    assert forge.open_or_update(harness.propose(version=3)).superseded == ()
    assert harness.pull(old.number)[:2] == ("closed", True)


def test_approvals_are_the_reviewers_whose_latest_review_approves_the_head(
    harness: Harness,
) -> None:
    """A later review asking for changes takes an approval back, a comment does not; the
    approval names the head it was given on; an unknown pull request is a PermanentError."""
    forge = harness.forge
    change = harness.propose()
    number = forge.open_or_update(change).number
    none = forge.approvals(number)
    assert (none.number, none.state, none.merged, none.approvals) == (number, "open", False, ())
    assert (none.head_sha, none.author, none.branch) == (
        change.head_sha, "sluice-bot", "sluice/staging/fraud/v2",
    )  # fmt: skip
    assert none.url.endswith(f"/{REPO}/pull/{number}")
    harness.review(number, "alice", "APPROVE")
    harness.review(number, "bob", "APPROVE")
    harness.review(number, "bob", "REQUEST_CHANGES")
    harness.review(number, "alice", "COMMENT")
    found = forge.approvals(number)
    assert found.approvers == ("alice",)
    assert found.approvals[0].commit == change.head_sha
    harness.merge(number)
    merged = forge.approvals(number)
    assert (merged.state, merged.merged, merged.approvers) == ("closed", True, ("alice",))
    with pytest.raises(PermanentError, match="404"):
        forge.approvals(number + 40)


def test_a_body_is_rewritten_from_what_it_is_now_and_only_when_that_changes_it(
    harness: Harness,
) -> None:
    """`rewrite_body` hands the body the pull request has now to the rewrite and writes what
    it returns (title, labels and state untouched), cut to GitHub's limit; a rewrite that
    changes nothing writes nothing; an unknown pull request is a PermanentError."""
    forge = harness.forge
    number = forge.open_or_update(harness.propose(body="## card\n\nold evidence\n")).number
    seen: list[str] = []

    def rewrite(body: str) -> str:
        seen.append(body)
        return body.replace("old evidence", "approved by alice")

    assert forge.rewrite_body(number, rewrite) is True
    assert seen == ["## card\n\nold evidence\n"]
    state, merged, title, body, labels, _ = harness.pull(number)
    assert (state, merged, title, body) == (
        "open", False, "fraud v2 → staging", "## card\n\napproved by alice\n",
    )  # fmt: skip
    assert labels == ["env:staging", "model:fraud", "sluice"]
    assert forge.rewrite_body(number, rewrite) is False
    assert forge.rewrite_body(number, lambda body: "x" * (BODY_LIMIT + 10)) is True
    assert len(harness.pull(number)[3]) <= BODY_LIMIT
    with pytest.raises(PermanentError, match="404"):
        forge.rewrite_body(number + 40, rewrite)


# -- faults -----------------------------------------------------------------------------------


def test_an_unreachable_github_is_forge_unavailable_naming_it(harness: Harness) -> None:
    change = harness.propose()
    forge = harness.unreachable()
    for call in (
        forge.check_access,
        lambda: forge.open_or_update(change),
        lambda: forge.report_status(change.head_sha, context="c", state="success", description="d"),
    ):
        with pytest.raises(ForgeUnavailable) as caught:
            call()
        assert "is unreachable while" in caught.value.message
        assert "check SLUICE_GITHUB_API_URL and the network" in caught.value.message
        assert TOKEN not in caught.value.message


def test_a_rate_limit_beyond_the_wait_fails_at_once(harness: Harness) -> None:
    change = harness.propose()
    harness.rate_limit()
    with pytest.raises(ForgeUnavailable) as caught:
        harness.forge.open_or_update(change)
    message = caught.value.message
    assert "GitHub is rate-limiting" in message
    assert f"while opening a pull request for {change.branch} in {REPO}" in message
    assert "beyond the 60 s Sluice waits" in message
    assert message.endswith("run again after that")


@pytest.mark.parametrize(
    ("permission", "method", "path"),
    [
        ("statuses: write", "POST", "/statuses/[0-9a-f]+"),
        ("contents: write", "POST", "/dispatches"),
        ("pull_requests: write", "POST", "/pulls"),
        ("pull_requests: write", "PATCH", "/pulls/[0-9]+"),
    ],
)
def test_a_missing_permission_is_a_config_error_naming_it(
    harness: Harness, permission: str, method: str, path: str
) -> None:
    change = harness.propose()
    harness.forge.check_access()
    number = harness.forge.open_or_update(change).number if method == "PATCH" else 0
    harness.forbid(permission, method, path)
    calls: dict[str, Callable[[], object]] = {
        "/pulls": lambda: harness.forge.open_or_update(change),
        "/pulls/[0-9]+": lambda: harness.forge.rewrite_body(number, lambda body: f"{body}!"),
        "/dispatches": lambda: harness.forge.dispatch("retrain", {}),
    }
    status = partial(harness.forge.report_status, change.head_sha, context="c", state="s")
    with pytest.raises(ConfigError) as caught:
        calls.get(path, partial(status, description="d"))()
    message = caught.value.message
    assert f"GitHub refused {method} /repos/{REPO}/" in message
    assert "403 Resource not accessible by integration" in message
    assert f"the token needs {permission} on {REPO}" in message
    assert "\n" not in message
