"""``sluice serve``'s proposal by evidence against a real MLflow server and a real Git remote:
the evidence envelopes and tags in the version's run, the pins read through git, the proposal
pushed as a branch and the once-per-version tag on the registry version."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.evidence_pipeline import (
    NOW,
    PRODUCTION_PUBLIC,
    PROMOTION,
    STAGING_PRIVATE,
    STAGING_PUBLIC,
    pin_text,
)
from support.gitops_repo import commit_to_remote
from support.gitrepo import GitRemote, git
from support.registry import register_version

from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry
from controller.evidence.record import record_evidence
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.evidence.statement import canary_body, soak_body
from controller.local.services import MlflowService
from controller.null_ports import NoForge
from controller.proposals.auto_propose import AutoProposer
from controller.proposals.propose import ProposalRequest, ProposalResult, propose


def _configure(remote: GitRemote, workdir: Path, model: str, version: int) -> None:
    def change(tree: Path) -> None:
        overlays = tree / "manifests/overlays"
        staging, production = overlays / "staging", overlays / "production"
        with (staging / "sluice.yaml").open("a") as config:
            config.write("evidence: {controllerKeys: [keys/staging.pub]}\n")
        with (production / "sluice.yaml").open("a") as config:
            config.write(f"{PROMOTION}\nevidence: {{controllerKeys: [keys/production.pub]}}\n")
        (tree / "keys").mkdir()
        (tree / "keys/staging.pub").write_bytes(STAGING_PUBLIC)
        (tree / "keys/production.pub").write_bytes(PRODUCTION_PUBLIC)
        pin = staging / "fraud-detector.yaml"
        pin.write_text(pin_text(pin.read_text(), version).replace("fraud-detector", model, 1))

    commit_to_remote(remote, workdir, "staging serves the version; production by evidence", change)


@pytest.mark.slow
def test_serve_proposes_to_production_once_staging_evidence_is_complete(
    mlflow_server: MlflowService, remote: GitRemote, model: str, tmp_path: Path
) -> None:
    uri = mlflow_server.tracking_uri
    version = register_version(uri, model)
    _configure(remote, tmp_path / "config", model, version)
    registry, evidence = MlflowRegistry(uri), MlflowEvidence(uri)
    attestations = MlflowAttestations(uri)
    workspace = GitWorkspace(remote.url, tmp_path / "state/git")
    workspace.sync()

    def propose_version(request: ProposalRequest) -> ProposalResult:
        return propose(
            request, registry=registry, workspace=workspace, forge=NoForge(),
            attestations=attestations, evidence=evidence,
        )  # fmt: skip

    proposer = AutoProposer(workspace, registry, evidence, attestations, propose_version)
    (waiting,) = proposer.run_once()
    assert waiting.line == (
        f"{model} v{version} → production: waiting for canary in staging: none; "
        "soak in staging: none"
    )
    staging = load_evidence_signer({EVIDENCE_KEY_ENV: STAGING_PRIVATE.decode()})
    assert staging is not None
    for kind, body in (
        ("canary", canary_body(steps=(10, 50, 100), promoted_from=50, results=(), record=None)),
        ("soak", soak_body(start=NOW - 25 * 3600, end=NOW, queries=[], alerts=[])),
    ):
        record_evidence(
            evidence, attestations, staging, kind=kind, body=body,  # type: ignore[arg-type]
            environment="staging", model=model, version=version,
            controller="sluice serve (staging)", now=NOW,
        )  # fmt: skip

    (proposed,) = proposer.run_once()
    branch = f"sluice/production/{model}/v{version}"
    assert proposed.state == "proposed", proposed.line
    assert f'sluice.dev/model-version: "{version}"' in git(
        "show", f"{branch}:manifests/overlays/production/fraud-detector.yaml", cwd=remote.path
    )
    tag = registry.resolve(model, version=version).tags["sluice.promotion.proposed.production"]
    assert tag.startswith(f"{branch}@")
    (again,) = AutoProposer(workspace, registry, evidence, attestations, propose_version).run_once()
    assert again.state == "idle"
    assert again.line.startswith(f"{model} v{version} → production: proposed already")
