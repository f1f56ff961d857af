"""Evidence's statement, schema, keys and verification: each kind's predicate meets the checked-in
schema, the schema refuses malformed ones, in-toto itself verifies a logged envelope, and
verification names the first broken link of each piece (a key trusted for another environment,
other bytes, a replaced, deleted or hand-added envelope) against the in-memory store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from in_toto.exceptions import SignatureVerificationError
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from jsonschema import Draft202012Validator
from securesystemslib.signer import CryptoSigner

from controller.analysis_types import GateResult, Verdict
from controller.errors import ConfigError
from controller.evidence.evaluate import UpstreamState, evaluate
from controller.evidence.policy import PromotionPolicy
from controller.evidence.record import check_evidence, record_evidence
from controller.evidence.signing import (
    EVIDENCE_KEY_ENV,
    EVIDENCE_KEY_FILE_ENV,
    evidence_line,
    load_evidence_signer,
)
from controller.evidence.statement import (
    KINDS,
    PREDICATE_TYPE,
    PROVENANCE_SUBJECT,
    SoakQuery,
    approval_body,
    build_evidence,
    canary_body,
    override_body,
    predicate_problem,
    predicate_schema,
    shadow_body,
    soak_body,
    version_subjects,
)
from controller.evidence.verify import EvidenceCheck, verify_evidence
from controller.provenance.signing import generate_keypair, load_public_key
from controller.rollout.record import AnalysisRecord
from controller.testing.attestations import MemoryAttestations
from controller.testing.evidence import MemoryEvidence

MODEL = "fraud-detector"
NOW = 1_796_000_000.0  # 2026-11-30T00:53:20Z
ARTIFACT = {"MLmodel": "a" * 64, "model.pkl": "b" * 64}
PROVENANCE_LINE = b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json"}\n'
SUBJECTS = version_subjects(ARTIFACT, PROVENANCE_LINE)
GATES = (
    GateResult("success-rate", Verdict.PASS, "success 99.6% (min 99%)", {"rate": 0.996}),
    GateResult("latency", Verdict.PASS, "p99 180 ms (max 500 ms)", {"p99_ms": float("nan")}),
)


def _bodies() -> dict[str, dict[str, Any]]:
    record = AnalysisRecord(commit="c0ffee", step=50, looks=3, results=GATES)
    return {
        "canary": canary_body(steps=(10, 50, 100), promoted_from=50, results=GATES, record=record),
        "shadow": shadow_body(
            verdict="pass", reason="no check failed", samples=1200, labelled=800, results=GATES
        ),
        "soak": soak_body(
            start=NOW - 86_400,
            end=NOW,
            queries=[SoakQuery("error budget burn", "sum(rate(x[1h]))", 0.2, ok=True)],
            alerts=[],
        ),
        "approval": approval_body(
            approvers=["alice", "bob", "alice"],
            number=42,
            url="https://github.com/acme/gitops/pull/42",
            approved_at=NOW,
        ),
        "override": override_body(by="alice", reason="hotfix", missing=["soak in staging: none"]),
    }


def _statement(
    kind: str = "canary", environment: str = "staging", version: int = 7, **overrides: Any
) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "kind": kind,
        "body": _bodies()[kind],
        "environment": environment,
        "model": MODEL,
        "version": version,
        "subjects": SUBJECTS,
        "controller": f"sluice serve ({environment})",
        "now": NOW,
    }
    return build_evidence(**{**facts, **overrides})


@pytest.fixture(scope="module")
def staging() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


@pytest.fixture(scope="module")
def production() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


# -- the statement and its schema ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_a_predicate_the_checked_in_schema_accepts(kind: str) -> None:
    statement = _statement(kind)
    assert statement["predicateType"] == PREDICATE_TYPE == predicate_schema()["$id"]
    predicate = statement["predicate"]
    Draft202012Validator(predicate_schema()).validate(predicate)
    assert (predicate["kind"], predicate["model"], predicate["version"]) == (kind, MODEL, 7)
    assert predicate["at"] == "2026-11-30T00:53:20Z"
    assert set(predicate) == {"kind", "environment", "model", "version", "at", "controller", kind}


def test_subjects_are_the_artifact_files_and_the_provenance_envelope() -> None:
    statement = _statement()
    names = [subject["name"] for subject in statement["subject"]]
    assert names == ["MLmodel", PROVENANCE_SUBJECT, "model.pkl"]
    assert version_subjects(ARTIFACT, None) == ARTIFACT


def test_canary_body_carries_the_steps_looks_and_each_gates_numbers() -> None:
    canary = _statement()["predicate"]["canary"]
    assert canary["steps"] == [10, 50, 100]
    assert (canary["promotedFrom"], canary["looks"]) == (50, 3)
    assert canary["gates"][0] == {
        "name": "success-rate",
        "verdict": "pass",
        "summary": "success 99.6% (min 99%)",
        "values": {"rate": 0.996},
    }
    assert canary["gates"][1]["values"] == {"p99_ms": None}  # NaN is not JSON


def test_soak_and_approval_bodies_say_the_window_and_who() -> None:
    soak = _statement("soak")["predicate"]["soak"]
    assert soak["durationSeconds"] == 86_400
    assert soak["end"] == "2026-11-30T00:53:20Z"
    approval = _statement("approval", environment="production")["predicate"]["approval"]
    assert approval["approvers"] == ["alice", "bob"]
    assert approval["pullRequest"] == {
        "number": 42,
        "url": "https://github.com/acme/gitops/pull/42",
    }


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda p: p.pop("canary"), "'canary' is a required property"),
        (lambda p: p.update(kind="deploy"), "'deploy' is not one of"),
        (lambda p: p.update(version=0), "0 is less than the minimum of 1"),
        (lambda p: p.update(at="yesterday"), "does not match"),
        (lambda p: p.update(extra=True), "Additional properties are not allowed"),
        (lambda p: p.update(soak=_bodies()["soak"]), "holds another kind's body"),
        (lambda p: p["canary"]["gates"][0].update(verdict="great"), "'great' is not one of"),
    ],
)
def test_the_schema_refuses_a_malformed_predicate(edit: Any, problem: str) -> None:
    predicate = json.loads(json.dumps(_statement()["predicate"]))
    edit(predicate)
    found = predicate_problem(predicate)
    assert found is not None
    assert problem in found
    assert "\n" not in found


def test_building_a_malformed_body_is_refused_naming_the_schema() -> None:
    with pytest.raises(ValueError, match=r"approval evidence does not meet evidence-predicate"):
        _statement("approval", body={"approvers": []})


def test_the_schema_file_is_packaged() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"evidence/*.schema.json"' in pyproject


# -- signing -------------------------------------------------------------------------------


def test_in_toto_verifies_the_evidence_envelope_sluice_writes(
    tmp_path: Path, staging: CryptoSigner
) -> None:
    """The in-toto library alone loads the logged line, checks the signature with the
    staging controller's public key, and reads the predicate; another key fails."""
    path = tmp_path / "canary.intoto.jsonl"
    path.write_bytes(evidence_line(_statement(), staging))
    loaded = Metadata.load(str(path))
    assert isinstance(loaded, InTotoEnvelope)
    loaded.verify_signature({"keyid": staging.public_key.keyid, **staging.public_key.to_dict()})
    payload = json.loads(loaded.payload)
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert payload["predicateType"] == "https://sluice.dev/evidence/v1"
    Draft202012Validator(
        json.loads(
            (
                Path(__file__).parents[1] / "controller/evidence/evidence-predicate.schema.json"
            ).read_text()
        )
    ).validate(payload["predicate"])
    other = CryptoSigner.generate_ed25519().public_key
    with pytest.raises(SignatureVerificationError):
        loaded.verify_signature({"keyid": other.keyid, **other.to_dict()})


