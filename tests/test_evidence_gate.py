"""The evidence gate over the in-memory Git remote, registry and stores with real signing: a
version is held to production's ``promotion:`` from what staging's pins, tags and signed
evidence say, and a forged or deleted envelope refuses it."""

from __future__ import annotations

from typing import Any

from support.evidence_pipeline import MODEL, STRANGER_PRIVATE, Pipeline

from controller.evidence.signing import EVIDENCE_KEY_ENV, evidence_line, load_evidence_signer
from controller.evidence.statement import build_evidence, canary_body
from controller.proposals.evidence_gate import PromotionCheck, check_promotion, upstream_pins


def _check(setup: Pipeline, version: int = 1, **options: Any) -> PromotionCheck:
    found = check_promotion(
        workspace=setup.workspace, registry=setup.registry, evidence=setup.evidence,
        attestations=setup.attestations, model=MODEL, version=version,
        environment=options.pop("environment", "production"), **options,
    )  # fmt: skip
    assert found is not None
    return found


def test_canary_and_a_full_soak_from_staging_are_complete() -> None:
    setup = Pipeline()
    setup.earn_all()
    check = _check(setup)
    assert check.verdict.complete, check.verdict.lines()
    assert [c.kind for c in check.checks] == ["canary", "soak"]
    assert check.verdict.met[1] == "soak in staging: 1d1h of 24h, clean"
    assert upstream_pins(setup.workspace, "production", MODEL) == {"staging": 1}


def test_an_environment_without_promotion_has_no_gate() -> None:
    setup = Pipeline()
    found = check_promotion(
        workspace=setup.workspace, registry=setup.registry, evidence=setup.evidence,
        attestations=setup.attestations, model=MODEL, version=1, environment="staging",
    )  # fmt: skip
    assert found is None


def test_a_missing_canary_and_a_short_soak_are_named() -> None:
    setup = Pipeline()
    setup.earn("soak", hours=6)
    assert _check(setup).verdict.lines() == [
        "canary in staging: none",
        "soak in staging: 6h of 24h",
    ]


def test_approval_is_left_out_before_the_pull_request_only() -> None:
    setup = Pipeline(promotion="promotion: {from: [staging], approval: {required: true}}")
    setup.earn_all()
    assert _check(setup).verdict.lines() == ["approval in production: none"]
    assert _check(setup, before_pull_request=True).verdict.complete


def test_a_version_quarantined_in_staging_or_anywhere_is_refused() -> None:
    setup = Pipeline()
    setup.earn_all()
    setup.registry.set_version_tags(MODEL, 1, {
        "sluice.quarantined": "error rate 4.1% (max 1%)",
        "sluice.quarantined.environment": "staging",
    })  # fmt: skip
    assert _check(setup).verdict.lines() == ["staging quarantined v1: error rate 4.1% (max 1%)"]
    setup.registry.set_version_tags(MODEL, 1, {"sluice.quarantined.environment": "production"})
    check = _check(setup)
    assert check.verdict.lines() == ["production quarantined v1: error rate 4.1% (max 1%)"]
    assert not check.verdict.allowed


def test_a_later_version_supersedes_once_it_replaced_the_version_in_staging() -> None:
    """A later version in its canary supersedes nothing yet (it may fail; the version still
    serves most of staging); once it serves alone, it does, unless it was quarantined."""
    setup = Pipeline(versions=2)
    setup.earn_all()
    setup.set_pin("staging", 2, canary=10, previous=1)
    assert _check(setup).verdict.complete
    assert upstream_pins(setup.workspace, "production", MODEL) == {"staging": None}
    setup.set_pin("staging", 2)
    assert _check(setup).verdict.lines() == ["superseded in staging by v2"]
    assert upstream_pins(setup.workspace, "production", MODEL) == {"staging": 2}
    setup.registry.set_version_tags(MODEL, 2, {"sluice.quarantined": "worse"})
    assert _check(setup).verdict.complete


def test_a_shadow_phase_running_in_staging_requires_its_verdict() -> None:
    setup = Pipeline()
    setup.earn_all()
    setup.earn("shadow")
    assert _check(setup).verdict.complete
    setup.evidence.delete(MODEL, 1, kind="shadow", environment="staging")
    lines = _check(setup).verdict.lines()
    assert len(lines) == 1
    assert lines[0].startswith("shadow in staging: tag check failed: the tag names envelope")


def test_deleted_or_forged_evidence_refuses_even_with_an_override() -> None:
    setup = Pipeline()
    setup.earn_all()
    setup.evidence.delete(MODEL, 1, kind="canary", environment="staging")
    (line,) = _check(setup).verdict.lines()
    assert "canary in staging: tag check failed" in line
    assert "deleted or replaced" in line

    forged = Pipeline()
    forged.earn_all()
    stranger = load_evidence_signer({EVIDENCE_KEY_ENV: STRANGER_PRIVATE.decode()})
    assert stranger is not None
    statement = build_evidence(
        kind="canary", body=canary_body(steps=(100,), promoted_from=100, results=(), record=None),
        environment="staging", model=MODEL, version=1,
        subjects={"MLmodel": "0" * 64}, controller="forger", now=0.0,
    )  # fmt: skip
    forged.evidence.replace(
        MODEL, 1, kind="canary", environment="staging", line=evidence_line(statement, stranger)
    )
    check = _check(forged)
    assert not check.verdict.allowed
    assert any("canary in staging: tag check failed" in line for line in check.verdict.lines())


def test_evidence_signed_by_a_key_staging_does_not_trust_refuses() -> None:
    setup = Pipeline()
    setup.earn("soak")
    stranger = load_evidence_signer({EVIDENCE_KEY_ENV: STRANGER_PRIVATE.decode()})
    assert stranger is not None
    setup.staging = stranger  # the forger also rewrites the tag: the signature gives it away
    setup.earn("canary")
    (line,) = _check(setup).verdict.lines()
    assert line.startswith("canary in staging: signature check failed: not signed by a key")
