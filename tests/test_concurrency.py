"""Concurrency: processes and controllers that share a state directory, a remote or a release.

Each test reproduces one finding of a concurrency probe and fails on the code before the fix:
parallel `sluice propose` runs sharing the default state directory (one clone) each land their
branch; a controller that loses a push race to the same decision commits nothing instead of a
second "all traffic back"; the lease lets one controller act per release; and a webhook
delivery replayed after `sluice serve` restarts is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote, git

from controller.backends.git_repo import GitWorkspace
from controller.local.services import MlflowService
from controller.manifest import load_pin, read_release

STAGING_PIN = "manifests/overlays/staging/fraud-detector.yaml"


def cheap_versions(tracking_uri: str, model: str, count: int) -> list[int]:
    """``count`` registered versions of a new model, from paths of one run (no artifacts)."""
    client = MlflowClient(tracking_uri)
    client.create_registered_model(model)
    experiment = client.create_experiment(model)
    run = client.create_run(experiment).info
    return [
        int(client.create_model_version(model, f"{run.artifact_uri}/m{i}", run.run_id).version)
        for i in range(count)
    ]


# -- 1. processes sharing a state directory -------------------------------------------------------


@pytest.mark.slow
def test_parallel_proposals_sharing_the_default_state_dir_each_land_their_branch(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """Three `sluice propose --version N` at once, one default `.sluice`: three branches, each
    on the remote with its own version pinned (before the lock, the runs edited each other's
    work tree: all exited 0, some branches pointed at main unchanged or never existed)."""
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    versions = cheap_versions(mlflow_server.tracking_uri, model, 3)
    work = tmp_path / "work"
    work.mkdir()
    # The clone exists already, as after any earlier command run from this directory.
    GitWorkspace(git_remote.url, work / ".sluice" / "git").sync()
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")}
    environment.update(
        MLFLOW_TRACKING_URI=mlflow_server.tracking_uri, SLUICE_GIT_REMOTE=git_remote.url
    )
    sluice = str(Path(sys.executable).with_name("sluice"))
    processes = {
        version: subprocess.Popen(
            [sluice, "propose", model, "--env", "staging", "--version", str(version), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=work,
        )
        for version in versions
    }
    outputs = {version: process.communicate(timeout=180) for version, process in processes.items()}
    for version, (stdout, stderr) in outputs.items():
        assert processes[version].returncode == 0, stderr
        assert json.loads(stdout)["status"] == "proposed", stdout
        branch = f"sluice/staging/{model}/v{version}"
        pinned = read_release(
            load_pin(git("show", f"{branch}:{STAGING_PIN}", cwd=git_remote.path), source=branch)
        )
        assert pinned.version == version, (branch, pinned)
        assert git("rev-list", "--count", f"main..{branch}", cwd=git_remote.path) == "1"
