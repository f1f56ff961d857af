"""`sluice init MODEL --env ENV --forge github`: the onboarding as a pull request (#14).

The GitHub path is the by-hand path: the same init branch, opened as a pull request through
the forge, merged by `sluice local merge --forge github` through GitHub's merge endpoint as a
proposal's is. Against a real MLflow registry, real bare git remotes and the local GitHub REST
server (the one test double, tests/support/github_api.py), through the installed CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from github import Auth, Github
from support.github_api import GitHubApiServer
from support.gitops_repo import seed_manifests, snapshot
from support.gitrepo import GitRemote, create_git_remote, git
from support.readme_blocks import console_commands
from support.registry_copy import copy_version

from controller.local.services import MlflowService
from models.diabetes_regressor import train as diabetes

BIN = Path(sys.executable).parent
REPO = "acme/models-gitops"
TOKEN = "ghp_init_forge_token_never_printed"


def sluice(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sluice"), *args], capture_output=True, text=True, cwd=cwd, timeout=180,
        check=False, env={**os.environ, "COLUMNS": "200", **env},
    )  # fmt: skip


def github_env(server: GitHubApiServer) -> dict[str, str]:
    return {
        "SLUICE_GITHUB_API_URL": server.api_url,
        "SLUICE_GITHUB_TOKEN": TOKEN,
        "SLUICE_GITHUB_REPOSITORY": REPO,
    }


@pytest.fixture
def regressor(mlflow_tracking_uri: str, model: str, diabetes_v1: str) -> str:
    """``model`` registered as v1 by the diabetes example (plain MLflow and the helper): the
    session's training run, copied to a name of the test's own."""
    name = model.replace("fraud", "diabetes")
    copy_version(mlflow_tracking_uri, diabetes_v1, name)
    return name


@pytest.fixture
def github(remote: GitRemote) -> Iterator[GitHubApiServer]:
    with GitHubApiServer(TOKEN, {REPO: remote.path}) as server:
        yield server


def test_init_opens_one_pull_request_that_local_merge_merges(
    mlflow_tracking_uri: str,
    remote: GitRemote,
    regressor: str,
    github: GitHubApiServer,
    tmp_path: Path,
) -> None:
    """--forge github opens the init branch's pull request (title, labels, a body naming model,
    environment, version and files, a passing sluice/validate status) and prints its URL (also
    in --json); a rerun opens no second one; `sluice local merge --forge github` merges it as a
    proposal's, and the proposal that follows is merged the same way."""
    env = {
        **github_env(github),
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "SLUICE_GIT_REMOTE": remote.url,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
    }
    branch = f"sluice/local/{regressor}/init"
    first = sluice(tmp_path, env, "init", regressor, "--env", "local", "--forge", "github",
                   "--json")  # fmt: skip
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["status"] == "initialized"
    assert result["branch"] == branch
    assert result["pull_request_url"].endswith(f"/{REPO}/pull/{result['pull_request']}")
    assert result["commit"] == remote.head(branch)

    client = Github(base_url=github.api_url, auth=Auth.Token(TOKEN))
    pull = client.get_repo(REPO).get_pull(result["pull_request"])
    assert (pull.head.ref, pull.base.ref, pull.state) == (branch, "main", "open")
    assert pull.title == f"sluice init: serve {regressor} in local (mlflow, from v1)"
    assert {label.name for label in pull.labels} == {"sluice", f"model:{regressor}", "env:local"}
    body = pull.body
    assert f"<!-- sluice:init model={regressor} env=local version=1 -->" in body
    assert f"| model | `{regressor}` |" in body
    assert "| environment | `local` |" in body
    assert "| version read | v1 |" in body
    assert "5, from its input example" in body
    for path in result["files"]:
        assert f"- `{path}`" in body
    assert f"manifests/base/{regressor}.request.json" in result["files"]
    assert "```diff" in body
    statuses = client.get_repo(REPO).get_commit(result["commit"]).get_statuses()
    assert [(s.context, s.state) for s in statuses] == [("sluice/validate", "success")]

    again = sluice(tmp_path, env, "init", regressor, "--env", "local", "--forge", "github")
    assert again.returncode == 0, again.stderr
    assert "Already onboarded (no new commit)" in again.stdout
    assert f"Pull request #{result['pull_request']}: {result['pull_request_url']}" in again.stdout
    assert f"sluice local merge {regressor} --env local --forge github" in again.stdout
    assert len(github.requests_to("POST", rf"/repos/{REPO}/pulls$")) == 1
    assert TOKEN not in first.stdout + first.stderr + again.stdout + again.stderr

    main_before = remote.head()
    merged = sluice(tmp_path, env, "local", "merge", regressor, "--env", "local",
                    "--forge", "github")  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert f"Merged pull request #{result['pull_request']} ({branch}) into main" in merged.stdout
    assert git("log", "-1", "--format=%P", "main", cwd=remote.path).split() == [
        main_before,
        result["commit"],
    ]
    assert client.get_repo(REPO).get_pull(result["pull_request"]).merged

    done = sluice(tmp_path, env, "init", regressor, "--env", "local", "--forge", "github")
    assert done.returncode == 0, done.stderr
    assert "is already set up in local on main: nothing to do" in done.stdout
    assert len(github.requests_to("POST", rf"/repos/{REPO}/pulls$")) == 1

    proposed = sluice(tmp_path, env, "propose", regressor, "--env", "local", "--forge", "github",
                      "--json")  # fmt: skip
    assert proposed.returncode == 0, proposed.stderr
    proposal = json.loads(proposed.stdout)
    assert proposal["pull_request"] != result["pull_request"]
    merged = sluice(tmp_path, env, "local", "merge", regressor, "--env", "local",
                    "--forge", "github")  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert f"Merged pull request #{proposal['pull_request']} (sluice/local/{regressor}/v1)" in (
        merged.stdout
    )


