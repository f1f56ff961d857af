"""The controller's evidence key, and a statement signed into the line that is logged.

Each environment's controller signs the evidence it records with its own Ed25519 key (a
production controller's key is not staging's, so staging cannot sign production's approval):
``SLUICE_EVIDENCE_KEY`` holds the PEM text (a Kubernetes secret), or
``SLUICE_EVIDENCE_KEY_FILE`` names a file holding it, read as
:func:`controller.provenance.signing.load_signer` reads training's key (``sluice provenance
keygen`` writes a keypair). Unsigned evidence proves nothing, so there is no unsigned line
here: without a key the caller records nothing and says so. No error quotes a key's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from securesystemslib.signer import CryptoSigner

from controller.provenance.signing import envelope_line, load_signer, sign_statement

__all__ = ["EVIDENCE_KEY_ENV", "EVIDENCE_KEY_FILE_ENV", "evidence_line", "load_evidence_signer"]

#: The environment variable holding the controller's private evidence key (PEM text).
EVIDENCE_KEY_ENV = "SLUICE_EVIDENCE_KEY"
#: The environment variable naming a file that holds it.
EVIDENCE_KEY_FILE_ENV = "SLUICE_EVIDENCE_KEY_FILE"


def load_evidence_signer(env: Mapping[str, str]) -> CryptoSigner | None:
    """The signer of ``SLUICE_EVIDENCE_KEY`` (or ``SLUICE_EVIDENCE_KEY_FILE``); None when
    neither is set; a :class:`~controller.errors.ConfigError` naming the variable when the key
    cannot be read."""
    return load_signer(env, key_env=EVIDENCE_KEY_ENV, key_file_env=EVIDENCE_KEY_FILE_ENV)


def evidence_line(statement: Mapping[str, Any], signer: CryptoSigner) -> bytes:
    """The statement in a DSSE envelope signed by ``signer``, as one JSON Lines line."""
    return envelope_line(sign_statement(statement, signer))
