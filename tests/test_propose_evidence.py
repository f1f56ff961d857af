"""``propose`` to an environment with ``promotion:``, over the in-memory Git remote, registry,
stores and forge with real signing: refused without the evidence (nothing written), forced by
hand with a reason recorded as a signed override, and the pull request's Evidence section and
``sluice/evidence`` status."""

from __future__ import annotations

from typing import Any

import pytest
from support.evidence_pipeline import MODEL, PRODUCTION_PRIVATE, STRANGER_PRIVATE, Pipeline

from controller.cli import main
from controller.errors import ConfigError, GateFailed
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.proposals.propose_evidence import Override


def _propose(setup: Pipeline, *, signer: str | None = None, **request: Any) -> ProposalResult:
    key = load_evidence_signer({EVIDENCE_KEY_ENV: signer}) if signer else None
    return propose(
        ProposalRequest(model=MODEL, environment="production", version=1, **request),
        registry=setup.registry, workspace=setup.workspace, forge=setup.forge,
        attestations=setup.attestations, evidence=setup.evidence, evidence_signer=key,
        clock=lambda: 1_796_000_000.0,
    )  # fmt: skip


def _refs(setup: Pipeline) -> dict[str, str]:
    return dict(setup.workspace.remote.branches)


def test_a_version_without_its_evidence_is_refused_and_nothing_is_written() -> None:
    setup = Pipeline()
    setup.earn("soak", hours=6)
    before = _refs(setup)
    with pytest.raises(GateFailed) as refused:
        _propose(setup)
    assert str(refused.value) == (
        "fraud-detector v1 lacks evidence for production: canary in staging: none; soak in "
        "staging: 6h of 24h; nothing was proposed (to propose it anyway: sluice propose "
        "--force --reason TEXT, recorded as a signed override)"
    )
    assert "\n" not in str(refused.value)
    assert _refs(setup) == before
    assert setup.forge.pulls == {}
    with pytest.raises(GateFailed):  # a dry run refuses the same way
        _propose(setup, dry_run=True)


def test_complete_evidence_opens_the_pull_request_with_it_and_a_success_status() -> None:
    setup = Pipeline()
    setup.earn_all()
    result = _propose(setup)
    assert (result.status, result.evidence_state) == ("proposed", "success")
    assert result.evidence[0].startswith("canary in staging: verified (signed by staging's key")
    (pull,) = setup.forge.pulls.values()
    section = pull.body.split("### Evidence\n\n", 1)[1].split("\n### ", 1)[0]
    assert section.startswith("Complete for **production**'s promotion policy.")
    canary, soak = (line for line in section.splitlines() if line.startswith("- "))
    keyid = setup.staging.public_key.keyid if setup.staging else ""
    assert canary.startswith(
        f"- ✅ **canary in staging** (2026-11-30T00:53:20Z, signed by key `{keyid[:12]}…`): "
        "promoted after 10% → 50% → 100% from 50%"
    )
    assert "served 100% for 1d1h (2026-11-28T23:53:20Z → 2026-11-30T00:53:20Z)" in soak
    evidence = [s for s in setup.forge.statuses if s.context == "sluice/evidence"]
    assert [(s.sha, s.state) for s in evidence] == [(result.commit, "success")]
    assert evidence[0].description == "evidence from staging complete"


def test_a_required_approval_leaves_the_status_pending() -> None:
    setup = Pipeline(promotion="promotion: {from: [staging], approval: {required: true}}")
    setup.earn("canary")
    result = _propose(setup)
    assert result.evidence_state == "pending"
    (status,) = [s for s in setup.forge.statuses if s.context == "sluice/evidence"]
    assert (status.state, status.description) == (
        "pending", "evidence from staging complete; waiting for approval",
    )  # fmt: skip


def test_force_needs_a_key_the_environment_trusts_then_records_a_signed_override() -> None:
    setup = Pipeline()
    setup.earn("canary")
    forced = Override(by="alice", reason="hotfix for the fraud spike")
    before = _refs(setup)
    with pytest.raises(ConfigError, match=r"^--force records a signed override: set SLUICE_EV"):
        _propose(setup, override=forced)
    with pytest.raises(ConfigError, match=r"is not one of production's evidence.controllerKeys"):
        _propose(setup, override=forced, signer=STRANGER_PRIVATE.decode())
    assert _refs(setup) == before
    assert "sluice.evidence.production.override" not in setup.evidence.evidence_tags(MODEL, 1)

    result = _propose(setup, override=forced, signer=PRODUCTION_PRIVATE.decode())
    assert (result.status, result.evidence_state) == ("proposed", "failure")
    assert "sluice.evidence.production.override" in setup.evidence.evidence_tags(MODEL, 1)
    (pull,) = setup.forge.pulls.values()
    assert "⚠️ **Incomplete**, proposed by hand past it (an override) into production." in (
        pull.body
    )
    assert "**override in production** (2026-11-30T00:53:20Z, signed by key" in pull.body
    assert "forced by alice: hotfix for the fraud spike (past: soak in staging: none)" in pull.body
    (status,) = [s for s in setup.forge.statuses if s.context == "sluice/evidence"]
    assert status.state == "failure"
    assert status.description.startswith("incomplete, proposed by hand: hotfix for the fraud")
    assert any(line.startswith("override in production: verified") for line in result.evidence)
    again = _propose(setup)  # the override recorded lets the same version through again
    assert (again.status, again.evidence_state) == ("unchanged", "failure")


def test_no_override_lifts_broken_evidence() -> None:
    setup = Pipeline()
    setup.earn_all()
    setup.evidence.delete(MODEL, 1, kind="soak", environment="staging")
    forced = Override(by="alice", reason="trust me")
    with pytest.raises(GateFailed, match=r"no override lifts a quarantine or broken evidence"):
        _propose(setup, override=forced, signer=PRODUCTION_PRIVATE.decode())
    assert setup.forge.pulls == {}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--force"], "--force needs --reason TEXT"),
        (["--force", "--reason", "  "], "sluice quarantine lift"),
        (["--reason", "why"], "--reason goes with --force"),
    ],
)
def test_the_command_line_asks_force_for_a_reason(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything is read: `--force` without a reason, a reason without it."""
    assert main(["propose", MODEL, "--env", "production", *args]) == 2
    assert words in capsys.readouterr().err
