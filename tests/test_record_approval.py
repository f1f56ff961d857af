"""``sluice evidence record-approval``, the Promote workflow's way to record a production pull
request's approval where no ``sluice serve`` runs: over the in-memory Git remote, registry,
stores, forge and lease store with real signing, it records what serve records (the same
recorder), once, refuses what is not a proposal to the environment, waits for a recorder that
holds the lease; and through the command line on a real MLflow, Git remote and the local GitHub
API server, two runs at once record one approval."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from github import Auth, Github
from rich.console import Console
from securesystemslib.signer import CryptoSigner
from support.evidence_pipeline import (
    MODEL,
    NOW,
    PRODUCTION_PRIVATE,
    PRODUCTION_PUBLIC,
    STAGING_PRIVATE,
    STAGING_PUBLIC,
    Pipeline,
)
from support.github_api import GitHubApiServer
from support.gitops_repo import commit_to_remote, manifest_files
from support.gitrepo import GitRemote, create_git_remote, git
from support.registry import register_version

from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.commands.approval import ApprovalSources, run_record_approval
from controller.commands.evidence import EvidenceSources
from controller.errors import ConfigError, GateFailed, InputError
from controller.evidence.record import record_evidence
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.evidence.statement import canary_body, soak_body
from controller.lease import LeaseKeeper, approval_lease_name
from controller.local.services import MlflowService
from controller.proposals.approval_evidence import ApprovalRecorder
from controller.proposals.auto_propose import AutoProposer
from controller.proposals.evidence_gate import read_environments
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.testing import MemoryLeaseStore

APPROVAL = "promotion: {from: [staging], require: {soak: 24h}, approval: {required: true}}"


def _signer(private: bytes) -> CryptoSigner:
    signer = load_evidence_signer({EVIDENCE_KEY_ENV: private.decode()})
    assert signer is not None
    return signer


def _proposed(promotion: str = APPROVAL) -> Pipeline:
    """v1 earned staging's evidence and is proposed to production: pull request #1."""
    setup = Pipeline(promotion=promotion)
    setup.earn_all()

    def propose_version(request: ProposalRequest) -> ProposalResult:
        return propose(
            request, registry=setup.registry, workspace=setup.workspace, forge=setup.forge,
            attestations=setup.attestations, evidence=setup.evidence,
        )  # fmt: skip

    AutoProposer(
        setup.workspace, setup.registry, setup.evidence, setup.attestations, propose_version
    ).run_once()
    assert list(setup.forge.pulls) == [1]
    return setup


def _sources(
    setup: Pipeline,
    leases: MemoryLeaseStore | None = None,
    *,
    key: bytes | None = PRODUCTION_PRIVATE,
) -> ApprovalSources:
    """The command's ports over the pipeline, signing with ``key`` (None: no key set)."""
    evidence = EvidenceSources(setup.workspace, setup.registry, setup.attestations, setup.evidence)
    keeper = LeaseKeeper(leases or MemoryLeaseStore(), "workflow", clock=lambda: NOW)
    return ApprovalSources(evidence, setup.forge, keeper, _signer(key) if key else None)


def _run(sources: ApprovalSources, number: int = 1, **kwargs: Any) -> tuple[str, str]:
    out = io.StringIO()
    outcome = run_record_approval(
        sources, environment="production", number=number, console=Console(file=out, width=200),
        clock=lambda: NOW, **kwargs,
    )  # fmt: skip
    return outcome.state, out.getvalue()


def _approvals(setup: Pipeline) -> list[dict[str, Any]]:
    """The approval predicates kept on v1, as the store has them."""
    found = []
    for line in setup.evidence.evidence(MODEL, 1):
        statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
        if statement["predicate"]["kind"] == "approval":
            found.append(statement["predicate"])
    return found


def test_the_command_records_the_approval_as_serve_does_and_a_second_run_nothing() -> None:
    """Approved by alice: one signed approval piece (named as this command's), the status
    success and the body's Evidence section listing it; run again, nothing new."""
    setup = _proposed()
    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    sources = _sources(setup)
    state, out = _run(sources)
    assert state == "recorded"
    assert out == "fraud-detector v1 → production: pull request #1 approved by alice, recorded\n"
    (predicate,) = _approvals(setup)
    assert predicate["controller"]["id"] == "sluice evidence record-approval (production)"
    assert predicate["approval"]["approvers"] == ["alice"]
    pull = setup.forge.pulls[1]
    (status, *_) = [
        s for s in setup.forge.statuses_of(pull.head_sha) if s.context == "sluice/evidence"
    ]
    assert (status.state, status.description) == (
        "success", "evidence from staging complete; approved by alice",
    )  # fmt: skip
    assert "✅ **approval in production**" in pull.body
    tags = dict(setup.evidence.evidence_tags(MODEL, 1))
    state, out = _run(sources)
    assert (state, out) == ("idle", "fraud-detector v1 → production: approval recorded already\n")
    assert setup.evidence.evidence_tags(MODEL, 1) == tags


