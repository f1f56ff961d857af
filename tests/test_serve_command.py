"""`sluice serve` as a user runs it: a new challenger becomes a proposal without anyone asking."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from support.cluster_release import cluster_release
from support.gitops_repo import seed_manifests
from support.gitrepo import GitRemote, git
from support.kube_api import kube_api
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.commands.serve import build_watcher
from controller.local.processes import free_port, http_ok
from controller.local.services import MlflowService
from controller.proposals.proposal_scan import ReleaseSnapshot
from controller.proposals.propose import ProposalRequest
from controller.serve.server import ServeMetrics
from controller.testing import MemoryRegistry


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def branches(remote: GitRemote) -> list[str]:
    return git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote.path).split()


@contextmanager
def serving(tmp_path: Path, mlflow: MlflowService, remote: GitRemote, **env: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("sluice")), "serve", "--port", str(port)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": mlflow.tracking_uri,
            "SLUICE_GIT_REMOTE": remote.url,
            "SLUICE_STATE_DIR": str(tmp_path / "state"),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{url}/healthz"))
        yield url
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output


@pytest.mark.slow
def test_polling_proposes_a_new_challenger(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """With a 1 s interval, a challenger set in MLflow becomes a pushed proposal branch."""
    model = f"serve-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    with serving(tmp_path, mlflow_server, git_remote, SLUICE_POLL_INTERVAL_SECONDS="1") as url:
        version = register_version(mlflow_server.tracking_uri, model)
        branch = f"sluice/staging/{model}/v{version}"
        wait_for(lambda: branch in branches(git_remote))
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert "sluice_poll_runs_total" in metrics


@pytest.mark.slow
def test_mlflow_webhook_proposes_long_before_the_next_poll(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """With an hour between polls, MLflow's signed webhook alone triggers the proposal."""
    model = f"hook-{uuid.uuid4().hex[:8]}"
    seed_manifests(git_remote, tmp_path / "seed", model=model)
    env = {
        "SLUICE_POLL_INTERVAL_SECONDS": "3600",
        "SLUICE_WEBHOOK_SECRET": "whsec-" + uuid.uuid4().hex,
    }
    with serving(tmp_path, mlflow_server, git_remote, **env) as url:
        hook = f"{url}/hooks/mlflow"
        client = MlflowClient(mlflow_server.tracking_uri)
        from controller.backends.mlflow_registry import MlflowRegistry

        MlflowRegistry(mlflow_server.tracking_uri).ensure_webhook(
            f"sluice-{model}", hook, env["SLUICE_WEBHOOK_SECRET"]
        )
        version = register_version(mlflow_server.tracking_uri, model, alias=None)
        time.sleep(1.5)  # MLflow refreshes its webhook list every second (MLFLOW_WEBHOOK_CACHE_TTL)
        client.set_registered_model_alias(model, "challenger", str(version))
        branch = f"sluice/staging/{model}/v{version}"
        wait_for(lambda: branch in branches(git_remote), timeout=30)
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert 'sluice_webhook_deliveries_total{result="queued",source="mlflow"}' in metrics


# -- --env: one environment's releases only ------------------------------------------------------


def test_watcher_of_one_environment_proposes_only_there(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """With --env staging, a moved alias is proposed to staging, not to local or production."""
    seed_manifests(git_remote, tmp_path / "seed", model="m")
    workspace = GitWorkspace(git_remote.url, tmp_path / "cache")
    registry = MemoryRegistry()
    for _ in range(5):
        registry.register("m")  # the challenger alias moves to each new version: v5 at last
    registry.set_alias("m", "champion", 5)
    snapshot = ReleaseSnapshot(workspace, registry, environments=["staging"])
    proposed: list[ProposalRequest] = []
    watcher = build_watcher(snapshot, proposed.append, interval_seconds=60, metrics=ServeMetrics())
    watcher.run_once()
    assert proposed == [ProposalRequest(model="m", environment="staging", version=5)]


def test_serve_with_an_unknown_env_exits_2_naming_the_environments(
    git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice serve --env prod` in a repository without it exits 2 before listening."""
    seed_manifests(git_remote, tmp_path / "seed", model="m")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sluice")), "serve", "--port", "0", "--env", "prod"],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # never reached
            "SLUICE_GIT_REMOTE": git_remote.url,
            "SLUICE_STATE_DIR": str(tmp_path / "state"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "sluice: error: no environment 'prod' in Git (manifests/overlays/ENV/sluice.yaml); "
        "the environments are: local, production, staging\n"
    )


# -- stopping: the rollout leases are released at once ----------------------------------------


@pytest.mark.slow
def test_sluice_serve_releases_its_rollout_leases_on_sigterm(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """`sluice serve --rollouts kubernetes` walks a canary (its lease ref appears in the
    remote); SIGTERM ends it with exit 0 and the ref gone, so another controller takes the
    rollout over at once instead of 30 s later (the ref used to outlive the process)."""
    with kube_api() as api:
        release = cluster_release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        port = free_port()
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("sluice")), "serve", "--port", str(port),
             "--rollouts", "kubernetes", "--env", "staging"],
            env=release.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=tmp_path,
        )  # fmt: skip
        try:
            wait_for(release.lease_commit, timeout=90)
            assert "Sluice-Lease-Holder: " in release.lease_message()
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output
        assert release.lease_commit() is None, output
        assert "releasing the rollout leases" in output
