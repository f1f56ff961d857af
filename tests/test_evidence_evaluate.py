"""The promotion policy and its pure evaluation, over plain data: checked evidence as
verification returns it, what each upstream environment says of the version, and the one-line
reason for each thing missing; and ``promotion:`` as an environment's sluice.yaml reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.gitops_repo import manifest_files

from controller.cli import main
from controller.errors import ConfigError
from controller.evidence.evaluate import UpstreamState, evaluate
from controller.evidence.policy import PromotionPolicy
from controller.evidence.verify import EvidenceCheck
from controller.manifests.environment import parse_environment
from controller.provenance.verify import Verification

MODEL = "fraud-detector"
CONFIG = "manifests/overlays/{env}/sluice.yaml"
DAY = 86_400


def _policy(**fields: Any) -> PromotionPolicy:
    return PromotionPolicy.model_validate({"from": ["staging"], **fields})


def _verified(kind: str, environment: str = "staging", **body: Any) -> EvidenceCheck:
    return EvidenceCheck(
        environment,
        kind,
        True,
        f"signed by {environment}'s key 0123456789ab…, 3 subjects match",
        predicate={"kind": kind, "environment": environment, kind: body},
    )


def _soak(seconds: float, *, alerts: tuple[str, ...] = (), ok: bool = True) -> EvidenceCheck:
    query = {"name": "error budget burn", "query": "x", "value": 0.1, "ok": ok}
    return _verified("soak", durationSeconds=seconds, alerts=list(alerts), queries=[query])


CANARY = _verified("canary", steps=[10, 50, 100], promotedFrom=50, looks=2, gates=[])
SHADOW = _verified("shadow", verdict="pass", reason="ok", samples=900, labelled=600, checks=[])
APPROVAL = _verified("approval", "production", approvers=["alice"])
OVERRIDE = _verified("override", "production", by="alice", reason="hotfix", missing=[])


def _evaluate(
    policy: PromotionPolicy,
    *checks: EvidenceCheck,
    provenance: Verification | None = None,
    **upstream: Any,
) -> Any:
    return evaluate(
        policy,
        checks,
        [UpstreamState("staging", **upstream)],
        environment="production",
        version=7,
        provenance=provenance,
    )


# -- evaluation ----------------------------------------------------------------------------


def test_canary_and_a_full_soak_are_complete() -> None:
    verdict = _evaluate(_policy(require={"soak": "24h"}), CANARY, _soak(DAY + 5))
    assert verdict.complete
    assert verdict.allowed
    assert verdict.lines() == []
    assert verdict.met[1] == "soak in staging: 1d5s of 24h, clean"


def test_no_evidence_at_all_names_each_requirement() -> None:
    verdict = _evaluate(_policy(require={"soak": "24h"}, approval={"required": True}))
    assert not verdict.allowed
    assert verdict.lines() == [
        "canary in staging: none",
        "soak in staging: none",
        "approval in production: none",
    ]


def test_a_short_soak_says_how_long_of_how_long() -> None:
    verdict = _evaluate(_policy(require={"soak": "24h"}), CANARY, _soak(6 * 3600))
    assert verdict.lines() == ["soak in staging: 6h of 24h"]
    verdict = _evaluate(_policy(require={"soak": "90m"}), CANARY, _soak(3600 + 59))
    assert verdict.lines() == ["soak in staging: 1h59s of 90m"]


def test_a_soak_with_an_alert_or_a_query_out_of_bounds_does_not_count() -> None:
    policy = _policy(require={"soak": "1h"})
    alerted = _evaluate(policy, CANARY, _soak(DAY, alerts=("SluiceDriftDetected",)))
    assert alerted.lines() == ["soak in staging: 1d with alert SluiceDriftDetected"]
    burnt = _evaluate(policy, CANARY, _soak(DAY, ok=False))
    assert burnt.lines() == ["soak in staging: 1d with error budget burn out of bounds"]


def test_a_quarantined_or_superseded_version_is_refused_even_with_its_evidence() -> None:
    quarantined = _evaluate(_policy(), CANARY, quarantined="error rate 4.1% (max 1%)")
    assert quarantined.lines() == ["staging quarantined v7: error rate 4.1% (max 1%)"]
    superseded = _evaluate(_policy(), CANARY, superseded_by=8)
    assert superseded.lines() == ["superseded in staging by v8"]


def test_shadow_if_run_is_required_only_after_a_shadow_phase() -> None:
    policy = _policy()
    assert _evaluate(policy, CANARY).complete
    assert _evaluate(policy, CANARY, shadow_ran=True).lines() == ["shadow in staging: none"]
    assert _evaluate(policy, CANARY, SHADOW, shadow_ran=True).complete
    always = _policy(require={"shadow": "always"})
    assert _evaluate(always, CANARY).lines() == ["shadow in staging: none"]
    never = _policy(require={"shadow": "never"})
    assert _evaluate(never, CANARY, shadow_ran=True).complete


def test_a_failed_shadow_verdict_is_not_shadow_evidence() -> None:
    failed = _verified("shadow", verdict="fail", reason="error rate worse", samples=900)
    verdict = _evaluate(_policy(require={"shadow": "always"}), CANARY, failed)
    assert verdict.lines() == ["shadow in staging: verdict fail (error rate worse)"]


def test_broken_evidence_is_named_by_its_failed_link() -> None:
    deleted = EvidenceCheck(
        "staging",
        "canary",
        False,
        "the tag names envelope sha256:0123…, which is not logged",
        "tag",
    )
    verdict = _evaluate(_policy(), deleted)
    assert verdict.lines() == [
        "canary in staging: tag check failed: the tag names envelope sha256:0123…, which is "
        "not logged"
    ]
    assert verdict.missing[0].kind == "canary"


def test_forged_evidence_refuses_even_when_it_was_not_required() -> None:
    forged = EvidenceCheck(
        "staging", "soak", False, "not signed by a key trusted for staging", "signature"
    )
    verdict = _evaluate(_policy(), CANARY, forged)
    assert [m.kind for m in verdict.missing] == ["invalid"]
    assert verdict.lines() == [
        "soak in staging: signature check failed: not signed by a key trusted for staging"
    ]
    assert not verdict.allowed
    assert not _evaluate(_policy(), CANARY, forged, OVERRIDE).allowed


def test_evidence_of_an_unrelated_environment_is_not_this_ones_business() -> None:
    elsewhere = EvidenceCheck("qa", "canary", False, "no key is trusted for qa", "signature")
    assert _evaluate(_policy(), CANARY, elsewhere).complete


def test_provenance_is_required_when_the_policy_says_so() -> None:
    policy = _policy(require={"provenance": True})
    assert _evaluate(policy, CANARY).lines() == ["provenance: not verified"]
    failed = Verification(False, "no trusted key signed it", failed="signature")
    assert _evaluate(policy, CANARY, provenance=failed).lines() == [
        "provenance: signature check failed: no trusted key signed it"
    ]
    assert _evaluate(policy, CANARY, provenance=Verification(True, "3 files match")).complete


def test_approval_counts_only_in_the_environment_itself() -> None:
    policy = _policy(approval={"required": True})
    assert _evaluate(policy, CANARY, APPROVAL).complete
    in_staging = _verified("approval", "staging", approvers=["mallory"])
    assert _evaluate(policy, CANARY, in_staging).lines() == ["approval in production: none"]


def test_an_override_lets_missing_evidence_past_but_not_a_quarantine() -> None:
    missing = _evaluate(_policy(require={"soak": "24h"}), CANARY, OVERRIDE)
    assert (missing.complete, missing.allowed) == (False, True)
    assert missing.override is OVERRIDE
    quarantined = _evaluate(_policy(), CANARY, OVERRIDE, quarantined="failed")
    assert not quarantined.allowed


def test_every_upstream_environment_must_hold_the_evidence() -> None:
    policy = PromotionPolicy.model_validate({"from": ["staging", "staging-eu"]})
    verdict = evaluate(
        policy,
        [CANARY],
        [UpstreamState("staging")],
        environment="production",
        version=7,
    )
    assert verdict.lines() == ["canary in staging-eu: none"]


# -- the policy ----------------------------------------------------------------------------


def _environment(promotion: str, env: str = "production") -> Any:
    text = manifest_files(MODEL)[CONFIG.format(env=env)] + promotion + "\n"
    return parse_environment(text, source="sluice.yaml", environment=env)


def test_promotion_is_read_from_the_environment_with_its_defaults() -> None:
    config = _environment("promotion:\n  from: [staging]\n  require: {soak: 1d12h}")
    policy = config.promotion
    assert policy is not None
    assert policy.upstream == ("staging",)
    assert policy.require.canary
    assert policy.require.shadow == "if-run"
    assert not policy.require.provenance
    assert policy.require.soak_seconds == 36 * 3600
    assert (policy.approval.required, policy.auto_propose) == (False, True)
    assert _environment("").promotion is None


@pytest.mark.parametrize(
    ("promotion", "message"),
    [
        ("promotion: {require: {canary: true}}", "from"),
        ("promotion: {from: []}", "from"),
        ("promotion: {from: [staging, staging]}", "must list distinct environment names"),
        ("promotion: {from: [production]}", "names 'production', this environment itself"),
        ("promotion: {from: [staging], require: {soak: 1 day}}", "soak '1 day' is not a duration"),
        ("promotion: {from: [staging], require: {soak: 0h}}", "soak '0h' is not a duration"),
        ("promotion: {from: [staging], require: {shadow: sometimes}}", "shadow"),
        ("promotion: {from: [staging], approve: true}", "approve"),
    ],
)
def test_a_promotion_policy_that_cannot_work_is_refused_when_read(
    promotion: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _environment(promotion)


def test_the_environment_schema_documents_promotion(capsys: pytest.CaptureFixture[str]) -> None:
    """`sluice config schema environment` shows promotion and each field's description."""
    assert main(["config", "schema", "environment"]) == 0
    schema = json.loads(capsys.readouterr().out)
    defs = schema["$defs"]
    assert set(defs["PromotionPolicy"]["properties"]) == {
        "from",
        "require",
        "approval",
        "autoPropose",
    }
    assert set(defs["EvidenceRequirement"]["properties"]) == {
        "canary",
        "soak",
        "shadow",
        "provenance",
    }
    for model in ("PromotionPolicy", "EvidenceRequirement", "ApprovalRequirement"):
        assert all(f.get("description") for f in defs[model]["properties"].values()), model
    assert defs["EvidenceRequirement"]["properties"]["shadow"]["enum"] == [
        "always",
        "if-run",
        "never",
    ]
    assert "Unset: any version" in schema["properties"]["promotion"]["description"]
