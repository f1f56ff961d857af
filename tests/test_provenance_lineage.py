"""The lineage chain, built from plain values: each link checked against its neighbours, the
first broken one named, and the one-line summary ``make demo`` prints."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pandas as pd
import pytest
from securesystemslib.signer import CryptoSigner

from controller.domain import ModelVersion
from controller.provenance.dataset import DvcEntry, dataset_record
from controller.provenance.lineage import (
    Lineage,
    LineageFacts,
    Link,
    PinFacts,
    ServedRevision,
    build_lineage,
    summary_line,
)
from controller.provenance.signing import envelope_digest, envelope_line, sign_statement
from controller.provenance.statement import CodeSource, build_statement

MODEL = "fraud-detector"
URI = "mlflow-artifacts:/1/models/m-abc/artifacts"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PIN_COMMIT = "feedc0ffee0123456789abcdef0123456789abcd"
FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04pickled"}
DIGESTS = {name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()}
KINDS = ["revision", "pin", "version", "run", "code", "dataset", "attestation"]


@pytest.fixture(scope="module")
def signer() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def _envelope(signer: CryptoSigner | None) -> bytes:
    frame = pd.DataFrame({"amount": [1.0, 2.0], "fraud": [0, 1]})
    train = replace(
        dataset_record(frame, name="train", source="week 0"),
        dvc=DvcEntry(path="data/transactions.csv", md5="3f1c" * 8),
    )
    statement = build_statement(
        subjects=DIGESTS,
        model=MODEL,
        version=2,
        run_id="run-1",
        entry_point="models.fraud_detector.train",
        parameters={},
        datasets=[train],
        code=CodeSource("git+https://github.com/acme/models", COMMIT),
        builder="local",
        gate={"passed": True},
    )
    return envelope_line(sign_statement(statement, signer))


def _facts(signer: CryptoSigner | None, **changes: Any) -> LineageFacts:
    line = _envelope(signer)
    frame_digest = dataset_record(
        pd.DataFrame({"amount": [1.0, 2.0], "fraud": [0, 1]}), name="train", source=""
    ).digest
    version = ModelVersion(
        name=MODEL, version=2, run_id="run-1", source="models:/m-abc", artifact_uri=URI,
        tags={
            "sluice.provenance": envelope_digest(line) if signer else "unsigned",
            "sluice.dataset_digest": f"train={frame_digest}",
            "sluice.training_commit": COMMIT,
        },
    )  # fmt: skip
    facts = LineageFacts(
        model=MODEL,
        environment="local",
        served=[ServedRevision("fraud-detector-predictor-00002", 100, URI)],
        synced_commit=PIN_COMMIT,
        pin=PinFacts(
            "manifests/overlays/local/fraud-detector.yaml", "main", PIN_COMMIT, 2, URI, "run-1"
        ),
        version=version,
        mapped_uri=URI,
        attestation=line,
        served_digests=DIGESTS,
        trusted_keys=[signer.public_key] if signer else [],
    )
    return replace(facts, **changes)


def _broken(lineage: Lineage) -> Link:
    assert lineage.broken is not None, lineage.links
    return lineage.broken


def test_whole_chain_verifies_with_a_trusted_key(signer: CryptoSigner) -> None:
    """Every link holds: from the revision to the signed attestation, in the issue's order."""
    lineage = build_lineage(_facts(signer))
    assert [link.kind for link in lineage.links] == KINDS
    assert all(link.verified for link in lineage.links), lineage.links
    assert lineage.broken is None
    by_kind = {link.kind: link for link in lineage.links}
    assert by_kind["revision"].id == "fraud-detector-predictor-00002"
    assert by_kind["pin"].id == PIN_COMMIT[:12]
    assert by_kind["code"].id == COMMIT[:12]
    assert "DVC data/transactions.csv" in by_kind["dataset"].detail
    assert f"signed by trusted key {signer.public_key.keyid[:12]}" in by_kind["attestation"].detail


def test_summary_line_is_the_chain_in_one_line(signer: CryptoSigner) -> None:
    line = summary_line(build_lineage(_facts(signer)))
    assert line.startswith(
        f"{MODEL} v2 in local: revision fraud-detector-predictor-00002 ← pin {PIN_COMMIT[:12]} "
        f"← v2 ← run run-1 ← code {COMMIT[:12]} ← data sha256:"
    )
    assert line.endswith(f"← signed by key {signer.public_key.keyid[:12]}… ✓")


def test_json_has_model_environment_and_links(signer: CryptoSigner) -> None:
    document = build_lineage(_facts(signer)).to_json()
    assert (document["model"], document["environment"]) == (MODEL, "local")
    assert set(document["links"][0]) == {"kind", "id", "verified", "detail"}


def test_storage_uri_mismatch_breaks_the_revision_link(signer: CryptoSigner) -> None:
    served = [ServedRevision("fraud-detector-predictor-00003", 100, "s3://elsewhere/model")]
    lineage = build_lineage(_facts(signer, served=served))
    assert _broken(lineage).kind == "revision"
    assert "storageUri mismatch: the target serves fraud-detector-predictor-00003" in (
        lineage.broken.detail
    )
    assert summary_line(lineage).endswith(f"✗ (revision: {lineage.broken.detail})")


