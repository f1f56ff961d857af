"""``sluice serve``'s proposals by evidence, over the in-memory Git remote, registry, stores and
forge with real signing: a version staging promoted is proposed to production once its evidence
is complete, once (a restarted controller too), never when quarantined, and a waiting version
says what it waits for in one log line, again only when that changes."""

from __future__ import annotations

import logging

import pytest
from support.evidence_pipeline import MODEL, Pipeline

from controller.proposals.auto_propose import AutoProposer
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.testing import RecordingNotifier


def _proposer(
    setup: Pipeline, made: list[ProposalRequest], notifier: RecordingNotifier | None = None
) -> AutoProposer:
    def propose_version(request: ProposalRequest) -> ProposalResult:
        made.append(request)
        return propose(
            request, registry=setup.registry, workspace=setup.workspace, forge=setup.forge,
            attestations=setup.attestations, evidence=setup.evidence,
        )  # fmt: skip

    return AutoProposer(
        setup.workspace, setup.registry, setup.evidence, setup.attestations, propose_version,
        notifier=notifier,
    )  # fmt: skip


def _waiting(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sluice.promotion"]


def test_a_version_is_proposed_once_its_evidence_is_complete_and_only_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sluice.promotion")
    setup = Pipeline()
    made: list[ProposalRequest] = []
    notifier = RecordingNotifier()
    proposer = _proposer(setup, made, notifier)
    (waiting,) = proposer.run_once()
    assert (waiting.state, waiting.line) == (
        "waiting",
        "fraud-detector v1 → production: waiting for canary in staging: none; "
        "soak in staging: none",
    )
    proposer.run_once()
    setup.earn("canary")
    proposer.run_once()
    assert _waiting(caplog) == [
        waiting.line,
        "fraud-detector v1 → production: waiting for soak in staging: none",
    ]
    assert made == []

    setup.earn("soak")
    (proposed,) = proposer.run_once()
    assert proposed.state == "proposed"
    assert made == [ProposalRequest(model=MODEL, environment="production", version=1)]
    (pull,) = setup.forge.pulls.values()
    assert "### Evidence" in pull.body
    # The notification carries the evidence summary, once: nothing was said while it waited.
    (told,) = notifier.events
    assert told.title == "fraud-detector v1 proposed to production by evidence"
    assert "canary in staging" in told.text, told.text
    assert "soak in staging" in told.text, told.text
    assert told.text.endswith(f"Pull request: {pull_url(setup)}")
    tags = setup.registry.resolve(MODEL, version=1).tags
    assert tags["sluice.promotion.proposed.production"] == pull_url(setup)

    restarted = _proposer(setup, made)
    (again,) = restarted.run_once()
    assert again.state == "idle"
    assert len(made) == 1


def pull_url(setup: Pipeline) -> str:
    return f"{setup.forge.web_url}/{setup.forge.repository}/pull/1"


def test_a_version_quarantined_or_superseded_in_staging_is_never_proposed() -> None:
    setup = Pipeline(versions=2)
    setup.earn_all()
    setup.registry.set_version_tags(MODEL, 1, {
        "sluice.quarantined": "error rate 4.1% (max 1%)",
        "sluice.quarantined.environment": "staging",
    })  # fmt: skip
    made: list[ProposalRequest] = []
    (outcome,) = _proposer(setup, made).run_once()
    assert outcome.line == (
        "fraud-detector v1 → production: waiting for staging quarantined v1: error rate 4.1% "
        "(max 1%)"
    )
    setup.set_pin("staging", 2, canary=10, previous=1)  # v2 canarying: nothing promoted
    (outcome,) = _proposer(setup, made).run_once()
    assert outcome.line == "fraud-detector → production: nothing promoted upstream yet"
    assert made == []
