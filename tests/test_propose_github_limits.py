"""`sluice propose --forge github` against GitHub's limits, run as a user runs it: a token without
the permission to open pull requests, and a rate limit on pull request creation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.github_api import GitHubApiServer
from support.gitops_repo import snapshot
from support.gitrepo import GitRemote, git
from support.registry import register_version

from controller.local.services import MlflowService

TOKEN = "ghp_secretProposeLimits0123456789abcdefAB"
REPO = "acme/models"


@pytest.fixture
def github(remote: GitRemote) -> Iterator[GitHubApiServer]:
    with GitHubApiServer(TOKEN, {REPO: remote.path}) as server:
        yield server


def propose(
    tmp_path: Path, mlflow: MlflowService, remote: GitRemote, github: GitHubApiServer, model: str
) -> subprocess.CompletedProcess[str]:
    """`sluice propose MODEL --env staging --forge github --json`, as a user runs it."""
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
        "SLUICE_GIT_REMOTE": remote.url,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
        "SLUICE_GITHUB_API_URL": github.api_url,
        "SLUICE_GITHUB_TOKEN": TOKEN,
        "SLUICE_GITHUB_REPOSITORY": REPO,
    }
    args = ("propose", model, "--env", "staging", "--forge", "github", "--json")
    return subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), *args],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=180, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_token_without_pull_request_permission_exits_2_naming_it(
    mlflow_server: MlflowService, remote: GitRemote, github: GitHubApiServer, model: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """GitHub answering 403 on pull request creation: exit 2 and one line naming the endpoint
    and pull_requests: write, without the token. main is untouched and no pull request exists;
    the proposal branch is pushed (it precedes the pull request), so once the permission is
    granted the same command opens the pull request from it without a new commit."""
    version = register_version(mlflow_server.tracking_uri, model)
    branch = f"sluice/staging/{model}/v{version}"
    main = git("rev-parse", "main", cwd=remote.path)
    github.forbid(f"/repos/{REPO}/pulls", method="POST")

    result = propose(tmp_path, mlflow_server, remote, github, model)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert (
        f"GitHub refused POST /repos/{REPO}/pulls while opening a pull request for {branch}" in line
    )
    assert "403 Resource not accessible by integration" in line
    assert f"the token needs pull_requests: write on {REPO}" in line
    assert TOKEN not in result.stdout + result.stderr
    assert git("rev-parse", "main", cwd=remote.path) == main
    assert not any(r.method == "POST" and r.status < 400 for r in github.requests)
    pushed = git("rev-parse", branch, cwd=remote.path)
    refs = snapshot(remote)

    github.allow()
    again = propose(tmp_path, mlflow_server, remote, github, model)
    assert again.returncode == 0, again.stderr
    output = json.loads(again.stdout)
    assert (output["status"], output["commit"], output["pull_request"]) == ("unchanged", pushed, 1)
    assert snapshot(remote) == refs


@pytest.mark.slow
def test_rate_limited_pull_request_creation_is_waited_out(
    mlflow_server: MlflowService, remote: GitRemote, github: GitHubApiServer, model: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A secondary rate limit (429, Retry-After: 1) on pull request creation is waited out and
    the proposal opens its pull request once."""
    register_version(mlflow_server.tracking_uri, model)
    github.rate_limit_next(f"/repos/{REPO}/pulls", method="POST", retry_after=1)
    result = propose(tmp_path, mlflow_server, remote, github, model)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pull_request"] == 1
    posts = github.requests_to("POST", f"/repos/{REPO}/pulls")
    assert [r.status for r in posts] == [429, 201]
