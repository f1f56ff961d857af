"""The rollout's evidence recorder: signs what a promotion or a passed shadow phase earned.

The Actuator records a piece when its event's commit lands (the promotion, the end of a passed
shadow phase) and, once the promoted version serves everything, makes sure again before it
moves the champion alias: the step that follows a promotion is decided pass after pass until
it is done, so a controller killed between a commit and its record records on a later pass.
Each time the body comes from the commit (:mod:`controller.rollout.evidence_trailer`), and
:meth:`EvidenceRecorder.ensure` records it only when the version's tag does not already name
an envelope of this body signed with this controller's key: a piece is recorded once however
often it is ensured, by whichever controller holds the release's lease.

Only the environment's own controller key signs (``SLUICE_EVIDENCE_KEY`` or
``SLUICE_EVIDENCE_KEY_FILE``, :func:`~controller.evidence.signing.load_evidence_signer`);
without one a rollout records nothing and says so once (:func:`unrecorded_note`), as it does
when its key is not among those the environment trusts (:func:`untrusted_note`): what it
records would not verify.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError

from controller.evidence.record import record_evidence
from controller.evidence.signing import (
    EVIDENCE_KEY_ENV,
    EVIDENCE_KEY_FILE_ENV,
    load_evidence_signer,
)
from controller.evidence.statement import evidence_tag
from controller.provenance.signing import envelope_digest
from controller.rollout.evidence_trailer import CarriedEvidence

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner, Key

    from controller.manifests.environment import EnvironmentConfig
    from controller.ports import AttestationStore, EvidenceStore
    from controller.settings import Settings

__all__ = [
    "EvidenceRecorder",
    "recorder_from_settings",
    "signer_from_settings",
    "unrecorded_note",
    "untrusted_note",
]

_log = logging.getLogger("sluice.rollout")


@dataclass(frozen=True)
class EvidenceRecorder:
    """Where this controller keeps the evidence it signs, and its key."""

    store: EvidenceStore
    #: Where the version's artifact digests and provenance (the evidence's subjects) are read.
    attestations: AttestationStore
    signer: CryptoSigner
    #: Who records (the predicate's ``controller.id``): the controller's lease holder id.
    controller: str

    @property
    def keyid(self) -> str:
        """The id of the key this controller signs with."""
        return str(self.signer.public_key.keyid)

    def recorded(
        self, evidence: CarriedEvidence, *, environment: str, model: str, version: int
    ) -> bool:
        """The version's ``sluice.evidence.ENV.KIND`` tag names a logged envelope, signed with
        this controller's key, whose body is ``evidence``'s."""
        digest = self.store.evidence_tags(model, version).get(
            evidence_tag(environment, evidence.kind)
        )
        if digest is None:
            return False
        line = next(
            (
                line
                for line in self.store.evidence(model, version)
                if envelope_digest(line) == digest
            ),
            None,
        )
        return line is not None and self._signed_body(line, evidence.kind) == evidence.body

    def _signed_body(self, line: bytes, kind: str) -> Mapping[str, Any] | None:
        """The ``kind`` body of an envelope this controller's key signed; None otherwise."""
        try:
            envelope = Envelope.from_dict(json.loads(line))
            envelope.verify([self.signer.public_key], 1)
            body = json.loads(envelope.payload)["predicate"][kind]
        except (ValueError, KeyError, TypeError, FormatError, VerificationError):
            return None
        return body if isinstance(body, dict) else None

    def ensure(
        self,
        evidence: CarriedEvidence,
        *,
        environment: str,
        model: str,
        version: int,
        now: float,
    ) -> str | None:
        """Record ``evidence`` for ``model`` v``version`` unless it is recorded already;
        returns the new envelope's digest, None when nothing was recorded. A body that does
        not say pass is never signed (it is logged as the bug it would be)."""
        problem = evidence.problem()
        if problem is not None:
            _log.error(
                "not recording %s evidence of %s v%d in %s: %s",
                evidence.kind, model, version, environment, problem,
            )  # fmt: skip
            return None
        if self.recorded(evidence, environment=environment, model=model, version=version):
            return None
        digest = record_evidence(
            self.store, self.attestations, self.signer, kind=evidence.kind, body=evidence.body,
            environment=environment, model=model, version=version, controller=self.controller,
            now=now,
        )  # fmt: skip
        _log.info(
            "recorded %s evidence of %s v%d in %s (%s)",
            evidence.kind, model, version, environment, digest[:19],
        )  # fmt: skip
        return digest


def signer_from_settings(settings: Settings) -> CryptoSigner | None:
    """The signer of ``evidence_key`` (``SLUICE_EVIDENCE_KEY``, else the file
    ``SLUICE_EVIDENCE_KEY_FILE`` names); None without one. A key that cannot be read is a
    :class:`~controller.errors.ConfigError` naming the variable, never quoting the key."""
    env: dict[str, str] = {}
    if settings.evidence_key is not None:
        env[EVIDENCE_KEY_ENV] = settings.evidence_key.get_secret_value()
    if settings.evidence_key_file is not None:
        env[EVIDENCE_KEY_FILE_ENV] = str(settings.evidence_key_file)
    return load_evidence_signer(env)


def recorder_from_settings(
    settings: Settings, store: EvidenceStore, attestations: AttestationStore, *, controller: str
) -> EvidenceRecorder | None:
    """The recorder signing with :func:`signer_from_settings`'s key; None without one."""
    signer = signer_from_settings(settings)
    if signer is None:
        return None
    return EvidenceRecorder(store, attestations, signer, controller=controller)


def unrecorded_note(
    environment: EnvironmentConfig, recorder: EvidenceRecorder | None
) -> str | None:
    """What a rollout in ``environment`` says once when its evidence is not recorded: the
    environment trusts controller keys (``evidence:``) but this controller has none to sign
    with. None when there is nothing to say."""
    if recorder is not None or environment.evidence is None:
        return None
    return (
        f"evidence is not recorded in {environment.name}: its sluice.yaml names the keys "
        "that sign its evidence (evidence.controllerKeys), but this controller has none; set "
        f"{EVIDENCE_KEY_ENV} or {EVIDENCE_KEY_FILE_ENV} to the private key (`sluice "
        "provenance keygen` writes a pair)"
    )


def untrusted_note(
    environment: EnvironmentConfig, recorder: EvidenceRecorder, trusted: Sequence[Key]
) -> str | None:
    """What a rollout in ``environment`` says once when this controller's key is not among
    the keys its ``evidence.controllerKeys`` name (``trusted``): what it records will not
    verify. None when it is, or when the environment names none (it trusts no evidence yet,
    by its own choice)."""
    if environment.evidence is None or recorder.keyid in {key.keyid for key in trusted}:
        return None
    return (
        f"evidence recorded in {environment.name} will not verify: this controller signs with "
        f"key {recorder.keyid[:12]}…, which is not among evidence.controllerKeys in its "
        "sluice.yaml; commit this key's public half there, or give the controller the key "
        "whose public half is"
    )
