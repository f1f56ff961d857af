"""The ``approval`` evidence, over the in-memory Git remote, registry, stores and forge with
real signing: production requires an approval, ``sluice serve``'s promotion thread proposes
the version staging earned, and once a reviewer approves the pull request records the signed
approval once and turns ``sluice/evidence`` to success; which reviews count is GitHub's rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from securesystemslib.signer import CryptoSigner
from support.evidence_pipeline import MODEL, NOW, PRODUCTION_PRIVATE, STRANGER_PRIVATE, Pipeline

from controller.domain import PullRequestApprovals, Review, current_approvals
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.lease import LeaseKeeper, approval_lease_name
from controller.proposals.approval_evidence import ApprovalOutcome, ApprovalRecorder
from controller.proposals.auto_propose import AutoProposer
from controller.proposals.evidence_gate import check_promotion, read_environments
from controller.proposals.model_card_evidence import with_evidence_section
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.proposals.propose_evidence import EVIDENCE_CONTEXT
from controller.testing import MemoryForge, MemoryLeaseStore
from controller.testing.evidence import MemoryEvidence

APPROVAL = "promotion: {from: [staging], require: {soak: 24h}, approval: {required: true}}"
HEAD, OLD = "a" * 40, "b" * 40


def test_the_approvals_that_stand_are_each_reviewers_latest_on_the_head() -> None:
    reviews = [
        Review("alice", "APPROVED", HEAD, 1.0),
        Review("alice", "COMMENTED", HEAD, 2.0),  # a comment leaves the approval standing
        Review("bob", "APPROVED", HEAD, 3.0),
        Review("bob", "CHANGES_REQUESTED", HEAD, 4.0),
        Review("carol", "APPROVED", OLD, 5.0),  # given on an earlier head
        Review("dave", "APPROVED", HEAD, 6.0),
        Review("dave", "DISMISSED", HEAD, 6.0),
        Review("sluice-bot", "APPROVED", HEAD, 7.0),  # the author's own
    ]
    found = current_approvals(reviews, head_sha=HEAD, author="sluice-bot")
    assert [(a.login, a.at, a.commit) for a in found] == [("alice", 1.0, HEAD)]


def _signer(private: bytes) -> CryptoSigner:
    signer = load_evidence_signer({EVIDENCE_KEY_ENV: private.decode()})
    assert signer is not None
    return signer


def _promoter(setup: Pipeline, private: bytes = PRODUCTION_PRIVATE) -> AutoProposer:
    def propose_version(request: ProposalRequest) -> ProposalResult:
        return propose(
            request, registry=setup.registry, workspace=setup.workspace, forge=setup.forge,
            attestations=setup.attestations, evidence=setup.evidence,
        )  # fmt: skip

    recorder = ApprovalRecorder(
        workspace=setup.workspace, registry=setup.registry, evidence=setup.evidence,
        attestations=setup.attestations, forge=setup.forge, signer=_signer(private),
        clock=lambda: NOW,
    )  # fmt: skip
    return AutoProposer(
        setup.workspace, setup.registry, setup.evidence, setup.attestations, propose_version,
        approvals=recorder,
    )  # fmt: skip


def _evidence_status(setup: Pipeline) -> tuple[str, str]:
    (pull,) = setup.forge.pulls.values()
    newest = next(
        s for s in setup.forge.statuses_of(pull.head_sha) if s.context == EVIDENCE_CONTEXT
    )
    return newest.state, newest.description


def test_an_approval_on_the_pull_request_is_recorded_once_and_completes_the_evidence() -> None:
    setup = Pipeline(promotion=APPROVAL)
    setup.earn_all()
    promoter = _promoter(setup)
    proposed, approval = promoter.run_once()
    assert (proposed.state, approval.state) == ("proposed", "waiting")
    assert approval.line == "fraud-detector v1 → production: pull request #1 waits for an approval"
    assert _evidence_status(setup) == (
        "pending",
        "evidence from staging complete; waiting for approval",
    )
    setup.forge.review(1, "bob", "CHANGES_REQUESTED", at=NOW - 120)
    assert promoter.run_once()[1].state == "waiting"

    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    recorded = promoter.run_once()[1]
    assert recorded.line == (
        "fraud-detector v1 → production: pull request #1 approved by alice, recorded"
    )
    assert _evidence_status(setup) == (
        "success",
        "evidence from staging complete; approved by alice",
    )
    check = check_promotion(
        workspace=setup.workspace, registry=setup.registry, evidence=setup.evidence,
        attestations=setup.attestations, model=MODEL, version=1, environment="production",
    )  # fmt: skip
    assert check is not None
    assert check.verdict.complete
    assert "approval in production: by alice" in check.verdict.met
    (piece,) = [c for c in check.checks if c.kind == "approval"]
    assert piece.verified
    assert piece.predicate["approval"]["pullRequest"] == {"number": 1, "url": _url(setup)}
    assert piece.predicate["controller"]["id"] == "sluice serve (production)"

    lines = len(setup.evidence.evidence(MODEL, 1))
    again = _promoter(setup).run_once()[1]  # a restarted controller too
    assert again.line == "fraud-detector v1 → production: approval recorded already"
    assert len(setup.evidence.evidence(MODEL, 1)) == lines


def _url(setup: Pipeline) -> str:
    return f"{setup.forge.web_url}/{setup.forge.repository}/pull/1"


def test_a_recorded_approval_is_listed_in_the_pull_request_s_evidence_section() -> None:
    """Once the approval is recorded, the body's Evidence section lists it (and says the
    evidence is complete) and every other line of the body, a reviewer's edit included, is
    as it was. Before, only the `sluice/evidence` status changed."""
    setup = Pipeline(promotion=APPROVAL)
    setup.earn_all()
    promoter = _promoter(setup)
    promoter.run_once()
    (pull,) = setup.forge.pulls.values()
    pull.body += "\n\nReviewer's note: deploy after 18:00.\n"
    before = pull.body
    assert "approval in production" not in before
    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    promoter.run_once()
    after = pull.body
    heading = after.index("### Evidence")
    section = after[heading : after.index("### Holdout metrics")]
    assert "Complete for **production**'s promotion policy." in section
    assert "✅ **approval in production**" in section
    assert "approved by alice on #1 at " in section
    assert "✅ **soak in staging**" in section
    old_heading = before.index("### Evidence")
    old_end = before.index("### Holdout metrics")
    assert after[:heading] == before[:old_heading]
    assert after[heading + len(section) :] == before[old_end:]
    assert after.endswith("Reviewer's note: deploy after 18:00.\n")


def test_the_evidence_section_is_put_in_place_or_where_the_card_has_it() -> None:
    """The section replaces the old one up to the next heading; a body without one gets it
    before its first heading, or at its end."""
    card = "## m v1 → production\n\nlinks\n\n### Evidence\n\nold\n\n### Holdout\n\nrows\n"
    assert with_evidence_section(card, "new\n- a") == (
        "## m v1 → production\n\nlinks\n\n### Evidence\n\nnew\n- a\n\n### Holdout\n\nrows\n"
    )
    bare = "## m v1\n\nlinks\n\n### Holdout\n\nrows\n"
    assert with_evidence_section(bare, "new") == (
        "## m v1\n\nlinks\n\n### Evidence\n\nnew\n\n### Holdout\n\nrows\n"
    )
    assert with_evidence_section("free text\n", "new") == "free text\n\n### Evidence\n\nnew\n"
    last = "x\n\n### Evidence\n\nold\n\n<!-- sluice:model-card model=m -->\n"
    assert with_evidence_section(last, "new") == (
        "x\n\n### Evidence\n\nnew\n\n<!-- sluice:model-card model=m -->\n"
    )


def test_a_key_production_does_not_trust_records_no_approval_and_says_why() -> None:
    setup = Pipeline(promotion=APPROVAL)
    setup.earn_all()
    promoter = _promoter(setup, STRANGER_PRIVATE)
    promoter.run_once()
    setup.forge.review(1, "alice", "APPROVED", at=NOW)
    approval = promoter.run_once()[1]
    assert approval.state == "idle"
    assert "is not one of production's evidence.controllerKeys" in approval.line
    assert not [c for c in setup.evidence.evidence_tags(MODEL, 1) if c.endswith(".approval")]


# -- two recorders: exactly once -----------------------------------------------------------


class _CountingEvidence:
    """The pipeline's evidence store, counting each piece signed and kept; ``meanwhile`` runs
    once, just before the first piece is kept (another recorder's look, interleaved)."""

    def __init__(self, store: MemoryEvidence) -> None:
        self._store = store
        self.recorded: list[str] = []
        self.meanwhile: Callable[[], object] | None = None

    def record(self, name: str, version: int, line: bytes, *, kind: str, environment: str) -> str:
        hook, self.meanwhile = self.meanwhile, None
        if hook is not None:
            hook()
        self.recorded.append(f"{kind} in {environment}")
        return self._store.record(name, version, line, kind=kind, environment=environment)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _SlowForge:
    """The pipeline's forge, where ``meanwhile`` runs once while the reviews are being read
    (between a recorder's first look at the tag and its claim)."""

    def __init__(self, forge: MemoryForge, meanwhile: Callable[[], object]) -> None:
        self._forge = forge
        self._meanwhile: Callable[[], object] | None = meanwhile

    def approvals(self, number: int) -> PullRequestApprovals:
        hook, self._meanwhile = self._meanwhile, None
        if hook is not None:
            hook()
        return self._forge.approvals(number)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._forge, name)