def test_the_controller_key_comes_from_its_own_variables(tmp_path: Path) -> None:
    private_pem, public_pem = generate_keypair()
    from_env = load_evidence_signer({EVIDENCE_KEY_ENV: private_pem.decode()})
    assert from_env is not None
    assert from_env.public_key == load_public_key(public_pem, "pub")
    key_file = tmp_path / "evidence.key"
    key_file.write_bytes(private_pem)
    from_file = load_evidence_signer({EVIDENCE_KEY_FILE_ENV: str(key_file)})
    assert from_file is not None
    assert from_file.public_key.keyid == from_env.public_key.keyid
    # training's key is not the controller's
    assert load_evidence_signer({"SLUICE_SIGNING_KEY": private_pem.decode()}) is None


def test_a_bad_controller_key_is_one_line_without_the_secret(tmp_path: Path) -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError) as caught:
        load_evidence_signer({EVIDENCE_KEY_ENV: secret})
    assert "SLUICE_EVIDENCE_KEY is not an unencrypted PEM private key" in caught.value.message
    assert "TOPSECRET" not in caught.value.message
    with pytest.raises(ConfigError, match=r"SLUICE_EVIDENCE_KEY_FILE names .*cannot be read"):
        load_evidence_signer({EVIDENCE_KEY_FILE_ENV: str(tmp_path / "missing.key")})


