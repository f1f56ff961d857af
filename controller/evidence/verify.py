"""Verifying a version's evidence: each piece checked link by link, the first broken link named.

For every ``sluice.evidence.ENV.KIND`` tag on the version, and every envelope logged:

1. ``tag``: the tag's digest is the digest of a logged envelope (one deleted or replaced after
   it was recorded breaks here), and every logged envelope is named by a tag (one added by
   hand breaks here);
2. ``envelope``: it is a DSSE envelope of an in-toto statement;
3. ``signature``: a key trusted *for that environment* signed it (staging's key cannot sign
   production's approval; an unsigned envelope breaks here);
4. ``statement``: it is an in-toto Statement v1 of predicate type
   ``https://sluice.dev/evidence/v1`` whose predicate meets the schema and names the tag's
   environment and kind, and this model and version;
5. ``subjects``: its subjects are the version's artifact files as served now and its
   provenance envelope (:func:`~controller.evidence.statement.version_subjects`): evidence
   earned by other bytes is not this version's.

:func:`verify_evidence` is pure: the lines, tags, keys and subjects come in as values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.signer import Key

from controller.evidence.statement import PREDICATE_TYPE, TAG_PREFIX, predicate_problem
from controller.provenance.signing import PAYLOAD_TYPE, envelope_digest
from controller.provenance.statement import validate_statement

__all__ = ["EvidenceCheck", "Link", "verify_evidence"]

Link = Literal["tag", "envelope", "signature", "statement", "subjects"]
_UNKNOWN = "?"


@dataclass(frozen=True)
class EvidenceCheck:
    """One piece of evidence checked: verified, or the first ``failed`` link and why."""

    environment: str
    kind: str
    verified: bool
    reason: str
    failed: Link | None = None
    digest: str | None = None
    keyid: str | None = None
    #: The signed predicate, once the statement link held.
    predicate: Mapping[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for a person: "canary in staging: verified (…)"."""
        what = f"{self.kind} in {self.environment}"
        if self.verified:
            return f"{what}: verified ({self.reason})"
        return f"{what}: {self.failed} check failed: {self.reason}"


def _split_tag(tag: str) -> tuple[str, str]:
    environment, _, kind = tag.removeprefix(TAG_PREFIX).rpartition(".")
    return environment or _UNKNOWN, kind or _UNKNOWN


def _envelope(line: bytes) -> Envelope | str:
    try:
        envelope = Envelope.from_dict(json.loads(line))
    except (ValueError, KeyError, TypeError, FormatError):
        return "the evidence is not a DSSE envelope"
    if envelope.payload_type != PAYLOAD_TYPE:
        return f"the envelope's payload type is {envelope.payload_type!r}, not {PAYLOAD_TYPE!r}"
    return envelope


def _claimed(line: bytes) -> tuple[str, str]:
    """The environment and kind an envelope's payload claims, unverified (for naming it)."""
    envelope = _envelope(line)
    if isinstance(envelope, str):
        return _UNKNOWN, _UNKNOWN
    try:
        predicate = json.loads(envelope.payload).get("predicate", {})
        return str(predicate.get("environment", _UNKNOWN)), str(predicate.get("kind", _UNKNOWN))
    except (ValueError, AttributeError):
        return _UNKNOWN, _UNKNOWN


def _statement_problem(
    statement: Any, *, environment: str, kind: str, model: str, version: int
) -> str | None:
    try:
        validate_statement(statement)
    except ValueError as exc:
        return f"the signed payload is not an in-toto Statement: {exc}"
    if statement.get("predicateType") != PREDICATE_TYPE:
        return f"its predicate type is {statement.get('predicateType')!r}, not {PREDICATE_TYPE}"
    predicate = statement.get("predicate")
    problem = predicate_problem(predicate)
    if problem is not None:
        return f"its predicate does not meet the schema: {problem}"
    claimed = (predicate["environment"], predicate["kind"])
    if claimed != (environment, kind):
        return f"it is {claimed[1]} evidence of {claimed[0]}, tagged as {kind} of {environment}"
    if (predicate["model"], predicate["version"]) != (model, version):
        return f"it is evidence of {predicate['model']} v{predicate['version']}, not this version"
    return None


