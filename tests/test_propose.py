"""`sluice propose` against a real MLflow registry and a real git remote, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from ruamel.yaml import YAML
from support.gitops_repo import commit_to_remote, manifest_files, snapshot
from support.gitrepo import GitRemote, git
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_registry import MlflowRegistry
from controller.demo.gitops_remote import merge_branch
from controller.local.processes import free_port
from controller.local.services import MlflowService
from controller.manifests.render import validate_rendered
from controller.null_ports import NoForge
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.testing import MemoryReleaseRepository, MemoryRemote

PIN = "manifests/overlays/staging/fraud-detector.yaml"


def sluice(tmp_path: Path, tracking_uri: str, remote: GitRemote, *args: str, **env: str):
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SLUICE_GIT_REMOTE": remote.url,
        "SLUICE_STATE_DIR": str(tmp_path / "state"),
        **env,
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )


def show(remote: GitRemote, ref: str, path: str = PIN) -> str:
    return git("show", f"{ref}:{path}", cwd=remote.path)


@pytest.mark.slow
def test_first_proposal_pins_the_version_and_changes_only_its_lines(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """The branch changes exactly the pin's version lines; the overlay renders and validates."""
    version = register_version(mlflow_server.tracking_uri, model)
    result = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging", "--json"
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    branch = f"sluice/staging/{model}/v{version}"
    assert output["status"] == "proposed"
    assert output["branch"] == branch

    client = MlflowClient(mlflow_server.tracking_uri)
    download = client.get_model_version_download_uri(model, str(version))
    run_id = client.get_model_version(model, str(version)).run_id
    expected_uri = download.replace("mlflow-artifacts:/", "s3://sluice-models/mlflow-artifacts/", 1)
    before, after = show(remote, "main").splitlines(), show(remote, branch).splitlines()
    added = [line for line in after if line not in before]
    assert [line for line in before if line not in after] == []
    assert added == [
        f'    sluice.dev/model-version: "{version}"',
        f"    sluice.dev/run-id: {run_id}",
        f"      storageUri: {expected_uri}",
    ]
    assert "canaryTrafficPercent" not in show(remote, branch)  # first deploy: straight to 100%

    checkout = remote.clone(tmp_path / "check")
    git("checkout", "--quiet", branch, cwd=checkout)
    (rendered,) = validate_rendered(checkout / "manifests/overlays/staging")
    assert rendered["spec"]["predictor"]["model"]["storageUri"] == expected_uri

    subject, _, body = git("log", "-1", "--format=%B", branch, cwd=remote.path).partition("\n\n")
    assert subject == f"{model} v{version} → staging (first deploy)"
    trailers = git("log", "-1", "--format=%(trailers:only,unfold)", branch, cwd=remote.path)
    assert f"Sluice-Model: {model}" in trailers
    assert f"Sluice-Version: {version}" in trailers
    assert "Sluice-Env: staging" in trailers
    assert "Sluice-Run: " in trailers
    assert "roc_auc 0.9100" in body


@pytest.mark.slow
def test_running_again_changes_nothing(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """A second identical proposal makes no commit and no new branch."""
    register_version(mlflow_server.tracking_uri, model)
    first = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging"
    )
    assert first.returncode == 0, first.stderr
    refs = snapshot(remote)
    again = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging", "--json"
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "unchanged"
    assert snapshot(remote) == refs