def test_forge_github_without_a_token_changes_nothing(
    mlflow_tracking_uri: str, remote: GitRemote, regressor: str, tmp_path: Path
) -> None:
    """No token: one line naming what to set, exit 2, nothing pushed; --forge with --repo DIR
    (no model to open a pull request for) is refused in one line too."""
    env = {
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "SLUICE_GIT_REMOTE": remote.url,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
        "SLUICE_GITHUB_REPOSITORY": REPO,
        "SLUICE_GITHUB_TOKEN": "",
        "GITHUB_TOKEN": "",
    }
    before = snapshot(remote)
    done = sluice(tmp_path, env, "init", regressor, "--env", "local", "--forge", "github")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "token" in line
    assert "set SLUICE_GITHUB_TOKEN" in line
    assert snapshot(remote) == before

    repo = sluice(tmp_path, env, "init", "--repo", str(tmp_path / "new"), "--forge", "github")
    assert repo.returncode == 2
    (line,) = repo.stderr.strip().splitlines()
    assert "--forge opens the pull request of an onboarding: give MODEL --env ENV" in line
    assert not (tmp_path / "new").exists()


def test_a_refused_token_fails_before_the_branch_is_pushed(
    mlflow_tracking_uri: str,
    remote: GitRemote,
    regressor: str,
    github: GitHubApiServer,
    tmp_path: Path,
) -> None:
    """A token GitHub refuses fails the access check before anything is pushed, in one line
    that never holds the token."""
    wrong = "ghp_wrong_and_secret_init"
    env = {
        **github_env(github),
        "SLUICE_GITHUB_TOKEN": wrong,
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "SLUICE_GIT_REMOTE": remote.url,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
    }
    before = snapshot(remote)
    done = sluice(tmp_path, env, "init", regressor, "--env", "local", "--forge", "github")
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert wrong not in line
    assert snapshot(remote) == before
    assert github.requests_to("POST", rf"/repos/{REPO}/pulls$") == []


# -- the README, as written ----------------------------------------------------------------------


def test_the_readme_init_with_a_pull_request_runs_as_written(
    own_mlflow: MlflowService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's commands, as written, with default settings (the state directory in the
    working directory) and the GitHub forge's variables set as that section says: init opens
    the pull request and prints its URL, local merge merges it through GitHub, and the proposal
    that follows opens its own."""
    # The "Your own model" section's console block that uses --forge.
    commands = console_commands("## Your own model", containing="--forge github")
    assert commands == [
        "sluice init diabetes-regressor --env staging --forge github",
        "sluice local merge diabetes-regressor --env staging --forge github",
        "sluice propose diabetes-regressor --env staging --forge github",
    ]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", own_mlflow.tracking_uri)
    # An earlier test's process-wide tracking URI outranks the variable: this one's, restored after.
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(own_mlflow.tracking_uri)
    assert diabetes.main([]) == 0  # python -m models.diabetes_regressor.train
    remote = create_git_remote(tmp_path / "gitops")
    seed_manifests(remote, tmp_path / "seed")
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COLUMNS": "200",
        "MLFLOW_TRACKING_URI": own_mlflow.tracking_uri,
        "SLUICE_GIT_REMOTE": remote.url,
        **{k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL")},
    }
    with GitHubApiServer(TOKEN, {REPO: remote.path}) as server:
        env.update(github_env(server))
        outputs = []
        for command in commands:
            done = subprocess.run(
                ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                timeout=180, check=False,
            )  # fmt: skip
            assert done.returncode == 0, f"$ {command}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        assert "Pull request #1: " in outputs[0]
        assert f"{server.web_url}/{REPO}/pull/1" in outputs[0]
        merged = "Merged pull request #1 (sluice/staging/diabetes-regressor/init) into main"
        assert merged in outputs[1]
        assert "Pull request #2: " in outputs[2]
        assert (work / ".sluice" / "git").is_dir()  # the default state directory
        assert [p.head.ref for p in Github(
            base_url=server.api_url, auth=Auth.Token(TOKEN)
        ).get_repo(REPO).get_pulls(state="all")] == [
            "sluice/staging/diabetes-regressor/v1",
            "sluice/staging/diabetes-regressor/init",
        ]  # fmt: skip
