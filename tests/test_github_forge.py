"""Tests of the GitHub forge against the local GitHub API server and a real bare git remote."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from github import Auth, Github
from github.Repository import Repository
from support.github_api import GitHubApiServer
from support.gitrepo import git
from support.working_remote import WorkingRemote, copy_remote, make_template

from controller.backends.github_forge import GitHubForge
from controller.domain import ChangeRequest, ModelVersion, RunSummary
from controller.errors import ConfigError, ForgeUnavailable, PermanentError
from controller.proposals.model_card import ModelCard, render_model_card
from controller.quality.data_profile import DataProfile, NumericProfile
from controller.text.forge_limits import BODY_LIMIT

TOKEN = "ghp_sluiceForgeToken0123456789abcdefABCDEF"
REPO = "acme/gitops"
WRITES = ("POST", "PATCH", "PUT", "DELETE")


class Remote(WorkingRemote):
    """The shared working remote, plus a proposal branch pushed as `sluice propose` would."""

    def propose(
        self, model: str = "fraud-detector", env: str = "staging", version: int = 2, **fields: str
    ) -> ChangeRequest:
        """Push the proposal branch for a model version and describe it as propose would."""
        branch = f"sluice/{env}/{model}/v{version}"
        content = f"model: {model}\nenv: {env}\nversion: {version}\n"
        sha = self.commit(branch, "model.yaml", content, message=f"Pin {branch}", allow_empty=True)
        return ChangeRequest(
            branch=branch,
            base="main",
            title=fields.get("title", f"{model} v{version} → {env}"),
            body=fields.get("body", f"Model card of {model} v{version}"),
            labels=("sluice", f"model:{model}", f"env:{env}"),
            head_sha=sha,
            supersedes_prefix=f"sluice/{env}/{model}/",
        )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    """A bare repository with one commit on main and a clone of it, made once per module."""
    made = make_template(tmp_path_factory.mktemp("template"))
    return Remote(made.bare, made.work)


@pytest.fixture
def remote(template: Remote, tmp_path: Path) -> Remote:
    """A fresh copy of the template repository and its clone."""
    copied = copy_remote(template, tmp_path)
    return Remote(copied.bare, copied.work)


@pytest.fixture
def server(remote: Remote) -> Iterator[GitHubApiServer]:
    """The local GitHub API server serving acme/gitops from the bare repository."""
    with GitHubApiServer(token=TOKEN, repositories={REPO: remote.bare}) as running:
        yield running


def make_forge(
    server: GitHubApiServer, *, max_rate_limit_wait_seconds: float = 60, **overrides: str
) -> GitHubForge:
    """A forge on the server, without backoff sleeps."""
    settings = {"api_url": server.api_url, "token": TOKEN, "repository": REPO, **overrides}
    return GitHubForge(
        **settings,
        retries=2,
        backoff_seconds=0,
        max_rate_limit_wait_seconds=max_rate_limit_wait_seconds,
    )


@pytest.fixture
def forge(server: GitHubApiServer) -> Iterator[GitHubForge]:
    """The forge under test, pointed at the server."""
    made = make_forge(server)
    yield made
    made.close()


@pytest.fixture
def github(server: GitHubApiServer) -> Iterator[Repository]:
    """acme/gitops as a reviewer sees it on GitHub (a separate PyGithub client)."""
    client = Github(
        base_url=server.api_url, auth=Auth.Token(TOKEN), retry=None,
        seconds_between_requests=None, seconds_between_writes=None,
    )  # fmt: skip
    yield client.get_repo(REPO)
    client.close()


def writes(server: GitHubApiServer) -> list[tuple[str, str]]:
    """The requests that changed something, as (method, path)."""
    return [(r.method, r.path) for r in server.requests if r.method in WRITES]


def test_first_call_opens_pull_request(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """The first call opens a pull request with the card as body and the proposal's labels."""
    result = forge.open_or_update(remote.propose(body="## fraud-detector v2 → staging"))
    pr = github.get_pull(result.number)
    assert (result.created, result.state, result.superseded) == (True, "open", ())
    assert (pr.title, pr.body, pr.head.ref, pr.base.ref) == (
        "fraud-detector v2 → staging",
        "## fraud-detector v2 → staging",
        "sluice/staging/fraud-detector/v2",
        "main",
    )
    assert sorted(label.name for label in pr.labels) == [
        "env:staging",
        "model:fraud-detector",
        "sluice",
    ]
    assert result.url == pr.html_url