def test_no_approval_that_counts_exits_1_and_records_nothing() -> None:
    setup = _proposed()
    setup.forge.review(1, "bob", "CHANGES_REQUESTED", at=NOW - 60)
    with pytest.raises(GateFailed) as caught:
        _run(_sources(setup))
    assert caught.value.message.startswith(
        "fraud-detector v1 → production: pull request #1 waits for an approval: nothing recorded"
    )
    assert _approvals(setup) == []


def test_what_is_not_a_proposal_to_the_environment_or_has_no_key_is_refused() -> None:
    setup = _proposed()
    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    setup.forge.pulls[1].branch = "sluice/staging/fraud-detector/v1"
    with pytest.raises(InputError, match=r"pull request #1 is not a proposal to production: its"):
        _run(_sources(setup))
    setup.forge.pulls[1].branch = "sluice/production/fraud-detector/v1"
    with pytest.raises(ConfigError, match="set SLUICE_EVIDENCE_KEY"):
        _run(_sources(setup, key=None))
    with pytest.raises(ConfigError, match=r"is not one of production's evidence\.controllerKeys"):
        _run(_sources(setup, key=STAGING_PRIVATE))
    assert _approvals(setup) == []


def test_an_environment_that_requires_no_approval_records_none() -> None:
    setup = _proposed("promotion: {from: [staging], require: {soak: 24h}}")
    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    state, out = _run(_sources(setup))
    assert state == "idle"
    assert out.startswith("production requires no approval (its promotion.approval.required")
    assert _approvals(setup) == []


def test_a_lease_held_by_serve_is_waited_for_then_the_approval_found_recorded() -> None:
    """sluice serve holds the recorders' lease (it is recording): the command says so and
    waits; once serve recorded and let go, it finds the approval recorded and records nothing."""
    setup = _proposed()
    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    leases = MemoryLeaseStore()
    name = approval_lease_name("production", MODEL)
    serve = LeaseKeeper(leases, "serve", clock=lambda: NOW)
    serve.hold(name)
    recorder = ApprovalRecorder(
        workspace=setup.workspace, registry=setup.registry, evidence=setup.evidence,
        attestations=setup.attestations, forge=setup.forge, signer=_signer(PRODUCTION_PRIVATE),
        clock=lambda: NOW, lease=serve,
    )  # fmt: skip
    (config,) = read_environments(setup.workspace, ["production"])
    serve_said: list[str] = []

    def sleep(_seconds: float) -> None:  # meanwhile, serve records and lets go
        if not serve_said:
            serve_said.append(recorder.record(config, MODEL, 1).line)

    state, out = _run(_sources(setup, leases), sleep=sleep)
    assert serve_said == [
        "fraud-detector v1 → production: pull request #1 approved by alice, recorded"
    ]
    assert out.splitlines() == [
        "fraud-detector v1 → production: pull request #1 approved; serve is recording it",
        "waiting for serve to record it or let its lease go",
        "fraud-detector v1 → production: approval recorded already",
    ]
    assert state == "idle"
    assert len(_approvals(setup)) == 1
    assert leases.read(name) is None


# -- through the command line: two runs at once -----------------------------------------------

REPO = "acme/gitops"
TOKEN = "ghp_sluiceRecordApproval0123456789abcdefAB"
SLUICE = str(Path(sys.executable).with_name("sluice"))


def _seed(remote: GitRemote, root: Path, name: str, version: int) -> None:
    """main: staging serving ``version`` and trusting staging's key, production requiring an
    approval and trusting production's; the proposal branch to production on top."""
    files = manifest_files(name)
    staging_pin = "manifests/overlays/staging/fraud-detector.yaml"  # the pin serving `name`
    files[staging_pin] = files[staging_pin].replace(
        f"sluice.dev/model-name: {name}\n",
        f'sluice.dev/model-name: {name}\n    sluice.dev/model-version: "{version}"\n',
    )
    config = "manifests/overlays/{env}/sluice.yaml"
    files[config.format(env="staging")] += "evidence: {controllerKeys: [keys/staging.pub]}\n"
    files[config.format(env="production")] += (
        f"{APPROVAL}\nevidence: {{controllerKeys: [keys/production.pub]}}\n"
    )
    files["keys/staging.pub"] = STAGING_PUBLIC.decode()
    files["keys/production.pub"] = PRODUCTION_PUBLIC.decode()

    def write(tree: Path) -> None:
        for path, text in files.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)

    work = root / "work"
    commit_to_remote(remote, work, "Seed the environments", write)
    git("checkout", "--quiet", "-b", f"sluice/production/{name}/v{version}", cwd=work)
    (work / "proposal.txt").write_text(f"v{version}\n")
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", f"{name} v{version} → production", cwd=work)
    git("push", "--quiet", "origin", "HEAD", cwd=work)


