"""One staging release on a pretend cluster, for running ``sluice`` against as a user does.

A GitOps remote seeded with the repository's manifests pins v2 of a fresh model at a canary
weight beside v1; :mod:`support.kube_api` serves the InferenceService (the recorded
``isvc-canary-10``: v2's revision ready at 10 %) and Argo CD's Application, synced at the
remote's tip. The staging policy analyses only every hour, so a controller sits in the
step's watch (holding the release's lease) without ever running a load test.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from controller.manifests.manifest import ReleasePin, apply_release, dump_pin, load_pin
from controller.shadow.phase import PHASE_ANNOTATION, SMOKE_PHASE
from support.gitops_repo import commit_now, seed_manifests
from support.gitrepo import GitRemote, git
from support.kube_api import ARGOCD_TOKEN, KubeApi, write_kubeconfig

__all__ = ["ClusterRelease", "cluster_release"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cluster"
PIN = "manifests/overlays/staging/fraud-detector.yaml"
POLICY = "manifests/overlays/staging/sluice.yaml"


@dataclass
class ClusterRelease:
    remote: GitRemote
    api: KubeApi
    model: str
    #: The environment a user's shell would have to run ``sluice`` against all this.
    env: dict[str, str]

    @property
    def lease_ref(self) -> str:
        return f"refs/sluice/leases/staging/{self.model}"

    def lease_commit(self) -> str | None:
        """The lease ref's commit in the remote, if there is one."""
        out = git("for-each-ref", "--format=%(objectname)", self.lease_ref, cwd=self.remote.path)
        return out or None

    def lease_message(self) -> str:
        return git("log", "-1", "--format=%B", self.lease_ref, cwd=self.remote.path)


def _fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


def cluster_release(
    tracking_uri: str,
    remote: GitRemote,
    api: KubeApi,
    root: Path,
    *,
    canary: int = 10,
    smoke: bool = False,
    extra_env: dict[str, str] | None = None,
    message: str | None = None,
) -> ClusterRelease:
    """v2 of a new model pinned in staging at ``canary`` % beside v1 (``smoke``: in its smoke
    phase at 0 %), the cluster serving it and Argo CD synced to it. ``message`` is the pin
    commit's message (a rollout step's, with its gates, say)."""
    model = f"lease-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri)
    client.create_registered_model(model)
    run = client.create_run(client.create_experiment(model)).info
    for index in (1, 2):
        client.create_model_version(model, f"{run.artifact_uri}/m{index}", run.run_id)
    seed_manifests(remote, root / "seed", model=model)

    def pin_canary(tree: Path) -> None:
        file = tree / PIN
        document = load_pin(file.read_text(), source=PIN)
        pin = ReleasePin(
            model=model, version=2, storage_uri="s3://sluice-models/fraud/v2", run_id=None,
            previous_version=1, canary_percent=0 if smoke else canary,
        )  # fmt: skip
        apply_release(document, pin, source=PIN)
        if smoke:
            document["metadata"]["annotations"][PHASE_ANNOTATION] = SMOKE_PHASE
        file.write_text(dump_pin(document))
        policy = tree / POLICY
        policy.write_text(policy.read_text() + "  interval: 3600\n")

    subject = message or f"{model} v2 at {canary}%"
    head = commit_now(remote, root / "pin", subject, pin_canary)
    api.isvcs[("models-staging", "fraud-detector")] = _fixture("isvc-canary-10")
    application = _fixture("application-synced-healthy")
    application["status"]["sync"]["revision"] = head
    api.applications["sluice-staging"] = application
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        SLUICE_GIT_REMOTE=remote.url,
        SLUICE_STATE_DIR=str(root / "state"),
        KUBECONFIG=str(write_kubeconfig(root / "kubeconfig", api.url)),
        SLUICE_ARGOCD_URL=api.url,
        ARGOCD_AUTH_TOKEN=ARGOCD_TOKEN,
        **(extra_env or {}),
    )
    return ClusterRelease(remote, api, model, env)
