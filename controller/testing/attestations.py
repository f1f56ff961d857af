"""An attestation store in memory: each version's envelope and its artifact's file digests.

Why it exists: a service test of verification (a proposal refusing a forged version) should
not need a tracking server. :meth:`record` plays training; :meth:`tamper` plays someone
rewriting a file in the artifact store after the version was signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.ports import AttestationStore

__all__ = ["MemoryAttestations"]


class MemoryAttestations:
    """Envelopes and artifact files by (model, version)."""

    def __init__(self) -> None:
        self._envelopes: dict[tuple[str, int], bytes] = {}
        self._files: dict[tuple[str, int], dict[str, bytes]] = {}

    def record(
        self, name: str, version: int, files: Mapping[str, bytes], envelope: bytes | None
    ) -> None:
        """Store a version's artifact files and (if any) its envelope."""
        self._files[(name, version)] = dict(files)
        if envelope is not None:
            self._envelopes[(name, version)] = envelope

    def tamper(self, name: str, version: int, path: str, content: bytes) -> None:
        """Replace (or add) one file of a version's artifact."""
        self._files[(name, version)][path] = content

    def attestation(self, name: str, version: int) -> bytes | None:
        return self._envelopes.get((name, version))

    def artifact_digests(self, name: str, version: int) -> dict[str, str]:
        return {
            path: hashlib.sha256(content).hexdigest()
            for path, content in self._files.get((name, version), {}).items()
        }


if TYPE_CHECKING:  # mypy holds the fake to the port it stands in for
    _port: type[AttestationStore] = MemoryAttestations