@pytest.mark.slow
def test_two_runs_at_once_record_one_approval(mlflow_server: MlflowService, tmp_path: Path) -> None:
    """Two `sluice evidence record-approval` processes started together (two workflow runs,
    or one beside `sluice serve`), each with its own clone, on a real MLflow, Git remote and
    the local GitHub API server: one records the approval, the other finds it recorded (at
    once, or after waiting for the first one's lease); `sluice/evidence` is set once, and the
    body lists the approval."""
    uri = mlflow_server.tracking_uri
    name = f"approval-{uuid.uuid4().hex[:8]}"
    version = register_version(uri, name)
    store, attestations = MlflowEvidence(uri), MlflowAttestations(uri)
    staging = _signer(STAGING_PRIVATE)
    for kind, body in (
        ("canary", canary_body(steps=(10, 100), promoted_from=10, results=(), record=None)),
        ("soak", soak_body(start=NOW - 25 * 3600, end=NOW, queries=[], alerts=[])),
    ):
        record_evidence(
            store, attestations, staging, kind=kind, body=body,  # type: ignore[arg-type]
            environment="staging", model=name, version=version,
            controller="sluice serve (staging)", now=NOW,
        )  # fmt: skip
    remote = create_git_remote(tmp_path)
    _seed(remote, tmp_path, name, version)
    with GitHubApiServer(token=TOKEN, repositories={REPO: remote.path}) as server:
        with Github(base_url=server.api_url, auth=Auth.Token(TOKEN), retry=None) as bot:
            pull = bot.get_repo(REPO).create_pull(
                base="main", head=f"sluice/production/{name}/v{version}",
                title=f"{name} v{version} → production",
                body=f"## {name} v{version} → production\n\n### Evidence\n\nwaiting\n\n"
                "### Holdout metrics\n\nrows\n",
            )  # fmt: skip
        alice = server.add_user("alice")
        with Github(base_url=server.api_url, auth=Auth.Token(alice), retry=None) as reviewer:
            reviewer.get_repo(REPO).get_pull(pull.number).create_review(event="APPROVE")
        env = {
            **os.environ, "MLFLOW_TRACKING_URI": uri, "SLUICE_GITHUB_TOKEN": TOKEN,
            "SLUICE_GITHUB_API_URL": server.api_url, "SLUICE_GITHUB_REPOSITORY": REPO,
            "SLUICE_EVIDENCE_KEY": PRODUCTION_PRIVATE.decode(), "SLUICE_GIT_REMOTE": remote.url,
        }  # fmt: skip
        command = [SLUICE, "evidence", "record-approval", "--env", "production"]
        runs = [
            subprocess.Popen(
                [*command, "--pr", str(pull.number)],
                env={**env, "SLUICE_STATE_DIR": str(tmp_path / f"state-{run}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for run in ("a", "b")
        ]
        said = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], said
        outs = [out for out, _ in said]
        recorded = f"{name} v{version} → production: pull request #{pull.number} approved by alice"
        assert sum(out.count(f"{recorded}, recorded\n") for out in outs) == 1, outs
        assert sum(out.endswith("approval recorded already\n") for out in outs) == 1, outs
        with Github(base_url=server.api_url, auth=Auth.Token(TOKEN), retry=None) as bot:
            repo = bot.get_repo(REPO)
            head = repo.get_pull(pull.number)
            statuses = [
                (s.state, s.description)
                for s in repo.get_commit(head.head.sha).get_statuses()
                if s.context == "sluice/evidence"
            ]
            body = head.body or ""
    assert statuses == [("success", "evidence from staging complete; approved by alice")]
    assert "✅ **approval in production**" in body
    assert body.endswith("### Holdout metrics\n\nrows\n")
    tags = store.evidence_tags(name, version)
    assert "sluice.evidence.production.approval" in tags
