"""Recording and reading a version's evidence through the ports, the two calls to wire.

The rollout records a piece when its event happens (the Actuator at a promotion, with
``Promote.results`` and the step's analysis record: :func:`~controller.evidence.statement.
canary_body`); a production proposal reads and checks them all. Both read the version's
subjects the same way, from the :class:`~controller.ports.AttestationStore`: the artifact as
the registry serves it now, and its provenance envelope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from controller.evidence.signing import evidence_line
from controller.evidence.statement import EvidenceKind, build_evidence, version_subjects
from controller.evidence.verify import EvidenceCheck, verify_evidence

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner, Key

    from controller.ports import AttestationStore, EvidenceStore

__all__ = ["check_evidence", "record_evidence", "served_subjects"]


def served_subjects(attestations: AttestationStore, model: str, version: int) -> dict[str, str]:
    """The version's evidence subjects as served now: its artifact files and provenance."""
    return version_subjects(
        attestations.artifact_digests(model, version), attestations.attestation(model, version)
    )


def record_evidence(
    store: EvidenceStore,
    attestations: AttestationStore,
    signer: CryptoSigner,
    *,
    kind: EvidenceKind,
    body: Mapping[str, Any],
    environment: str,
    model: str,
    version: int,
    controller: str,
    now: float,
) -> str:
    """Build, sign and keep one piece of evidence for ``model`` v``version``; returns the
    envelope's digest (the tag's value)."""
    statement = build_evidence(
        kind=kind,
        body=body,
        environment=environment,
        model=model,
        version=version,
        subjects=served_subjects(attestations, model, version),
        controller=controller,
        now=now,
    )
    line = evidence_line(statement, signer)
    return store.record(model, version, line, kind=kind, environment=environment)


def check_evidence(
    store: EvidenceStore,
    attestations: AttestationStore,
    *,
    model: str,
    version: int,
    trusted_keys_by_env: Mapping[str, Sequence[Key]],
) -> list[EvidenceCheck]:
    """Every piece of the version's evidence, checked against its bytes as served now."""
    return verify_evidence(
        store.evidence(model, version),
        store.evidence_tags(model, version),
        trusted_keys_by_env=trusted_keys_by_env,
        subjects=served_subjects(attestations, model, version),
        model=model,
        version=version,
    )