@pytest.mark.slow
def test_a_version_proposed_merged_and_rolled_back_can_be_proposed_again(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """After its proposal was merged and a rollback put the old pin back on main (an aborted
    rollout leaves the version unquarantined, "it may be proposed again"), `sluice propose`
    of the same version makes a new proposal on its branch, remade from main, which merges
    and pins the version again. The `sluice serve` loop does not: an alias still naming the
    rolled-back version is left alone (the proposal is "unchanged")."""
    version = register_version(mlflow_server.tracking_uri, model)
    first = sluice(tmp_path, mlflow_server.tracking_uri, remote, "propose", model,
                   "--env", "staging", "--version", str(version))  # fmt: skip
    assert first.returncode == 0, first.stderr
    branch = f"sluice/staging/{model}/v{version}"
    before = show(remote, "main")
    merge_branch(remote.path, branch)
    commit_to_remote(remote, tmp_path / "rollback", f"rollback {model} v{version}: aborted",
                     lambda tree: (tree / PIN).write_text(before + "\n"))  # fmt: skip
    assert show(remote, "main") == before

    loop = propose(
        ProposalRequest(model=model, environment="staging", version=version),
        registry=MlflowRegistry(mlflow_server.tracking_uri),
        workspace=GitWorkspace(remote.url, tmp_path / "serve-git"),
        forge=NoForge(),
    )
    assert loop.status == "unchanged"

    again = sluice(tmp_path, mlflow_server.tracking_uri, remote, "propose", model,
                   "--env", "staging", "--version", str(version), "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "proposed"
    assert git("merge-base", "main", branch, cwd=remote.path) == git(
        "rev-parse", "main", cwd=remote.path
    )  # remade from main's tip, not stacked on the merged one
    merge_branch(remote.path, branch)
    assert f'sluice.dev/model-version: "{version}"' in show(remote, "main")


@pytest.mark.slow
def test_next_version_starts_a_canary_beside_the_serving_one(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """Once v1 serves, proposing v2 records v1 as previous and, with the pre-traffic smoke on
    by default, pins v2 at weight 0 in the smoke phase: the subject and the body say the
    first canary step follows the smoke."""
    register_version(mlflow_server.tracking_uri, model)
    first = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging", "--json"
    )
    branch = json.loads(first.stdout)["branch"]
    commit_to_remote(
        remote, tmp_path / "merge", "Merge v1",
        lambda tree: git("merge", "--quiet", "--no-ff", f"origin/{branch}", "-m", "m", cwd=tree),
    )  # fmt: skip
    same = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging", "--json"
    )
    assert json.loads(same.stdout)["status"] == "already-serving"

    version = register_version(mlflow_server.tracking_uri, model)
    second = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging", "--json"
    )
    assert second.returncode == 0, second.stderr
    output = json.loads(second.stdout)
    pin = YAML(typ="safe").load(show(remote, output["branch"]))
    assert pin["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert pin["metadata"]["annotations"]["sluice.dev/phase"] == "smoke"
    assert pin["metadata"]["annotations"]["sluice.dev/previous-version"] == "1"
    assert output["canary_percent"] == 0
    assert output["subject"] == f"{model} v{version} → staging (smoke, canary 10%)"
    body = git("log", "-1", "--format=%b", output["branch"], cwd=remote.path)
    assert "starts at 0% of the traffic and takes 10% only once it answered" in body
    assert output["merge_command"].startswith("git fetch origin")


@pytest.mark.slow
def test_dry_run_prints_the_diff_and_pushes_nothing(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """--dry-run shows the change and leaves the remote as it was."""
    register_version(mlflow_server.tracking_uri, model)
    refs = snapshot(remote)
    result = sluice(
        tmp_path,
        mlflow_server.tracking_uri,
        remote,
        "propose",
        model,
        "--env",
        "staging",
        "--dry-run",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["status"] == "dry-run"
    assert "+      storageUri: s3://sluice-models/" in output["diff"]
    assert snapshot(remote) == refs


def _break_pin(tree: Path) -> None:
    pin = tree / PIN
    pin.write_text(
        pin.read_text().replace("  predictor:\n", "  predictor:\n    minReplicas: two\n")
    )


def _allow_only_s3(tree: Path) -> None:
    config = tree / "manifests/overlays/staging/sluice.yaml"
    text = config.read_text().replace("mlflow-artifacts:/", "no-such-prefix:/")
    config.write_text(text.replace("[s3, gs, mlflow-artifacts, file]", "[s3, gs]"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "prepare", "code", "message"),
    [
        (
            ["propose", "no-such-model", "--env", "staging"],
            None,
            2,
            "does not serve model 'no-such-model'",
        ),
        (["propose", "{model}", "--env", "qa"], None, 2, "unknown environment 'qa'"),
        (
            ["propose", "{model}", "--env", "staging", "--alias", "nope"],
            None,
            2,
            "has no alias 'nope'",
        ),
        (["propose", "{model}", "--env", "staging", "--version", "99"], None, 2, "not found"),
        (
            ["propose", "{model}", "--env", "staging"],
            _allow_only_s3,
            2,
            "scheme 'mlflow-artifacts'",
        ),
        (
            ["propose", "{model}", "--env", "staging"],
            _break_pin,
            2,
            "minReplicas: 'two' is not of type 'integer'",
        ),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path,
    args: list[str], prepare, code: int, message: str,
) -> None:  # fmt: skip
    """Each bad input exits with its code and one line; remote and registry stay as they were."""
    register_version(mlflow_server.tracking_uri, model)
    if prepare is not None:
        commit_to_remote(remote, tmp_path / "prep", "Prepare", prepare)
    client = MlflowClient(mlflow_server.tracking_uri)
    versions_before = len(client.search_model_versions(f"name = '{model}'"))
    refs = snapshot(remote)
    result = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, *[a.format(model=model) for a in args]
    )
    assert result.returncode == code, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert snapshot(remote) == refs
    assert len(client.search_model_versions(f"name = '{model}'")) == versions_before


@pytest.mark.slow
def test_quarantine_is_refused_listed_and_lifted_with_a_reason(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """A version a rollout judged worse is never proposed by mistake, not even with --force:
    one line naming the reason and `sluice quarantine lift`. `quarantine list` shows it; a
    lift needs a reason and records who, why and when; then the version is proposed as any."""
    uri = mlflow_server.tracking_uri
    version = register_version(uri, model)
    client = MlflowClient(uri)
    why = "rolled back in staging: 20% of requests failed"
    client.set_model_version_tag(model, str(version), "sluice.quarantined", why)
    client.set_model_version_tag(model, str(version), "sluice.quarantined.environment", "staging")
    refs = snapshot(remote)
    args = ("propose", model, "--env", "staging", "--version", str(version))
    refused = sluice(tmp_path, uri, remote, *args)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"v{version} is quarantined ({why}); if it should roll out after all, lift the " in (
        line_of(refused.stderr)
    )
    forced = sluice(tmp_path, uri, remote, *args, "--force")
    assert forced.returncode == 2, forced.stdout + forced.stderr
    assert "sluice quarantine lift" in line_of(forced.stderr)
    assert snapshot(remote) == refs

    listed = sluice(tmp_path, uri, remote, "quarantine", "list", model, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"model": model, "version": version, "reason": why, "environment": "staging", "since": ""}
    ]
    no_reason = sluice(tmp_path, uri, remote, "quarantine", "lift", model, str(version))
    assert no_reason.returncode == 2
    blank = sluice(
        tmp_path, uri, remote, "quarantine", "lift", model, str(version), "--reason", " "
    )
    assert blank.returncode == 2
    assert "--reason must say why" in line_of(blank.stderr)
    wrong = sluice(tmp_path, uri, remote, "quarantine", "lift", model, "99", "--reason", "x")
    assert wrong.returncode == 2
    assert f"quarantined versions of {model}: v{version}" in line_of(wrong.stderr)
    assert "sluice.quarantined" in client.get_model_version(model, str(version)).tags

    lifted = sluice(
        tmp_path, uri, remote, "quarantine", "lift", model, str(version),
        "--reason", "the failures came from a broken feature store, fixed in #42", "--by", "ana",
    )  # fmt: skip
    assert lifted.returncode == 0, lifted.stderr
    tags = client.get_model_version(model, str(version)).tags
    assert "sluice.quarantined" not in tags
    assert tags["sluice.quarantine.lifted"].startswith("the failures came from a broken")
    assert tags["sluice.quarantine.lifted.by"] == "ana"
    assert tags["sluice.quarantine.lifted.was"] == why
    assert tags["sluice.quarantine.lifted.at"].endswith("+00:00")
    empty = sluice(tmp_path, uri, remote, "quarantine", "list", model, "--json")
    assert json.loads(empty.stdout) == []
    proposed = sluice(tmp_path, uri, remote, *args, "--json")
    assert proposed.returncode == 0, proposed.stderr
    assert json.loads(proposed.stdout)["status"] == "proposed"


def line_of(stderr: str) -> str:
    """The one line an error prints."""
    (line,) = stderr.strip().splitlines()
    return line


@pytest.mark.slow
def test_unreachable_registry_exits_3(remote: GitRemote, model: str, tmp_path: Path) -> None:
    """No registry at the tracking URI: exit 3, one line, nothing pushed."""
    refs = snapshot(remote)
    result = sluice(
        tmp_path, f"http://127.0.0.1:{free_port()}", remote, "propose", model, "--env", "staging"
    )
    assert result.returncode == 3, result.stderr
    assert "unreachable" in result.stderr.strip()
    assert snapshot(remote) == refs


@pytest.mark.slow
def test_unreachable_remote_exits_3(
    mlflow_server: MlflowService, model: str, tmp_path: Path
) -> None:
    """A remote that does not exist: exit 3 and one line naming it."""
    missing = GitRemote(path=tmp_path / "gone.git", branch="main", initial_commit="")
    result = sluice(
        tmp_path, mlflow_server.tracking_uri, missing, "propose", model, "--env", "staging"
    )
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "gone.git" in line


@pytest.fixture
def github(remote: GitRemote):
    from support.github_api import GitHubApiServer

    with GitHubApiServer("ghp_testtoken_propose", {"acme/models": remote.path}) as server:
        yield server


def github_env(server) -> dict[str, str]:
    return {
        "SLUICE_GITHUB_API_URL": server.api_url,
        "SLUICE_GITHUB_TOKEN": server.token,
        "SLUICE_GITHUB_REPOSITORY": "acme/models",
    }


@pytest.mark.slow
def test_github_pull_request_carries_the_model_card_and_labels(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path, github
) -> None:
    """With the GitHub forge the PR has the card, the labels and a passing validate status."""
    version = register_version(mlflow_server.tracking_uri, model)
    args = ("propose", model, "--env", "staging", "--forge", "github", "--json")
    result = sluice(tmp_path, mlflow_server.tracking_uri, remote, *args, **github_env(github))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    from github import Auth, Github

    client = Github(base_url=github.api_url, auth=Auth.Token(github.token))
    pull = client.get_repo("acme/models").get_pull(output["pull_request"])
    assert pull.title == f"{model} v{version} → staging (first deploy)"
    assert pull.head.ref == f"sluice/staging/{model}/v{version}"
    assert {label.name for label in pull.labels} == {"sluice", f"model:{model}", "env:staging"}
    assert f"<!-- sluice:model-card model={model} env=staging version={version} -->" in pull.body
    assert "roc_auc" in pull.body
    assert "```diff" in pull.body
    statuses = client.get_repo("acme/models").get_commit(output["commit"]).get_statuses()
    assert [(s.context, s.state) for s in statuses] == [("sluice/validate", "success")]

    again = sluice(tmp_path, mlflow_server.tracking_uri, remote, *args, **github_env(github))
    assert json.loads(again.stdout)["pull_request"] == output["pull_request"]
    assert len(github.requests_to("POST", r"/repos/acme/models/pulls")) == 1


@pytest.mark.slow
def test_newer_version_supersedes_the_older_pull_request(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path, github
) -> None:
    """Proposing v2 closes v1's open PR with a comment pointing at the new one."""
    args = ("propose", model, "--env", "staging", "--forge", "github", "--json")
    register_version(mlflow_server.tracking_uri, model)
    first = json.loads(
        sluice(tmp_path, mlflow_server.tracking_uri, remote, *args, **github_env(github)).stdout
    )
    register_version(mlflow_server.tracking_uri, model)
    second = json.loads(
        sluice(tmp_path, mlflow_server.tracking_uri, remote, *args, **github_env(github)).stdout
    )
    assert second["superseded"] == [first["pull_request"]]
    from github import Auth, Github

    repo = Github(base_url=github.api_url, auth=Auth.Token(github.token)).get_repo("acme/models")
    old = repo.get_pull(first["pull_request"])
    assert old.state == "closed"
    assert any(f"#{second['pull_request']}" in c.body for c in old.get_issue_comments())


@pytest.mark.slow
def test_rejected_token_never_appears_in_output(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path, github
) -> None:
    """A token GitHub rejects is reported without being shown, exit 2, nothing pushed."""
    register_version(mlflow_server.tracking_uri, model)
    refs = snapshot(remote)
    env = {**github_env(github), "SLUICE_GITHUB_TOKEN": "ghp_wrong_and_secret_42"}
    result = sluice(
        tmp_path,
        mlflow_server.tracking_uri,
        remote,
        "propose",
        model,
        "--env",
        "staging",
        "--forge",
        "github",
        **env,
    )
    assert result.returncode == 2
    assert "ghp_wrong_and_secret_42" not in result.stdout + result.stderr
    assert "SLUICE_GITHUB_TOKEN" in result.stderr
    assert snapshot(remote) == refs


@pytest.mark.slow
def test_concurrent_identical_proposals_land_once(mlflow_server: MlflowService, model: str) -> None:
    """Two racing proposals of one version both succeed; the loser rebases onto one commit."""
    register_version(mlflow_server.tracking_uri, model)
    barrier = threading.Barrier(2, timeout=60)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    request = ProposalRequest(model=model, environment="staging")
    remote = MemoryRemote(manifest_files(model))
    results, workspaces = {}, {}

    def run(name: str) -> None:
        # Two controllers of one team, each with its own committer: their commits differ even
        # when both land in the same second (identical commits would both "win" the push).
        workspace = workspaces[name] = MemoryReleaseRepository(remote=remote, author=name)
        pushes: list[str] = []

        def first_waits_for_the_other(branch: str) -> None:
            pushes.append(branch)
            if len(pushes) == 1:  # both have edited the same tip before either pushes
                barrier.wait()

        workspace.before_push = first_waits_for_the_other
        results[name] = propose(request, registry=registry, workspace=workspace, forge=NoForge())

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(r.status for r in results.values()) == ["proposed", "unchanged"]
    assert len({r.commit for r in results.values()}) == 1
    branch = remote.log(results["a"].branch)
    assert branch[1].sha == remote.tip("main")  # one commit on main's tip
    assert sorted(w.edits for w in workspaces.values()) == [1, 2]


@pytest.mark.slow
def test_with_a_shadow_phase_the_next_version_starts_in_shadow(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """rollout.shadow in sluice.yaml: v2 is pinned at weight 0 with the shadow marks, so its
    revision exists and answers mirrored requests only; the subject says so."""
    tracking_uri = mlflow_server.tracking_uri
    register_version(tracking_uri, model)
    registry = MlflowRegistry(tracking_uri)

    def run(version: int | None = None) -> ProposalResult:
        workspace = GitWorkspace(remote.url, tmp_path / "cache")
        request = ProposalRequest(model=model, environment="staging", version=version)
        return propose(request, registry=registry, workspace=workspace, forge=NoForge())

    first = run()
    config = "manifests/overlays/staging/sluice.yaml"

    def merge_and_enable_shadow(tree: Path) -> None:
        git("merge", "--quiet", "--no-ff", f"origin/{first.branch}", "-m", "m", cwd=tree)
        path = tree / config
        text = path.read_text()
        shadow = "rollout:\n  shadow:\n    mirrorPercent: 50\n"
        path.write_text(text.replace("rollout:\n", shadow, 1))

    commit_to_remote(remote, tmp_path / "merge", "Merge v1", merge_and_enable_shadow)
    version = register_version(tracking_uri, model)
    second = run()
    pin = YAML(typ="safe").load(show(remote, second.branch))
    assert pin["spec"]["predictor"]["canaryTrafficPercent"] == 0
    annotations = pin["metadata"]["annotations"]
    assert annotations["sluice.dev/phase"] == "shadow"
    assert annotations["sluice.dev/mirror-percent"] == "50"
    assert annotations["sluice.dev/previous-version"] == "1"
    assert second.subject == f"{model} v{version} → staging (shadow)"
    body = git("log", "-1", "--format=%b", second.branch, cwd=remote.path)
    assert "mirrored copy of 50% of the live requests" in body


@pytest.mark.slow
def test_a_releases_own_steps_pin_its_canary_while_another_keeps_the_environments(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """Two releases of staging, each serving v1: the one whose `rollout:` overrides `steps:
    [25, 100]` and turns its smoke off has v2 pinned at canaryTrafficPercent 25; the other
    keeps the environment's policy (smoke first, then its first step, 10 %)."""
    tracking_uri = mlflow_server.tracking_uri
    other = f"{model}-other"
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment(model)).info
    for name in (model, other):  # v1 and v2 of each (a version's source needs no model here)
        client.create_registered_model(name)
        for number in (1, 2):
            client.create_model_version(name, f"{run.artifact_uri}/{name}-{number}", run.run_id)
        client.set_registered_model_alias(name, "challenger", "2")
    overlay = "manifests/overlays/staging"

    def two_releases_serving_v1(tree: Path) -> None:
        base = (tree / "manifests/base/fraud-detector.yaml").read_text()
        (tree / "manifests/base/other.yaml").write_text(base.replace("fraud-detector", "other"))
        with (tree / "manifests/base/kustomization.yaml").open("a") as file:
            file.write("  - other.yaml\n")
        with (tree / overlay / "kustomization.yaml").open("a") as file:
            file.write("  - path: other.yaml\n")
        serving_v1 = (
            'annotations:\n    sluice.dev/model-version: "1"\n',
            "        name: mlflow\n      storageUri: s3://sluice-models/v1\n",
        )
        pin = (tree / PIN).read_text()
        pin = pin.replace("annotations:\n", serving_v1[0]).replace(
            "        name: mlflow\n", serving_v1[1]
        )
        (tree / PIN).write_text(pin)
        other_pin = pin.replace("fraud-detector", "other").replace(model, other)
        (tree / overlay / "other.yaml").write_text(other_pin)
        config = (tree / overlay / "sluice.yaml").read_text()
        release = "    alias: challenger\n"
        config = config.replace(
            release,
            release + "    rollout:\n      steps: [25, 100]\n      smoke: {enabled: false}\n"
            f"  - model: {other}\n    inferenceService: other\n    pin: other.yaml\n",
        )  # fmt: skip
        (tree / overlay / "sluice.yaml").write_text(config)

    commit_to_remote(remote, tmp_path / "two", "Two releases serving v1", two_releases_serving_v1)
    registry = MlflowRegistry(tracking_uri)
    results = {
        name: propose(
            ProposalRequest(model=name, environment="staging"),
            registry=registry, workspace=GitWorkspace(remote.url, tmp_path / "cache"),
            forge=NoForge(),
        )
        for name in (model, other)
    }  # fmt: skip
    own = YAML(typ="safe").load(show(remote, results[model].branch))
    assert own["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert "sluice.dev/phase" not in own["metadata"]["annotations"]
    assert results[model].subject == f"{model} v2 → staging (canary 25%)"
    kept = YAML(typ="safe").load(show(remote, results[other].branch, f"{overlay}/other.yaml"))
    assert kept["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert kept["metadata"]["annotations"]["sluice.dev/phase"] == "smoke"
    assert results[other].subject == f"{other} v2 → staging (smoke, canary 10%)"


@pytest.mark.slow
def test_a_release_may_name_one_of_kserves_own_runtimes(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """A team serving with KServe's kserve-sklearnserver (modelFormat sklearn) gets the same
    proposals: Sluice writes only the pin, leaves the runtime alone, and the overlay validates."""
    base = "manifests/base/fraud-detector.yaml"
    runtime = "runtime: kserve-sklearnserver"

    def sklearn_runtime(tree: Path) -> None:
        for path, edits in (
            (tree / base, {"name: mlflow": "name: sklearn", "runtime: sluice-mlflow": runtime}),
            (tree / PIN, {"name: mlflow": "name: sklearn"}),
        ):
            text = path.read_text()
            for old, new in edits.items():
                assert old in text, old
                text = text.replace(old, new)
            path.write_text(text)

    commit_to_remote(
        remote, tmp_path / "runtime", "Serve with KServe's sklearn runtime", sklearn_runtime
    )
    register_version(mlflow_server.tracking_uri, model)
    result = sluice(
        tmp_path, mlflow_server.tracking_uri, remote, "propose", model, "--env", "staging", "--json"
    )
    assert result.returncode == 0, result.stderr
    branch = json.loads(result.stdout)["branch"]
    assert show(remote, branch, base) == show(remote, "main", base)
    checkout = remote.clone(tmp_path / "check")
    git("checkout", "--quiet", branch, cwd=checkout)
    (rendered,) = validate_rendered(checkout / "manifests/overlays/staging")
    model_spec = rendered["spec"]["predictor"]["model"]
    assert model_spec["runtime"] == "kserve-sklearnserver"
    assert model_spec["modelFormat"] == {"name": "sklearn"}
    assert model_spec["storageUri"].startswith("s3://sluice-models/")


@pytest.mark.slow
def test_piped_at_80_columns_the_diff_and_the_merge_command_are_never_wrapped(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    """`sluice propose ... | cat` at 80 columns: each line of the diff and the merge command is
    printed whole (copyable), not cut at column 80, and carries no colour codes."""
    register_version(mlflow_server.tracking_uri, model)
    args = ("propose", model, "--env", "staging")
    result = sluice(tmp_path, mlflow_server.tracking_uri, remote, *args, COLUMNS="80")
    assert result.returncode == 0, result.stderr
    again = sluice(tmp_path, mlflow_server.tracking_uri, remote, *args, "--json")
    assert again.returncode == 0, again.stderr
    output = json.loads(again.stdout)
    lines = result.stdout.splitlines()
    long = [line for line in output["diff"].splitlines() if len(line) > 80]
    assert long, "the test needs a diff line longer than 80 columns"
    for line in output["diff"].splitlines():
        assert line in lines, (line, result.stdout)
    assert len(output["merge_command"]) > 80
    assert f"  {output['merge_command']}" in lines
    assert f"  sluice local merge {model} --env staging" in lines
    assert lines[0] == f"Proposed: {output['subject']}"
    assert "\x1b[" not in result.stdout
