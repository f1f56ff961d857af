"""With the GitHub forge, every rollout commit is told on the proposal's pull request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.github_api import GitHubApiServer
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote, git
from support.registry import register_version

from controller.analysis_types import GateResult, Verdict
from controller.backends.git_repo import GitWorkspace
from controller.backends.github_forge import GitHubForge
from controller.backends.mlflow_registry import MlflowRegistry
from controller.demo.gitops_remote import merge_branch
from controller.local.services import MlflowService
from controller.manifests.manifest import load_pin, read_release
from controller.notify import NullNotifier
from controller.proposals.propose import ProposalRequest, propose
from controller.rollout.act import Actuator
from controller.rollout.actions import SetWeight, StartRollback
from controller.rollout.observation import ReleaseObservation
from controller.rollout.observe import load_release
from controller.rollout.telemetry import RolloutMetrics
from controller.target_types import TargetObservation

pytestmark = pytest.mark.slow

ENV = "staging"


@pytest.fixture
def setup(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> Iterator[tuple[Actuator, GitHubApiServer, ReleaseObservation]]:
    """v2 proposed as a canary through a GitHub pull request, merged, with v1 serving."""
    model = f"forge-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    uri = mlflow_server.tracking_uri
    registry = MlflowRegistry(uri)
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    with GitHubApiServer("ghp_rollout_forge", {"acme/models": git_remote.path}) as server:
        forge = GitHubForge(api_url=server.api_url, token=server.token, repository="acme/models")
        for version in (register_version(uri, model), register_version(uri, model)):
            result = propose(
                ProposalRequest(model=model, environment=ENV, version=version),
                registry=registry, workspace=workspace, forge=forge,
            )  # fmt: skip
            merge_branch(git_remote.path, result.branch)
        workspace.sync()
        ref = load_release(workspace, ENV, model)
        text = workspace.read("main", ref.pin_path)
        assert text is not None
        head = workspace.remote_sha("main") or ""
        obs = ReleaseObservation(
            model=model, environment=ENV, inference_service=ref.release.inference_service,
            pin=read_release(load_pin(text, source=ref.pin_path)), head=head, pin_commit=head,
            pin_changed_at=0.0, target=TargetObservation(exists=True),
        )  # fmt: skip
        actuator = Actuator(ref, workspace, registry, NullNotifier(), RolloutMetrics(), forge)
        yield actuator, server, obs


def test_step_comments_on_the_pull_request_and_sets_a_status(setup) -> None:  # type: ignore[no-untyped-def]
    """A step commit gets a PR comment with every gate and a pending commit status."""
    actuator, server, obs = setup
    results = (
        GateResult("locust", Verdict.PASS, "locust: 400 requests, 0.0% failed"),
        GateResult("judge", Verdict.PASS, "judge look 1/3: pass"),
    )
    done = actuator.act(SetWeight(10, 50, results), obs, 1.0)
    assert done.commit is not None
    (comment,) = server.requests_to("POST", r"/repos/acme/models/issues/2/comments")
    body = comment.body["body"]
    assert f"{obs.model} v2: canary 10% → 50% ({ENV})" in body
    assert "| locust | pass | locust: 400 requests, 0.0% failed |" in body
    (status,) = server.requests_to("POST", rf"/repos/acme/models/statuses/{done.commit}")
    assert status.body["state"] == "pending"
    assert status.body["context"] == f"sluice/rollout/{ENV}"


def test_rollback_reports_a_failure(setup) -> None:  # type: ignore[no-untyped-def]
    """A rollback commit sets a failing status and says why on the pull request."""
    actuator, server, obs = setup
    done = actuator.act(StartRollback("locust: 18% failed (max 1%)"), obs, 1.0)
    assert done.commit is not None
    assert git("log", "-1", "--format=%s", "main", cwd=actuator.workspace.remote_url) == (
        f"rollback {obs.model} v2: all traffic back to v1 ({ENV})"
    )
    (comment,) = server.requests_to("POST", r"/repos/acme/models/issues/2/comments")
    assert "locust: 18% failed (max 1%)" in comment.body["body"]
    (status,) = server.requests_to("POST", rf"/repos/acme/models/statuses/{done.commit}")
    assert status.body["state"] == "failure"