def _subject_problem(signed: Any, expected: Mapping[str, str]) -> str | None:
    subjects = {
        str(subject.get("name")): str(subject.get("digest", {}).get("sha256"))
        for subject in signed or []
    }
    for name in sorted(set(subjects) | set(expected)):
        if name not in expected:
            return f"{name} is a subject but the version no longer has it"
        if name not in subjects:
            return f"{name} is the version's but not a subject: earned by other bytes"
        if subjects[name] != expected[name]:
            return f"{name} has sha256 {expected[name][:12]}… now, {subjects[name][:12]}… as signed"
    return None


def _check(
    line: bytes,
    digest: str,
    *,
    environment: str,
    kind: str,
    trusted_keys_by_env: Mapping[str, Sequence[Key]],
    subjects: Mapping[str, str],
    model: str,
    version: int,
) -> EvidenceCheck:
    def failed(link: Link, reason: str, **known: Any) -> EvidenceCheck:
        return EvidenceCheck(environment, kind, False, reason, link, digest, **known)

    envelope = _envelope(line)
    if isinstance(envelope, str):
        return failed("envelope", envelope)
    if not envelope.signatures:
        return failed("signature", "the envelope is unsigned")
    keys = list(trusted_keys_by_env.get(environment, ()))
    if not keys:
        return failed("signature", f"no key is trusted for {environment}'s evidence")
    try:
        keyid = next(iter(envelope.verify(keys, 1)))
    except VerificationError:
        signers = ", ".join(sorted(keyid[:12] for keyid in envelope.signatures))
        return failed(
            "signature", f"not signed by a key trusted for {environment} (key id {signers}…)"
        )
    try:
        statement = json.loads(envelope.payload)
    except ValueError:
        return failed("statement", "the signed payload is not JSON", keyid=keyid)
    problem = _statement_problem(
        statement, environment=environment, kind=kind, model=model, version=version
    )
    if problem is not None:
        return failed("statement", problem, keyid=keyid)
    known = {"keyid": keyid, "predicate": statement["predicate"]}
    problem = _subject_problem(statement.get("subject"), subjects)
    if problem is not None:
        return failed("subjects", problem, **known)
    reason = f"signed by {environment}'s key {keyid[:12]}…, {len(subjects)} subjects match"
    return EvidenceCheck(environment, kind, True, reason, None, digest, **known)


def verify_evidence(
    lines: Sequence[bytes],
    tags: Mapping[str, str],
    *,
    trusted_keys_by_env: Mapping[str, Sequence[Key]],
    subjects: Mapping[str, str],
    model: str,
    version: int,
) -> list[EvidenceCheck]:
    """Check every piece of the version's evidence (see the module doc): one result per tag,
    in tag order, then one per logged envelope no tag names.

    ``lines`` are the envelopes as logged, ``tags`` the version's ``sluice.evidence.*`` tags,
    ``trusted_keys_by_env`` each environment's controller keys, ``subjects`` the version's
    :func:`~controller.evidence.statement.version_subjects` as served now.
    """
    logged = {envelope_digest(line): line for line in lines}
    checks: list[EvidenceCheck] = []
    for tag, digest in sorted(tags.items()):
        if not tag.startswith(TAG_PREFIX):
            continue
        environment, kind = _split_tag(tag)
        line = logged.get(digest)
        if line is None:
            checks.append(
                EvidenceCheck(
                    environment,
                    kind,
                    False,
                    f"the tag names envelope {digest[:19]}…, which is not logged: it was "
                    "deleted or replaced",
                    "tag",
                    digest,
                )
            )
            continue
        checks.append(
            _check(
                line,
                digest,
                environment=environment,
                kind=kind,
                trusted_keys_by_env=trusted_keys_by_env,
                subjects=subjects,
                model=model,
                version=version,
            )
        )
    named = set(tags.values())
    for digest, line in sorted(logged.items()):
        if digest not in named:
            environment, kind = _claimed(line)
            checks.append(
                EvidenceCheck(
                    environment,
                    kind,
                    False,
                    f"envelope {digest[:19]}… is logged but no tag names it: it was added or "
                    "replaced by hand",
                    "tag",
                    digest,
                )
            )
    return checks
