"""One contract, two evidence stores: MlflowEvidence on the session's MLflow server (the
envelope an artifact of the version's run, its digest a version tag) and the in-memory
MemoryEvidence keep, replace and list evidence alike; and on both, an envelope replaced or
deleted behind the tag's back is caught by verification."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from securesystemslib.signer import CryptoSigner
from support.registry import register_version

from controller.backends.mlflow_evidence import MlflowEvidence
from controller.errors import ModelNotFound
from controller.evidence.signing import evidence_line
from controller.evidence.statement import (
    build_evidence,
    canary_body,
    evidence_artifact,
    soak_body,
    version_subjects,
)
from controller.evidence.verify import verify_evidence
from controller.provenance.signing import envelope_digest
from controller.testing.evidence import MemoryEvidence

SUBJECTS = version_subjects({"MLmodel": "a" * 64, "model.pkl": "b" * 64}, None)
SIGNER = CryptoSigner.generate_ed25519()


@dataclass
class Store:
    """An evidence store under test, a registered version in it, and how someone with access
    to the artifact store replaces or deletes an envelope without touching its tag."""

    under_test: MlflowEvidence | MemoryEvidence
    name: str
    version: int
    replace: Callable[[str, str, bytes], None]
    delete: Callable[[str, str], None]


def _mlflow_store(tracking_uri: str, artifacts_dir: Path) -> Store:
    name = f"evidence-{uuid.uuid4().hex[:8]}"
    version = register_version(tracking_uri, name, alias=None)
    client = MlflowClient(tracking_uri)
    run_id = client.get_model_version(name, str(version)).run_id
    root = client.get_run(run_id).info.artifact_uri.removeprefix("mlflow-artifacts:/")

    def on_disk(environment: str, kind: str) -> Path:
        return artifacts_dir / root / evidence_artifact(environment, kind)

    def replace(environment: str, kind: str, line: bytes) -> None:
        on_disk(environment, kind).write_bytes(line)

    def delete(environment: str, kind: str) -> None:
        on_disk(environment, kind).unlink()

    return Store(MlflowEvidence(tracking_uri), name, version, replace, delete)


@pytest.fixture(params=[pytest.param("mlflow", marks=pytest.mark.slow), "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    """MLflow (the session's server, artifacts proxied to a directory) or the fake."""
    if request.param == "mlflow":
        server = request.getfixturevalue("mlflow_server")
        return _mlflow_store(server.tracking_uri, server.artifacts_dir)
    fake = MemoryEvidence()
    name = f"evidence-{uuid.uuid4().hex[:8]}"
    fake.add_version(name, 1)
    return Store(
        fake,
        name,
        1,
        lambda env, kind, line: fake.replace(name, 1, kind=kind, environment=env, line=line),
        lambda env, kind: fake.delete(name, 1, kind=kind, environment=env),
    )


def _line(store: Store, kind: str = "canary", environment: str = "staging", at: float = 0) -> bytes:
    body = (
        canary_body(steps=(10, 100), promoted_from=10, results=(), record=None)
        if kind == "canary"
        else soak_body(start=at, end=at + 3600, queries=(), alerts=())
    )
    statement = build_evidence(
        kind="canary" if kind == "canary" else "soak",
        body=body,
        environment=environment,
        model=store.name,
        version=store.version,
        subjects=SUBJECTS,
        controller="contract test",
        now=1_796_000_000 + at,
    )
    return evidence_line(statement, SIGNER)


def _checks(store: Store) -> list[tuple[str, str, bool, str | None]]:
    checks = verify_evidence(
        store.under_test.evidence(store.name, store.version),
        store.under_test.evidence_tags(store.name, store.version),
        trusted_keys_by_env={"staging": [SIGNER.public_key], "production": [SIGNER.public_key]},
        subjects=SUBJECTS,
        model=store.name,
        version=store.version,
    )
    return [(c.environment, c.kind, c.verified, c.failed) for c in checks]


def test_a_version_without_evidence_has_none(store: Store) -> None:
    assert store.under_test.evidence(store.name, store.version) == []
    assert store.under_test.evidence_tags(store.name, store.version) == {}


def test_recorded_evidence_is_listed_with_its_digest_tagged(store: Store) -> None:
    canary, soak = _line(store), _line(store, "soak")
    digest = store.under_test.record(
        store.name, store.version, canary, kind="canary", environment="staging"
    )
    assert digest == envelope_digest(canary)
    store.under_test.record(store.name, store.version, soak, kind="soak", environment="staging")
    assert sorted(store.under_test.evidence(store.name, store.version)) == sorted([canary, soak])
    assert store.under_test.evidence_tags(store.name, store.version) == {
        "sluice.evidence.staging.canary": digest,
        "sluice.evidence.staging.soak": envelope_digest(soak),
    }
    assert _checks(store) == [
        ("staging", "canary", True, None),
        ("staging", "soak", True, None),
    ]


def test_a_later_record_of_the_same_kind_replaces_the_earlier(store: Store) -> None:
    first, longer = _line(store, "soak"), _line(store, "soak", at=7200)
    store.under_test.record(store.name, store.version, first, kind="soak", environment="staging")
    store.under_test.record(store.name, store.version, longer, kind="soak", environment="staging")
    assert store.under_test.evidence(store.name, store.version) == [longer]
    assert store.under_test.evidence_tags(store.name, store.version) == {
        "sluice.evidence.staging.soak": envelope_digest(longer)
    }


def test_an_envelope_replaced_behind_the_tags_back_is_caught(store: Store) -> None:
    store.under_test.record(
        store.name, store.version, _line(store), kind="canary", environment="staging"
    )
    store.replace("staging", "canary", _line(store, at=60))  # validly signed, another event
    assert _checks(store) == [
        ("staging", "canary", False, "tag"),
        ("staging", "canary", False, "tag"),
    ]


def test_an_envelope_deleted_behind_the_tags_back_is_caught(store: Store) -> None:
    store.under_test.record(
        store.name, store.version, _line(store), kind="canary", environment="staging"
    )
    store.under_test.record(
        store.name, store.version, _line(store, "soak"), kind="soak", environment="staging"
    )
    store.delete("staging", "canary")
    assert _checks(store) == [
        ("staging", "canary", False, "tag"),
        ("staging", "soak", True, None),
    ]


def test_an_unknown_version_is_model_not_found(store: Store) -> None:
    with pytest.raises(ModelNotFound):
        store.under_test.evidence(store.name, store.version + 40)
    with pytest.raises(ModelNotFound):
        store.under_test.record(
            store.name, store.version + 40, _line(store), kind="canary", environment="staging"
        )