# -- verification --------------------------------------------------------------------------


def _recorded(staging: CryptoSigner, production: CryptoSigner) -> MemoryEvidence:
    store = MemoryEvidence()
    store.add_version(MODEL, 7)
    for kind in ("canary", "soak"):
        store.record(
            MODEL, 7, evidence_line(_statement(kind), staging), kind=kind, environment="staging"
        )
    approval = _statement("approval", environment="production")
    store.record(
        MODEL,
        7,
        evidence_line(approval, production),
        kind="approval",
        environment="production",
    )
    return store


def _checks(
    store: MemoryEvidence,
    staging: CryptoSigner,
    production: CryptoSigner,
    subjects: dict[str, str] = SUBJECTS,
) -> list[EvidenceCheck]:
    return verify_evidence(
        store.evidence(MODEL, 7),
        store.evidence_tags(MODEL, 7),
        trusted_keys_by_env={
            "staging": [staging.public_key],
            "production": [production.public_key],
        },
        subjects=subjects,
        model=MODEL,
        version=7,
    )


def _verify(
    store: MemoryEvidence,
    staging: CryptoSigner,
    production: CryptoSigner,
    subjects: dict[str, str] = SUBJECTS,
) -> dict[str, Any]:
    return {f"{c.environment}.{c.kind}": c for c in _checks(store, staging, production, subjects)}