def test_canary_revision_names_its_share(signer: CryptoSigner) -> None:
    served = [
        ServedRevision("fraud-detector-predictor-00002", 10, URI),
        ServedRevision("fraud-detector-predictor-00001", 90, "mlflow-artifacts:/old"),
    ]
    revision = build_lineage(_facts(signer, served=served)).links[0]
    assert revision.verified is True
    assert revision.detail.startswith(
        f"serves 10 % from {URI}, fraud-detector-predictor-00001 90 %"
    )


def test_unreachable_target_breaks_the_revision_link(signer: CryptoSigner) -> None:
    lineage = build_lineage(_facts(signer, served="the local target is not running"))
    assert _broken(lineage).kind == "revision"
    assert "could not be asked: the local target is not running" in lineage.broken.detail


def test_tampered_artifact_breaks_the_attestation_link(signer: CryptoSigner) -> None:
    served = {**DIGESTS, "model.pkl": hashlib.sha256(b"swapped").hexdigest()}
    lineage = build_lineage(_facts(signer, served_digests=served))
    assert _broken(lineage).kind == "attestation"
    assert "model.pkl has sha256" in lineage.broken.detail
    # The facts the attestation vouched for are no longer vouched for, not broken themselves.
    assert {link.kind: link.verified for link in lineage.links}["code"] is None


def test_tampered_artifact_breaks_it_without_keys_too() -> None:
    served = {**DIGESTS, "model.pkl": hashlib.sha256(b"swapped").hexdigest()}
    lineage = build_lineage(_facts(None, served_digests=served))
    assert _broken(lineage).kind == "attestation"
    assert lineage.broken.detail.startswith("model.pkl differs from the attested artifact")


def test_missing_attestation_breaks_it(signer: CryptoSigner) -> None:
    lineage = build_lineage(_facts(signer, attestation=None))
    assert _broken(lineage).kind == "attestation"
    assert lineage.broken.detail == "the version has no provenance.intoto.jsonl"
    # The datasets still come from the version's tag, unchecked.
    dataset = next(link for link in lineage.links if link.kind == "dataset")
    assert (dataset.verified, dataset.detail) == (None, "train: from the tag only")


def test_without_keys_the_signature_is_shown_not_checked(signer: CryptoSigner) -> None:
    """No trusted key: the chain holds, the signature's link is unchecked and says so."""
    lineage = build_lineage(_facts(signer, trusted_keys=[]))
    assert lineage.broken is None
    attestation = lineage.links[-1]
    assert attestation.verified is None
    assert "not checked: no trusted key given" in attestation.detail
    assert summary_line(lineage).endswith(f"← signed by key {signer.public_key.keyid[:12]}… ✓")


def test_unsigned_is_unchecked_without_keys_and_broken_with_them(signer: CryptoSigner) -> None:
    unsigned = build_lineage(_facts(None))
    assert unsigned.broken is None
    assert summary_line(unsigned).endswith("← unsigned ✓")
    required = build_lineage(_facts(None, trusted_keys=[signer.public_key]))
    assert _broken(required).kind == "attestation"
    assert "the attestation is unsigned" in required.broken.detail


def test_wrong_key_breaks_the_attestation(signer: CryptoSigner) -> None:
    other = CryptoSigner.generate_ed25519()
    lineage = build_lineage(_facts(signer, trusted_keys=[other.public_key]))
    assert _broken(lineage).kind == "attestation"
    assert "no trusted key signed it" in lineage.broken.detail


def test_commit_tag_that_disagrees_with_the_attestation_breaks_code(signer: CryptoSigner) -> None:
    facts = _facts(signer)
    assert facts.version is not None
    tags = {**facts.version.tags, "sluice.training_commit": "f" * 40}
    lineage = build_lineage(replace(facts, version=replace(facts.version, tags=tags)))
    assert _broken(lineage).kind == "code"
    assert lineage.broken.detail == f"the tag says {'f' * 40}, the attestation {COMMIT}"


def test_replaced_envelope_breaks_the_attestation(signer: CryptoSigner) -> None:
    facts = _facts(signer)
    assert facts.version is not None
    tags = {**facts.version.tags, "sluice.provenance": "sha256:" + "0" * 64}
    lineage = build_lineage(replace(facts, version=replace(facts.version, tags=tags)))
    assert _broken(lineage).kind == "attestation"
    assert "the run's envelope was replaced" in lineage.broken.detail


def test_version_whose_artifact_is_not_the_pinned_one_breaks_it(signer: CryptoSigner) -> None:
    lineage = build_lineage(_facts(signer, mapped_uri="mlflow-artifacts:/other"))
    assert _broken(lineage).kind == "version"
    assert "maps to mlflow-artifacts:/other, not the pinned" in lineage.broken.detail


def test_unregistered_version_breaks_it(signer: CryptoSigner) -> None:
    lineage = build_lineage(_facts(signer, version=None, mapped_uri=None, attestation=None))
    assert _broken(lineage).kind == "version"
    assert lineage.broken.detail == f"{MODEL} v2 is not in the registry"


def test_a_builder_the_environment_does_not_allow_breaks_the_attestation(
    signer: CryptoSigner,
) -> None:
    """The environment's builders (its provenance policy) hold in the lineage as in a
    proposal: an envelope built by `local` is not a CI build."""
    lineage = build_lineage(_facts(signer, builders=("https://github.com/acme/*",)))
    assert _broken(lineage).kind == "attestation"
    assert "builder check failed: built by local" in lineage.broken.detail