def _approved(setup: Pipeline) -> _CountingEvidence:
    """v1 proposed to production and approved by alice; the store that counts pieces kept."""
    _promoter(setup).run_once()
    setup.forge.review(1, "alice", "APPROVED", at=NOW - 60)
    counting = _CountingEvidence(setup.evidence)
    setup.evidence = counting  # type: ignore[assignment]
    return counting


def _recorder(
    setup: Pipeline, store: MemoryLeaseStore, holder: str, forge: Any = None
) -> ApprovalRecorder:
    return ApprovalRecorder(
        workspace=setup.workspace, registry=setup.registry, evidence=setup.evidence,
        attestations=setup.attestations, forge=forge or setup.forge,
        signer=_signer(PRODUCTION_PRIVATE), clock=lambda: NOW,
        lease=LeaseKeeper(store, holder, clock=lambda: NOW),
    )  # fmt: skip


def test_a_recorder_that_read_the_tag_before_another_recorded_records_nothing_more() -> None:
    """B records the approval whole while A reads the reviews (after A found no tag): A then
    takes the lease, reads the tag again and records nothing. Before the lease and the second
    read, A signed and kept a second approval."""
    setup = Pipeline(promotion=APPROVAL)
    setup.earn_all()
    counting = _approved(setup)
    (config,) = read_environments(setup.workspace, ["production"])
    leases = MemoryLeaseStore()
    b = _recorder(setup, leases, "b")
    meanwhile: list[ApprovalOutcome] = []
    slow = _SlowForge(setup.forge, lambda: meanwhile.append(b.record(config, MODEL, 1)))
    a = _recorder(setup, leases, "a", slow)
    outcome = a.record(config, MODEL, 1)
    assert [o.line for o in meanwhile] == [
        "fraud-detector v1 → production: pull request #1 approved by alice, recorded"
    ]
    assert outcome.line == "fraud-detector v1 → production: approval recorded already"
    assert counting.recorded == ["approval in production"]
    name = approval_lease_name("production", MODEL)
    assert leases.swaps == [(name, "b"), (name, None), (name, "a"), (name, None)]


def test_a_recorder_that_finds_the_lease_held_records_nothing_and_says_who_holds_it() -> None:
    """B looks while A holds the lease and is about to keep the piece: B records nothing and
    says A records it; A records once; B's next look finds it recorded. Before, B recorded
    too (and both set the status and rewrote the body)."""
    setup = Pipeline(promotion=APPROVAL)
    setup.earn_all()
    counting = _approved(setup)
    (config,) = read_environments(setup.workspace, ["production"])
    leases = MemoryLeaseStore()
    a, b = _recorder(setup, leases, "a"), _recorder(setup, leases, "b")
    meanwhile: list[ApprovalOutcome] = []
    counting.meanwhile = lambda: meanwhile.append(b.record(config, MODEL, 1))
    assert a.record(config, MODEL, 1).state == "recorded"
    assert [(o.state, o.line) for o in meanwhile] == [
        ("held", "fraud-detector v1 → production: pull request #1 approved; a is recording it")
    ]
    assert counting.recorded == ["approval in production"]
    again = b.record(config, MODEL, 1)
    assert again.line == "fraud-detector v1 → production: approval recorded already"
    assert counting.recorded == ["approval in production"]
    assert leases.read(approval_lease_name("production", MODEL)) is None  # let go at once
