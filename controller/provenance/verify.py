"""Verifying a version's attestation against the artifact the registry serves now.

The chain is checked link by link, and the first link that breaks is the answer:

1. ``attestation``: the version has a ``provenance.intoto.jsonl`` that is a DSSE envelope of
   an in-toto Statement v1;
2. ``signature``: a trusted public key signed it (an unsigned envelope fails here);
3. ``builder``: the statement's builder is an allowed one (exact, or an ``fnmatch`` pattern
   such as ``https://github.com/org/repo/actions/runs/*``; no builders given allows any);
4. ``subjects``: every file of the artifact as served hashes to its signed subject, and no
   file is missing or added.

:func:`verify_attestation` is pure (the served files come in as digests);
:func:`verify_version` reads both through an :class:`~controller.ports.AttestationStore`.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.signer import Key

from controller.provenance.signing import PAYLOAD_TYPE
from controller.provenance.statement import validate_statement

if TYPE_CHECKING:
    from controller.ports import AttestationStore

__all__ = ["Link", "Verification", "verify_attestation", "verify_version"]

Link = Literal["attestation", "signature", "builder", "subjects"]


@dataclass(frozen=True)
class Verification:
    """The result: verified, or the first ``failed`` link and why, in one line."""

    verified: bool
    reason: str
    failed: Link | None = None
    keyid: str | None = None
    builder: str | None = None
    statement: Mapping[str, Any] = field(default_factory=dict)

    def line(self, what: str) -> str:
        """One line for a person: ``what`` (e.g. "fraud-detector v3") and the outcome."""
        if self.verified:
            return f"{what}: provenance verified ({self.reason})"
        return f"{what}: provenance {self.failed} check failed: {self.reason}"


def _failed(link: Link, reason: str, **known: Any) -> Verification:
    return Verification(verified=False, reason=reason, failed=link, **known)


def _envelope(text: bytes) -> Envelope | str:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        return f"expected one DSSE envelope line, found {len(lines)}"
    try:
        envelope = Envelope.from_dict(json.loads(lines[0]))
    except (ValueError, KeyError, TypeError, FormatError):
        return "the attestation is not a DSSE envelope"
    if envelope.payload_type != PAYLOAD_TYPE:
        return f"the envelope's payload type is {envelope.payload_type!r}, not {PAYLOAD_TYPE!r}"
    return envelope


def _subjects(statement: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(subject.get("name")): str(subject.get("digest", {}).get("sha256"))
        for subject in statement.get("subject", [])
    }


def _subject_problem(signed: Mapping[str, str], served: Mapping[str, str]) -> str | None:
    for name in sorted(set(signed) | set(served)):
        if name not in served:
            return f"{name} is attested but the artifact no longer has it"
        if name not in signed:
            return f"{name} is in the artifact but not in the attestation"
        if signed[name] != served[name]:
            return (
                f"{name} has sha256 {served[name][:12]}… as served, "
                f"{signed[name][:12]}… as signed: the artifact changed after it was signed"
            )
    return None


def verify_attestation(
    attestation: bytes | None,
    *,
    trusted_keys: Sequence[Key],
    builders: Sequence[str],
    served: Mapping[str, str],
) -> Verification:
    """Check the attestation link by link (see the module doc); ``served`` maps each file of
    the artifact as the registry serves it now to its sha256 (hex)."""
    if attestation is None:
        return _failed("attestation", "the version has no provenance.intoto.jsonl")
    envelope = _envelope(attestation)
    if isinstance(envelope, str):
        return _failed("attestation", envelope)
    if not envelope.signatures:
        return _failed("signature", "the attestation is unsigned (no signing key in training)")
    if not trusted_keys:
        return _failed("signature", "no trusted public key was given")
    try:
        accepted = envelope.verify(list(trusted_keys), 1)
    except VerificationError:
        signers = ", ".join(sorted(keyid[:12] for keyid in envelope.signatures))
        return _failed("signature", f"no trusted key signed it (signed by key id {signers}…)")
    keyid = next(iter(accepted))
    try:
        statement = json.loads(envelope.payload)
        validate_statement(statement)
    except ValueError as exc:
        return _failed("attestation", f"the signed payload is not an in-toto Statement: {exc}")
    builder = str(statement.get("predicate", {}).get("runDetails", {}).get("builder", {}).get("id"))
    known = {"keyid": keyid, "builder": builder, "statement": statement}
    if builders and not any(fnmatch.fnmatchcase(builder, allowed) for allowed in builders):
        return _failed("builder", f"built by {builder}, not an allowed builder", **known)
    problem = _subject_problem(_subjects(statement), served)
    if problem is not None:
        return _failed("subjects", problem, **known)
    reason = f"{len(served)} files match, signed by key {keyid[:12]}…, built by {builder}"
    return Verification(verified=True, reason=reason, **known)


def verify_version(
    store: AttestationStore,
    name: str,
    version: int,
    *,
    trusted_keys: Sequence[Key],
    builders: Sequence[str],
) -> Verification:
    """Verify a registered version's attestation against its artifact as served now."""
    attestation = store.attestation(name, version)
    if attestation is None:
        return verify_attestation(None, trusted_keys=trusted_keys, builders=builders, served={})
    served = store.artifact_digests(name, version)
    return verify_attestation(
        attestation, trusted_keys=trusted_keys, builders=builders, served=served
    )
