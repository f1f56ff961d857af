"""A serve pass finds exactly the releases whose alias moved away from their pin."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support.gitops_repo import manifest_files, seed_manifests
from support.gitrepo import GitRemote
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_registry import MlflowRegistry
from controller.errors import ConfigError
from controller.local.services import MlflowService
from controller.null_ports import NoForge
from controller.proposals import proposal_scan
from controller.proposals.proposal_scan import ReleaseSnapshot, Watched, due_proposals, scan
from controller.proposals.propose import ProposalRequest, propose
from controller.testing import MemoryRegistry, MemoryReleaseRepository

STAGING = Watched("staging", "m", "challenger", "manifests/overlays/staging/m.yaml")
PRODUCTION = Watched("production", "m", "champion", "manifests/overlays/production/m.yaml")


def test_moved_alias_is_due() -> None:
    """An alias naming another version than the pin makes a proposal of that version."""
    due = due_proposals([STAGING], {STAGING.pin_path: 3}, {"m": {"challenger": 4}})
    assert due == [ProposalRequest(model="m", environment="staging", version=4)]


def test_pinned_alias_is_not_due() -> None:
    """An alias naming the pinned version needs nothing."""
    assert due_proposals([STAGING], {STAGING.pin_path: 4}, {"m": {"challenger": 4}}) == []


def test_missing_alias_is_not_due() -> None:
    """A model without the alias (or not registered) proposes nothing."""
    assert due_proposals([STAGING, PRODUCTION], {}, {"m": {"challenger": 1}}) == [
        ProposalRequest(model="m", environment="staging", version=1)
    ]


def test_scan_settles_once_the_proposals_are_merged() -> None:
    """In memory: a new challenger is due where the environments follow that alias, and once
    proposed and merged, nothing is."""
    registry = MemoryRegistry()
    workspace = MemoryReleaseRepository(manifest_files("m"))
    assert scan(workspace, registry) == []
    version = registry.register("m", alias="challenger")
    due = scan(workspace, registry)
    assert sorted(due, key=lambda r: r.environment) == [
        ProposalRequest(model="m", environment="local", version=version),
        ProposalRequest(model="m", environment="staging", version=version),
    ]
    for request in due:
        result = propose(request, registry=registry, workspace=workspace, forge=NoForge())
        assert result.status == "proposed"
        workspace.remote.merge(result.branch, "main", f"Merge {result.branch}")
    assert scan(workspace, registry) == []
    assert ReleaseSnapshot(workspace, registry).pinned_version("staging", "m") == version


@pytest.mark.slow
def test_scan_reads_git_and_registry_and_settles_after_proposal(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """A new challenger is due once; after it is proposed and merged, nothing is due."""
    model = f"scan-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    registry = MlflowRegistry(mlflow_server.tracking_uri)
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    assert scan(workspace, registry) == []

    version = register_version(mlflow_server.tracking_uri, model)
    due = scan(workspace, registry)
    # The local and staging environments both follow the challenger alias.
    assert sorted(due, key=lambda r: r.environment) == [
        ProposalRequest(model=model, environment="local", version=version),
        ProposalRequest(model=model, environment="staging", version=version),
    ]
    staging = next(r for r in due if r.environment == "staging")
    local = next(r for r in due if r.environment == "local")
    result = propose(staging, registry=registry, workspace=workspace, forge=NoForge())
    merged = propose(local, registry=registry, workspace=workspace, forge=NoForge())
    from support.gitops_repo import commit_to_remote
    from support.gitrepo import git

    for branch in (result.branch, merged.branch):

        def merge(tree: Path, branch: str = branch) -> None:
            git("merge", "-q", "--no-ff", f"origin/{branch}", "-m", "m", cwd=tree)

        commit_to_remote(git_remote, tmp_path / f"merge-{branch.split('/')[1]}", "merge", merge)
    assert scan(workspace, registry) == []
    snapshot = ReleaseSnapshot(workspace, registry)
    assert snapshot.pinned_version("staging", model) == version
    assert snapshot.alias_version(model, "challenger") == version


def test_snapshot_watches_only_the_named_environments() -> None:
    """With environments named, only their releases are watched; without, every environment's."""
    workspace = MemoryReleaseRepository(manifest_files("m"))
    every = ReleaseSnapshot(workspace, MemoryRegistry())
    named = ReleaseSnapshot(
        workspace, MemoryRegistry(), environments=["staging", "production", "staging"]
    )
    assert sorted(w.environment for w in every.watched()) == ["local", "production", "staging"]
    assert named.watched() == [
        Watched("staging", "m", "challenger", "manifests/overlays/staging/fraud-detector.yaml"),
        Watched("production", "m", "champion", "manifests/overlays/production/fraud-detector.yaml"),
    ]


def test_unknown_environment_is_a_config_error_naming_the_environments() -> None:
    """An environment Git does not declare is one line naming those it does."""
    workspace = MemoryReleaseRepository(manifest_files("m"))
    snapshot = ReleaseSnapshot(workspace, MemoryRegistry(), environments=["staging", "prod"])
    with pytest.raises(ConfigError) as info:
        snapshot.watched()
    assert str(info.value) == (
        "no environment 'prod' in Git (manifests/overlays/ENV/sluice.yaml); "
        "the environments are: local, production, staging"
    )


def test_an_idle_pass_reads_and_parses_no_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins are parsed once per content (by Git blob id): a pass over pins that did not change
    reads none of them; a pin that changed is read again and the version it names counts."""
    monkeypatch.setattr(proposal_scan, "_VERSION_BY_BLOB", {})
    registry = MemoryRegistry()
    workspace = MemoryReleaseRepository(manifest_files("m"))
    read: list[str] = []
    read_many = workspace.read_many

    def counting(branch: str, paths: list[str]) -> dict[str, str | None]:
        read.extend(path for path in paths if not path.endswith("/sluice.yaml"))
        return read_many(branch, paths)

    monkeypatch.setattr(workspace, "read_many", counting)
    version = registry.register("m", alias="challenger")
    assert len(scan(workspace, registry)) == 2
    assert len(read) == 3  # every pin, once
    read.clear()
    assert len(scan(workspace, registry)) == 2
    assert read == []
    pin = "manifests/overlays/staging/fraud-detector.yaml"
    text = read_many("main", [pin])[pin]
    assert text is not None
    moved = text.replace(
        "    sluice.dev/model-name: m\n",
        f'    sluice.dev/model-name: m\n    sluice.dev/model-version: "{version}"\n',
    ).replace(
        "        name: mlflow\n", f"        name: mlflow\n      storageUri: s3://b/{version}\n"
    )
    workspace.remote.commit("main", {pin: moved}, "pin staging")
    assert scan(workspace, registry) == [
        ProposalRequest(model="m", environment="local", version=version)
    ]
    assert read == [pin]
