"""`sluice rollback` and `sluice status` beside a controller that holds a release's lease, run
as a user runs them, against a GitOps remote and a pretend cluster (:mod:`support.kube_api`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.cluster_release import PIN, ClusterRelease, cluster_release
from support.gitrepo import GitRemote, git
from support.kube_api import KUBE_TOKEN, kube_api

from controller.backends.git_lease import GitLeaseStore
from controller.backends.git_repo import GitWorkspace
from controller.backends.kubernetes_lease import KubernetesLeaseStore
from controller.lease import LeaseKeeper, lease_name
from controller.local.services import MlflowService
from controller.manifests.manifest import load_pin, read_release

SLUICE = str(Path(sys.executable).with_name("sluice"))


def sluice(release: ClusterRelease, *args: str, cwd: Path, **env: str) -> Any:
    return subprocess.run(
        [SLUICE, *args],
        env={**release.env, "COLUMNS": "300", **env},
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
        check=False,
    )


class Controller:
    """A controller's passes, every 0.2 s, on its own clone: each renews (at most every
    second) or follows, and what it saw is kept with the remote's tip at that moment."""

    def __init__(self, keeper: LeaseKeeper, name: str, remote: GitRemote) -> None:
        self.keeper, self.name, self.remote = keeper, name, remote
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            holder = self.keeper.hold(self.name).holder
            self.seen.append((holder, self.remote.head()))
            self._stop.wait(0.2)

    def __enter__(self) -> Controller:
        assert self.keeper.hold(self.name).holder == self.keeper.holder
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.keeper.release_all()


@pytest.mark.slow
def test_a_rollback_waits_for_the_controllers_lease_and_commits_once_it_was_handed_over(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """A controller walks v2's canary and holds the lease (renewing every second). `sluice
    rollback` says whose lease it waits for, asks for it, and commits only once the controller
    handed it over (the controller saw the rollback as holder while the pin was unchanged),
    then releases it, and the controller takes it back to see the rollback through."""
    with kube_api() as api:
        release = cluster_release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        name = lease_name("staging", release.model)
        store = GitLeaseStore(GitWorkspace(git_remote.url, tmp_path / "ctl-a"))
        keeper = LeaseKeeper(store, "ctl-a", duration_seconds=30, renew_every=1)
        before = git_remote.head()
        with Controller(keeper, name, git_remote) as controller:
            result = sluice(
                release, "rollback", release.model, "--env", "staging", "--target", "kubernetes",
                "--reason", "pager: error spike", "--no-wait", cwd=tmp_path,
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            deadline = time.monotonic() + 30
            while controller.seen[-1][0] != "ctl-a" and time.monotonic() < deadline:
                time.sleep(0.2)
        lines = result.stdout.splitlines()
        waiting = next(line for line in lines if line.startswith("waiting for "))
        assert waiting.startswith(f"waiting for ctl-a's lease on {name} (expires in ")
        left = int(waiting.split("(expires in ", 1)[1].split(" s", 1)[0])
        assert 0 <= left <= 30
        assert any(line.startswith(f"rollback of {release.model} v2 committed: ") for line in lines)
        handed = [head for holder, head in controller.seen if holder.startswith("sluice-rollback:")]
        assert handed, controller.seen
        assert handed[0] == before  # handed over before the rollback committed anything
        assert controller.seen[-1][0] == "ctl-a"  # released after: the controller holds it again
        pin = read_release(load_pin(git("show", f"main:{PIN}", cwd=git_remote.path), source=PIN))
        assert (pin.version, pin.canary_percent) == (2, 0)


def status(release: ClusterRelease, cwd: Path, **env: str) -> tuple[dict[str, Any], str]:
    """`sluice status --json` and the table, for the release."""
    args = ("status", "--env", "staging", "--target", "kubernetes")
    shown = sluice(release, *args, "--json", cwd=cwd, **env)
    assert shown.returncode == 0, shown.stderr
    (row,) = [r for r in json.loads(shown.stdout)["releases"] if r["model"] == release.model]
    table = sluice(release, *args, cwd=cwd, **env)
    assert table.returncode == 0, table.stderr
    return row, table.stdout


@pytest.mark.slow
def test_status_shows_who_holds_the_release_and_until_when(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """With a controller holding the Git lease: its id and expiry, in JSON and the table; once
    released: "no controller holds it" and `lease: null`."""
    with kube_api() as api:
        release = cluster_release(mlflow_server.tracking_uri, git_remote, api, tmp_path)
        name = lease_name("staging", release.model)
        keeper = LeaseKeeper(
            GitLeaseStore(GitWorkspace(git_remote.url, tmp_path / "ctl-a")), "ctl-a:4242:9f3a"
        )
        held = keeper.hold(name)
        row, table = status(release, tmp_path)
        assert row["lease"]["holder"] == "ctl-a:4242:9f3a"
        assert 0 < row["lease"]["expiresInSeconds"] <= 30
        assert row["lease"]["expiresAt"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(held.expires_at)
        )
        until = time.strftime("%H:%M:%S", time.localtime(held.expires_at))
        assert f"ctl-a:4242:9f3a until {until}" in table
        assert (row["phase"], row["canaryPercent"], row["smoke"]) == ("analysing", 10, False)
        keeper.release_all()
        row, table = status(release, tmp_path)
        assert row["lease"] is None
        assert "no controller holds it" in table


@pytest.mark.slow
def test_status_shows_the_smoke_phase_and_a_kubernetes_lease_holder(
    mlflow_server: MlflowService, git_remote: GitRemote, tmp_path: Path
) -> None:
    """v2 pinned in its smoke phase (weight 0, ready on its tag route): phase smoke_testing,
    `smoke: true`, "smoke test at 0%" in the table; with SLUICE_ROLLOUT_LEASE_STORE=kubernetes
    the holder is read from the Lease object in the cluster."""
    with kube_api(("sluice-system",)) as api:
        release = cluster_release(
            mlflow_server.tracking_uri, git_remote, api, tmp_path, smoke=True,
            extra_env={"SLUICE_ROLLOUT_LEASE_STORE": "kubernetes",
                       "SLUICE_ROLLOUT_LEASE_NAMESPACE": "sluice-system"},
        )  # fmt: skip
        from kubernetes import client

        configuration = client.Configuration(host=api.url)
        configuration.api_key = {"BearerToken": KUBE_TOKEN}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        store = KubernetesLeaseStore("sluice-system", api_client=client.ApiClient(configuration))
        keeper = LeaseKeeper(store, "sluice-controller-7d9f:1:ab12")
        keeper.hold(lease_name("staging", release.model))
        row, table = status(release, tmp_path)
        assert (row["phase"], row["smoke"], row["canaryPercent"]) == ("smoke_testing", True, 0)
        assert "v2 smoke test at 0%" in table
        assert "smoke_testing" in table
        assert row["lease"]["holder"] == "sluice-controller-7d9f:1:ab12"
        assert "sluice-controller-7d9f:1:ab12 until " in table
        keeper.release_all()
