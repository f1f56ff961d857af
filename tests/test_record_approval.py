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
from typing import Any

import pytest
from rich.console import Console
from securesystemslib.signer import CryptoSigner
from support.evidence_pipeline import (
    MODEL,
    NOW,
    PRODUCTION_PRIVATE,
    STAGING_PRIVATE,
    Pipeline,
)

from controller.commands.approval import ApprovalSources, run_record_approval
from controller.commands.evidence import EvidenceSources
from controller.errors import ConfigError, GateFailed, InputError
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.lease import LeaseKeeper, approval_lease_name
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