def test_second_identical_call_writes_nothing(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """Calling again with the same proposal returns the same pull request and writes nothing."""
    change = remote.propose()
    first = forge.open_or_update(change)
    before = writes(server)
    second = forge.open_or_update(change)
    assert (second.number, second.created) == (first.number, False)
    assert writes(server) == before
    assert [pr.number for pr in github.get_pulls(state="all")] == [first.number]


def test_new_forge_finds_the_existing_pull_request(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge
) -> None:
    """A second run (a new forge, as a new process would make) adopts the pull request."""
    change = remote.propose()
    first = forge.open_or_update(change)
    again = make_forge(server)
    assert again.open_or_update(change).number == first.number
    assert len(server.requests_to("POST", f"/repos/{REPO}/pulls")) == 1


def test_changed_body_updates_pull_request(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """A changed card is written to the open pull request in one edit."""
    first = forge.open_or_update(remote.propose(body="old card"))
    forge.open_or_update(remote.propose(body="new card"))
    assert github.get_pull(first.number).body == "new card"
    assert len(server.requests_to("PATCH", f"/repos/{REPO}/pulls/{first.number}")) == 1


def test_newer_version_supersedes_open_proposal(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """Proposing v3 closes the open v2 proposal with a comment naming the new pull request."""
    old = forge.open_or_update(remote.propose(version=2))
    new = forge.open_or_update(remote.propose(version=3))
    closed = github.get_pull(old.number)
    assert new.superseded == (old.number,)
    assert closed.state == "closed"
    assert [c.body for c in closed.get_issue_comments()] == [
        f"Superseded by #{new.number} (fraud-detector v3 → staging)"
    ]
    assert github.get_pull(new.number).state == "open"


def test_superseding_again_comments_once(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge
) -> None:
    """Rerunning the newer proposal neither comments on nor closes the old one again."""
    forge.open_or_update(remote.propose(version=2))
    change = remote.propose(version=3)
    forge.open_or_update(change)
    before = writes(server)
    assert forge.open_or_update(change).superseded == ()
    assert writes(server) == before


def test_retry_after_failed_close_does_not_comment_twice(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """When closing the old proposal fails once, the retry closes it without a second comment."""
    old = forge.open_or_update(remote.propose(version=2))
    server.fail_next(502, path_regex=f"/repos/{REPO}/pulls/{old.number}")
    forge.open_or_update(remote.propose(version=3))
    closed = github.get_pull(old.number)
    assert closed.state == "closed"
    assert closed.get_issue_comments().totalCount == 1


def test_same_branch_into_another_base_is_not_superseded(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """A pull request of the proposal's own branch into another base is left open."""
    git("push", "--quiet", "origin", "main:release", cwd=remote.work)
    change = remote.propose()
    other = github.create_pull(base="release", head=change.branch, title="Backport")
    assert forge.open_or_update(change).superseded == ()
    assert github.get_pull(other.number).state == "open"


def test_other_models_and_environments_are_untouched(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """Open proposals for another environment or another model stay open without comments."""
    production = forge.open_or_update(remote.propose(env="production", version=2))
    churn = forge.open_or_update(remote.propose(model="churn", version=1))
    result = forge.open_or_update(remote.propose(version=3))
    assert result.superseded == ()
    for number in (production.number, churn.number):
        pr = github.get_pull(number)
        assert (pr.state, pr.comments) == ("open", 0)


def test_missing_labels_are_added_back(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """A label removed by hand is added back on the next run; the others are kept."""
    change = remote.propose()
    number = forge.open_or_update(change).number
    github.get_pull(number).remove_from_labels("env:staging")
    forge.open_or_update(change)
    assert sorted(label.name for label in github.get_pull(number).labels) == [
        "env:staging",
        "model:fraud-detector",
        "sluice",
    ]


def test_bad_token_is_config_error_without_the_token(
    remote: Remote, server: GitHubApiServer
) -> None:
    """A wrong token says which variable to set, and the token is not in the message."""
    wrong = "ghp_wrongToken0123456789abcdefABCDEF0000"
    forge = make_forge(server, token=wrong)
    with pytest.raises(ConfigError) as caught:
        forge.open_or_update(remote.propose())
    assert "GitHub rejected the token for acme/gitops" in caught.value.message
    assert "SLUICE_GITHUB_TOKEN" in caught.value.message
    assert wrong not in caught.value.message
    assert wrong not in repr(forge)


def test_unknown_repository_is_config_error(remote: Remote, server: GitHubApiServer) -> None:
    """A repository GitHub does not know names itself and SLUICE_GITHUB_REPOSITORY."""
    forge = make_forge(server, repository="acme/elsewhere")
    with pytest.raises(ConfigError) as caught:
        forge.open_or_update(remote.propose())
    assert "acme/elsewhere" in caught.value.message
    assert "SLUICE_GITHUB_REPOSITORY" in caught.value.message


def test_persistent_502_is_forge_unavailable(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge
) -> None:
    """A 502 on every attempt becomes ForgeUnavailable naming the API URL, after 1 + 2 tries."""
    change = remote.propose()
    server.fail_next(502, count=100, path_regex=f"/repos/{REPO}/pulls")
    with pytest.raises(ForgeUnavailable) as caught:
        forge.open_or_update(change)
    assert server.api_url in caught.value.message
    assert "502" in caught.value.message
    assert "tried 3 times" in caught.value.message
    assert len(server.requests_to("GET", f"/repos/{REPO}/pulls")) == 3


def test_backoff_doubles_and_rate_limit_waits_go_through_the_injected_sleep(
    remote: Remote, server: GitHubApiServer
) -> None:
    """Transient failures wait backoff_seconds, doubling (1 s, 2 s), before the retries; a
    rate-limited answer waits what GitHub asks and does not use up a retry."""
    slept: list[float] = []
    forge = GitHubForge(
        api_url=server.api_url, token=TOKEN, repository=REPO, retries=2, backoff_seconds=1,
        sleep=slept.append,
    )  # fmt: skip
    change = remote.propose()
    server.fail_next(502, count=2, path_regex=f"/repos/{REPO}/pulls")
    server.rate_limit_next(f"/repos/{REPO}/pulls", method="POST", retry_after=7)
    result = forge.open_or_update(change)
    forge.close()
    assert result.created
    assert slept == [1, 2, 7]
    assert [r.status for r in server.requests_to("POST", f"/repos/{REPO}/pulls")] == [429, 201]


def test_single_502_is_retried(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """One transient 502 is retried and the pull request is opened once."""
    change = remote.propose()
    server.fail_next(502, path_regex=f"/repos/{REPO}/pulls")
    result = forge.open_or_update(change)
    assert result.created
    assert [pr.number for pr in github.get_pulls(state="all")] == [result.number]


def test_lost_answer_is_not_repeated(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """When GitHub acts but its answer is lost, the retry adopts the result instead of redoing."""
    change = remote.propose()
    server.fail_next(502, path_regex=f"/repos/{REPO}/issues/1/labels", after_effect=True)
    result = forge.open_or_update(change)
    assert (result.number, result.created) == (1, True)
    assert len(server.requests_to("POST", f"/repos/{REPO}/pulls")) == 1
    assert len(server.requests_to("POST", f"/repos/{REPO}/issues/1/labels")) == 1
    assert len(github.get_pull(1).labels) == 3


def test_lost_comment_answer_does_not_duplicate(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """A comment whose answer was lost is posted once, not again on retry."""
    number = forge.open_or_update(remote.propose()).number
    server.fail_next(502, path_regex=f"/repos/{REPO}/issues/{number}/comments", after_effect=True)
    forge.comment(number, "Canary at 10%: gates passing")
    comments = github.get_pull(number).get_issue_comments()
    assert [c.body for c in comments] == ["Canary at 10%: gates passing"]


def test_unreachable_api_is_forge_unavailable(remote: Remote) -> None:
    """A closed port becomes ForgeUnavailable naming the API URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api_url = f"http://127.0.0.1:{port}/api/v3"
    forge = GitHubForge(api_url=api_url, token=TOKEN, repository=REPO, backoff_seconds=0)
    with pytest.raises(ForgeUnavailable) as caught:
        forge.open_or_update(remote.propose())
    assert api_url in caught.value.message
    assert TOKEN not in caught.value.message


def test_branch_without_changes_is_permanent_error(remote: Remote, forge: GitHubForge) -> None:
    """A branch with nothing to merge fails with GitHub's validation message."""
    git("push", "--quiet", "origin", "main:sluice/staging/fraud-detector/v2", cwd=remote.work)
    change = ChangeRequest(
        branch="sluice/staging/fraud-detector/v2", base="main", title="t", body="b",
        labels=(), head_sha="0" * 40, supersedes_prefix="sluice/staging/fraud-detector/",
    )  # fmt: skip
    with pytest.raises(PermanentError) as caught:
        forge.open_or_update(change)
    assert "422 Validation Failed: No commits between main and" in caught.value.message


def test_commit_status_reaches_github(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """A commit status is set on the sha, its description cut to GitHub's 140 characters."""
    sha = remote.propose().head_sha
    forge.report_status(sha, context="sluice/validate", state="success", description="ok " * 60)
    [status] = github.get_commit(sha).get_statuses()
    assert (status.state, status.context) == ("success", "sluice/validate")
    assert len(status.description) == 140
    assert status.description.endswith("…")


def test_comment_reaches_pull_request(
    remote: Remote, forge: GitHubForge, github: Repository
) -> None:
    """A comment is posted on the pull request."""
    number = forge.open_or_update(remote.propose()).number
    forge.comment(number, "Rolled back: error rate 4.1% > 1%")
    assert [c.body for c in github.get_pull(number).get_issue_comments()] == [
        "Rolled back: error rate 4.1% > 1%"
    ]


def test_comment_on_missing_pull_request_is_permanent_error(forge: GitHubForge) -> None:
    """Commenting on a pull request that does not exist names it."""
    with pytest.raises(PermanentError) as caught:
        forge.comment(42, "hello")
    assert "404" in caught.value.message
    assert "pull request #42" in caught.value.message


def test_repr_names_repository_not_token(forge: GitHubForge) -> None:
    """The forge's repr shows the API URL and repository and never the token."""
    assert "acme/gitops" in repr(forge)
    assert TOKEN not in repr(forge)


# -- GitHub's limits: rate limits, permissions, body and description sizes ---------------------


def test_secondary_rate_limit_is_waited_out(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """Two 429s with Retry-After: 1 on pull request creation: Sluice waits as asked each time
    (PyGithub does not also retry), then opens the pull request once."""
    change = remote.propose()
    server.rate_limit_next(f"/repos/{REPO}/pulls", count=2, method="POST", retry_after=1)
    started = time.monotonic()
    result = forge.open_or_update(change)
    assert time.monotonic() - started >= 2
    assert result.created
    assert [r.status for r in server.requests_to("POST", f"/repos/{REPO}/pulls")] == [429, 429, 201]
    assert [pr.number for pr in github.get_pulls(state="all")] == [result.number]


def test_primary_rate_limit_waits_until_the_reset(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """A 403 "API rate limit exceeded" with X-RateLimit-Remaining 0 waits until
    X-RateLimit-Reset, then the comment is posted once."""
    number = forge.open_or_update(remote.propose()).number
    server.rate_limit_next(f"/repos/{REPO}/issues/{number}/comments", method="POST", reset_in=1)
    started = time.monotonic()
    forge.comment(number, "Canary at 10%")
    assert time.monotonic() - started >= 1
    assert [c.body for c in github.get_pull(number).get_issue_comments()] == ["Canary at 10%"]


def test_rate_limited_dispatch_is_sent_after_the_wait(server: GitHubApiServer) -> None:
    """A dispatch is not retried after errors, but a rate-limited one changed nothing on
    GitHub: it is sent again after the wait, and arrives once."""
    forge = make_forge(server)
    server.rate_limit_next(f"/repos/{REPO}/dispatches", retry_after=1)
    forge.dispatch("sluice-rollback", {"model": "fraud-detector"})
    assert [d.event_type for d in server.dispatches] == ["sluice-rollback"]


def test_rate_limit_beyond_the_maximum_wait_fails_at_once(
    remote: Remote, server: GitHubApiServer
) -> None:
    """A reset an hour away is not waited for: one line names the endpoint, when the limit
    resets and the maximum wait, without the token; nothing is created."""
    forge = make_forge(server, max_rate_limit_wait_seconds=5)
    change = remote.propose()
    server.rate_limit_next(f"/repos/{REPO}/pulls", method="POST", reset_in=3600)
    started = time.monotonic()
    with pytest.raises(ForgeUnavailable) as caught:
        forge.open_or_update(change)
    assert time.monotonic() - started < 5
    message = caught.value.message
    reset = datetime.fromtimestamp(time.time() + 3601, UTC)
    assert f"GitHub is rate-limiting POST /repos/{REPO}/pulls" in message
    assert "403 API rate limit exceeded for user ID" in message
    assert re.search(rf"resets at {reset:%Y-%m-%dT%H}:\d\d:\d\dZ \(in 36\d\d s\)", message)
    assert "beyond the 5 s Sluice waits" in message
    assert TOKEN not in message
    assert "\n" not in message
    assert server.requests_to("POST", f"/repos/{REPO}/pulls")[-1].status == 403
    assert not any(r.status == 201 for r in server.requests)


def test_repeated_rate_limits_stop_at_the_maximum_wait(
    remote: Remote, server: GitHubApiServer
) -> None:
    """The maximum wait bounds one operation's waits in all, not each wait."""
    forge = make_forge(server, max_rate_limit_wait_seconds=2.5)
    server.rate_limit_next(f"/repos/{REPO}/pulls", count=10, method="POST", retry_after=1)
    with pytest.raises(ForgeUnavailable) as caught:
        forge.open_or_update(remote.propose())
    assert "429 You have exceeded a secondary rate limit" in caught.value.message
    assert "2 s already waited" in caught.value.message
    assert len(server.requests_to("POST", f"/repos/{REPO}/pulls")) == 3


CallForge = Callable[[GitHubForge, Remote], object]


def _open(forge: GitHubForge, remote: Remote) -> object:
    return forge.open_or_update(remote.propose())


def _status(forge: GitHubForge, remote: Remote) -> object:
    sha = remote.propose().head_sha
    return forge.report_status(sha, context="sluice/validate", state="success", description="ok")


def _comment(forge: GitHubForge, remote: Remote) -> object:
    return forge.comment(1, "Canary at 10%")


def _dispatch(forge: GitHubForge, remote: Remote) -> object:
    return forge.dispatch("sluice-rollback", {"model": "fraud-detector"})


@pytest.mark.parametrize(
    ("method", "path", "call", "permission"),
    [
        ("POST", "/pulls", _open, "pull_requests: write"),
        ("POST", "/issues/1/labels", _open, "pull_requests: write (or issues: write)"),
        ("POST", "/issues/1/comments", _comment, "pull_requests: write (or issues: write)"),
        ("POST", "/statuses/[0-9a-f]+", _status, "statuses: write"),
        ("POST", "/dispatches", _dispatch, "contents: write"),
        ("GET", "/pulls", _open, "pull_requests: read"),
    ],
)
def test_missing_permission_names_it(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge,
    method: str, path: str, call: CallForge, permission: str,
) -> None:  # fmt: skip
    """A 403 "Resource not accessible by integration" is one ConfigError line naming the
    endpoint and the permission it needs, without the token, and is not retried."""
    if call is _comment:
        forge.open_or_update(remote.propose())
    server.forbid(f"/repos/{REPO}{path}", method=method)
    with pytest.raises(ConfigError) as caught:
        call(forge, remote)
    message = caught.value.message
    refused = [r for r in server.requests if r.status == 403]
    assert len(refused) == 1
    assert f"GitHub refused {method} {refused[0].path} while " in message
    assert "403 Resource not accessible by integration" in message
    assert f"the token needs {permission} on {REPO}" in message
    assert TOKEN not in message
    assert "\n" not in message


def test_oversized_bodies_are_cut_before_sending(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository
) -> None:
    """A pull request body or comment over 65,536 characters is cut to fit, says so and keeps
    its hidden marker; GitHub never answers 422, and a rerun writes nothing."""
    marker = "<!-- sluice:rollout -->"
    body = "## Rollout\n\n```\n" + "line of log output\n" * 10_000 + "```\n\n" + marker + "\n"
    change = remote.propose(body=body)
    number = forge.open_or_update(change).number
    forge.comment(number, body)
    pr = github.get_pull(number)
    [comment] = pr.get_issue_comments()
    for text in (pr.body, comment.body):
        assert len(text) <= BODY_LIMIT
        assert text.startswith("## Rollout\n\n```\nline of log output\n")
        assert text.count("```") == 2  # the cut code block is closed
        assert "Trimmed** to fit GitHub's 65,536-character limit" in text
        assert text.rstrip().endswith(marker)
    assert not any(r.status == 422 for r in server.requests)
    before = writes(server)
    forge.open_or_update(change)
    assert writes(server) == before


def test_long_status_description_never_reaches_github(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge
) -> None:
    """GitHub refuses descriptions over 140 characters; Sluice cuts them first, on one line."""
    sha = remote.propose().head_sha
    description = "Rendered overlay validates\n" + "and so on " * 40
    forge.report_status(sha, context="sluice/validate", state="success", description=description)
    [sent] = server.requests_to("POST", f"/repos/{REPO}/statuses/{sha}")
    assert sent.status == 201
    assert len(sent.body["description"]) == 140
    assert sent.body["description"].startswith("Rendered overlay validates and so on")


RUN_ID = "4f1c2a9e8b7d6c5b4a39281706f5e4d3"
RUN_URL = f"http://127.0.0.1:5000/#/experiments/1/runs/{RUN_ID}"


def enormous_card(*, diff_lines: int, metrics: int, feature_name: int) -> ModelCard:
    """A card whose diff, metrics table and profile table are as large as asked."""
    diff = "\n".join(f"+  annotation-{i}: {'x' * 60}" for i in range(diff_lines))
    logged = {f"metric_{i:05d}": 0.5 for i in range(metrics)}
    logged |= {f"champion_{name}": 0.4 for name in logged} | {"roc_auc": 0.93}
    feature = NumericProfile(
        count=100, nulls=0, minimum=0, maximum=1, mean=0.5, std=0.1,
        bin_edges=[0.5], bin_counts=[50, 50], sample=[0, 0.5, 1],
    )  # fmt: skip
    features = {f"feature_{i}_{'f' * feature_name}": feature for i in range(20)}
    return ModelCard(
        model="fraud-detector", environment="staging",
        version=ModelVersion(
            name="fraud-detector", version=3, run_id=RUN_ID, source="models:/m-abc",
            artifact_uri="mlflow-artifacts:/1/models/m-abc/artifacts",
            tags={"sluice.gate_summary": "passed"},
        ),
        previous_version=2,
        run=RunSummary(run_id=RUN_ID, url=RUN_URL, metrics=logged, params={"data": "s3://d"}),
        registry_url="http://127.0.0.1:5000/#/models/fraud-detector/versions/3",
        storage_uri="s3://sluice-models/fraud-detector/3", champion_version=2,
        canary_steps=(10, 50), gates=("request-success-rate",), diff=diff,
        profile=DataProfile(rows=1000, features=features, label_rate=0.02),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("size", "kept"),
    [
        # A long diff alone: its start stays, the rest is counted.
        ({"diff_lines": 3_000, "metrics": 5, "feature_name": 10}, ["```diff", "more lines"]),
        # An enormous diff, metrics table and profile: the diff and profile go, the metrics
        # table keeps its first rows.
        ({"diff_lines": 20_000, "metrics": 4_000, "feature_name": 4_000}, ["| roc_auc |"]),
    ],
)
def test_enormous_model_card_opens_a_pull_request_that_fits(
    remote: Remote, server: GitHubApiServer, forge: GitHubForge, github: Repository,
    size: dict[str, int], kept: list[str],
) -> None:  # fmt: skip
    """A card far over GitHub's limit still opens its pull request: the body is at most 65,536
    characters and keeps the headline, the run link, the gate and the marker."""
    card = enormous_card(**size)
    body = render_model_card(card)
    assert render_model_card(card) == body  # deterministic: a rerun does not rewrite it
    number = forge.open_or_update(remote.propose(version=3, body=body)).number
    text = github.get_pull(number).body
    assert text == body
    assert len(text) <= BODY_LIMIT
    assert text.startswith("## fraud-detector v3 → staging\n")
    assert f"[MLflow run `{RUN_ID[:12]}`]({RUN_URL})" in text
    assert "Trimmed** to fit GitHub's 65,536-character limit" in text
    assert "- **Quality gate:** passed" in text
    assert text.rstrip().endswith(
        "<!-- sluice:model-card model=fraud-detector env=staging version=3 -->"
    )
    for fragment in kept:
        assert fragment in text
    assert not any(r.status == 422 for r in server.requests)
