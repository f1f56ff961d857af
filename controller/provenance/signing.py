"""Signing a statement as a DSSE envelope, and the Ed25519 keys that do it.

The private key comes from the environment: ``SLUICE_SIGNING_KEY`` holds the PEM text (a CI
secret), or ``SLUICE_SIGNING_KEY_FILE`` names a file holding it. Public keys are PEM files,
committed to the GitOps repository per environment; a key's id is securesystemslib's (the
sha256 of its canonical form), the ``keyid`` the envelope's signature names. Without a private
key a statement is still recorded, in an envelope with no signature. No error here ever
quotes a key's text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from controller.errors import ConfigError

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "PAYLOAD_TYPE",
    "envelope_digest",
    "envelope_line",
    "generate_keypair",
    "load_key_options",
    "load_public_key",
    "load_signer",
    "sign_statement",
]

#: The environment variable holding the private key's PEM text (a CI secret).
KEY_ENV = "SLUICE_SIGNING_KEY"
#: The environment variable naming a file that holds it.
KEY_FILE_ENV = "SLUICE_SIGNING_KEY_FILE"
#: DSSE's payload type for in-toto statements.
PAYLOAD_TYPE = "application/vnd.in-toto+json"

_KEYGEN = "write a keypair with `sluice provenance keygen`"


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 keypair: the private key (PKCS#8 PEM) and the public key (PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _private_key(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{source} is not an unencrypted PEM private key; {_KEYGEN}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source} is not an Ed25519 key; {_KEYGEN}")
    return key


def load_signer(
    env: Mapping[str, str], *, key_env: str = KEY_ENV, key_file_env: str = KEY_FILE_ENV
) -> CryptoSigner | None:
    """The signer of ``SLUICE_SIGNING_KEY`` (or ``SLUICE_SIGNING_KEY_FILE``); None when
    neither is set. A key that cannot be read is a :class:`ConfigError` naming the variable.
    ``key_env`` and ``key_file_env`` name other variables (a controller's evidence key)."""
    text = env.get(key_env, "").strip()
    if text:
        key = _private_key(text.encode("utf-8"), key_env)
    elif env.get(key_file_env):
        path = Path(env[key_file_env])
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{key_file_env} names {path}, which cannot be read ({exc.strerror}); fix it"
            ) from None
        key = _private_key(pem, f"{key_file_env} ({path})")
    else:
        return None
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


def load_public_key(pem: bytes, source: str) -> SSlibKey:
    """A trusted public key from its PEM text; ``source`` names it in errors."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{source} is not a PEM public key; {_KEYGEN}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{source} is not an Ed25519 public key; {_KEYGEN}")
    return SSlibKey.from_crypto(key)


def load_key_options(paths: Iterable[Path]) -> list[SSlibKey]:
    """The public keys of the files a command's ``--key`` options name; a file that cannot be
    read, or is not an Ed25519 public key, is a :class:`ConfigError` naming the option."""
    keys = []
    for path in paths:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read --key {path} ({exc.strerror}); fix the path") from None
        keys.append(load_public_key(pem, f"--key {path}"))
    return keys


def sign_statement(statement: Mapping[str, Any], signer: CryptoSigner | None) -> Envelope:
    """The statement in a DSSE envelope, signed by ``signer`` (unsigned when None)."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    if signer is not None:
        envelope.sign(signer)
    return envelope


def envelope_line(envelope: Envelope) -> bytes:
    """The envelope as one JSON Lines line (``provenance.intoto.jsonl``'s content)."""
    return json.dumps(envelope.to_dict(), sort_keys=True, separators=(",", ":")).encode() + b"\n"


def envelope_digest(line: bytes) -> str:
    """``sha256:<hex>`` of an envelope's line: the tag a version carries."""
    return f"sha256:{hashlib.sha256(line).hexdigest()}"