def test_recorded_evidence_verifies_piece_by_piece(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    checks = _verify(_recorded(staging, production), staging, production)
    assert set(checks) == {"staging.canary", "staging.soak", "production.approval"}
    assert all(check.verified for check in checks.values()), [c.line() for c in checks.values()]
    canary = checks["staging.canary"]
    assert canary.keyid == staging.public_key.keyid
    assert canary.predicate["canary"]["promotedFrom"] == 50
    assert canary.line().startswith("canary in staging: verified (signed by staging's key ")


def test_a_key_trusted_for_another_environment_does_not_sign_here(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    """Staging's controller cannot sign production's approval."""
    store = MemoryEvidence()
    store.add_version(MODEL, 7)
    forged = _statement("approval", environment="production")
    store.record(
        MODEL, 7, evidence_line(forged, staging), kind="approval", environment="production"
    )
    check = _verify(store, staging, production)["production.approval"]
    assert (check.verified, check.failed) == (False, "signature")
    assert "not signed by a key trusted for production" in check.reason


def test_evidence_earned_by_other_bytes_is_not_this_versions(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    store = _recorded(staging, production)
    swapped = {**SUBJECTS, "model.pkl": "c" * 64}
    check = _verify(store, staging, production, subjects=swapped)["staging.canary"]
    assert check.failed == "subjects"
    assert check.reason == "model.pkl has sha256 cccccccccccc… now, bbbbbbbbbbbb… as signed"
    retrained = version_subjects(ARTIFACT, b"another provenance\n")
    check = _verify(store, staging, production, subjects=retrained)["staging.canary"]
    assert check.failed == "subjects"
    assert check.reason.startswith(PROVENANCE_SUBJECT)


def test_a_replaced_envelope_is_caught_by_its_tag(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    """A validly signed envelope of another event, copied over the canary's artifact: the
    tag no longer names what is logged, and the copy is named by no tag."""
    store = _recorded(staging, production)
    other = _statement(controller="someone else")
    store.replace(
        MODEL, 7, kind="canary", environment="staging", line=evidence_line(other, staging)
    )
    checks = _checks(store, staging, production)
    broken = [c for c in checks if not c.verified]
    assert [(c.environment, c.kind, c.failed) for c in broken] == [
        ("staging", "canary", "tag"),
        ("staging", "canary", "tag"),
    ]
    assert "which is not logged: it was deleted or replaced" in broken[0].reason
    assert "no tag names it: it was added or replaced by hand" in broken[1].reason


def test_a_deleted_envelope_is_caught_by_its_tag(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    store = _recorded(staging, production)
    store.delete(MODEL, 7, kind="soak", environment="staging")
    check = _verify(store, staging, production)["staging.soak"]
    assert (check.verified, check.failed) == (False, "tag")
    assert check.line().startswith("soak in staging: tag check failed: the tag names envelope")


@pytest.mark.parametrize(
    ("line_of", "failed", "reason"),
    [
        (lambda s: b"not json\n", "envelope", "the evidence is not a DSSE envelope"),
        (
            lambda s: evidence_line(_statement("shadow"), s),
            "statement",
            "it is shadow evidence of staging, tagged as canary of staging",
        ),
        (
            lambda s: evidence_line(_statement(version=8), s),
            "statement",
            "it is evidence of fraud-detector v8, not this version",
        ),
    ],
)
def test_an_envelope_that_is_not_the_tagged_evidence_fails(
    staging: CryptoSigner, production: CryptoSigner, line_of: Any, failed: str, reason: str
) -> None:
    store = MemoryEvidence()
    store.add_version(MODEL, 7)
    store.record(MODEL, 7, line_of(staging), kind="canary", environment="staging")
    check = _verify(store, staging, production)["staging.canary"]
    assert (check.failed, check.reason) == (failed, reason)


def test_an_unsigned_envelope_or_an_untrusted_environment_fails_at_the_signature(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    from controller.provenance.signing import envelope_line, sign_statement

    store = MemoryEvidence()
    store.add_version(MODEL, 7)
    store.record(
        MODEL,
        7,
        envelope_line(sign_statement(_statement(), None)),
        kind="canary",
        environment="staging",
    )
    line = evidence_line(_statement(environment="qa"), staging)
    store.record(MODEL, 7, line, kind="canary", environment="qa")
    checks = _verify(store, staging, production)
    assert checks["staging.canary"].reason == "the envelope is unsigned"
    assert checks["qa.canary"].reason == "no key is trusted for qa's evidence"


# -- through the ports: what the rollout and a production proposal will call ---------------


def test_recorded_through_the_ports_then_checked_and_evaluated(
    staging: CryptoSigner, production: CryptoSigner
) -> None:
    """The Actuator's call at a promotion, then a production proposal's: checked against the
    bytes served now and held to the policy; an artifact swapped afterwards breaks it."""
    files = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04pickled"}
    attestations = MemoryAttestations()
    attestations.record(MODEL, 7, files, PROVENANCE_LINE)
    store = MemoryEvidence()
    store.add_version(MODEL, 7)
    record = AnalysisRecord(commit="c0ffee", step=50, looks=2, results=GATES)
    digest = record_evidence(
        store,
        attestations,
        staging,
        kind="canary",
        body=canary_body(steps=(10, 50, 100), promoted_from=50, results=GATES, record=record),
        environment="staging",
        model=MODEL,
        version=7,
        controller="sluice serve (staging)",
        now=NOW,
    )
    assert store.evidence_tags(MODEL, 7) == {"sluice.evidence.staging.canary": digest}
    keys = {"staging": [staging.public_key], "production": [production.public_key]}
    policy = PromotionPolicy.model_validate({"from": ["staging"], "require": {"soak": "24h"}})

    def verdict() -> Any:
        checks = check_evidence(
            store, attestations, model=MODEL, version=7, trusted_keys_by_env=keys
        )
        upstream = [UpstreamState("staging")]
        return evaluate(policy, checks, upstream, environment="production", version=7)

    assert verdict().lines() == ["soak in staging: none"]
    attestations.tamper(MODEL, 7, "model.pkl", b"other bytes")
    assert verdict().lines() == [
        "canary in staging: subjects check failed: model.pkl has sha256 "
        f"{hashlib.sha256(b'other bytes').hexdigest()[:12]}… now, "
        f"{hashlib.sha256(files['model.pkl']).hexdigest()[:12]}… as signed",
        "soak in staging: none",
    ]
