"""An evidence store in memory: each version's envelope lines by artifact path, and its tags.

Why it exists: the evaluation of a production proposal (which evidence is there, which was
forged) should be testable without a tracking server. :meth:`add_version` plays training (a
version it was not told of is ModelNotFound, as in MLflow); :meth:`record` plays the
controller; :meth:`replace` and :meth:`delete` play someone editing the run's artifacts by
hand, after the tag was written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.errors import ModelNotFound
from controller.evidence.statement import TAG_PREFIX, evidence_artifact, evidence_tag
from controller.provenance.signing import envelope_digest

if TYPE_CHECKING:
    from controller.ports import EvidenceStore

__all__ = ["MemoryEvidence"]


class MemoryEvidence:
    """Envelope lines and ``sluice.evidence.*`` tags by (model, version)."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, int], dict[str, bytes]] = {}
        self._tags: dict[tuple[str, int], dict[str, str]] = {}

    def add_version(self, name: str, version: int) -> None:
        """Make ``name`` v``version`` known, with no evidence yet."""
        self._files.setdefault((name, version), {})
        self._tags.setdefault((name, version), {})

    def _known(self, name: str, version: int) -> None:
        if (name, version) not in self._files:
            raise ModelNotFound(f"version {version} of model {name!r} is not registered")

    def record(self, name: str, version: int, line: bytes, *, kind: str, environment: str) -> str:
        self._known(name, version)
        digest = envelope_digest(line)
        self._files.setdefault((name, version), {})[evidence_artifact(environment, kind)] = line
        self._tags.setdefault((name, version), {})[evidence_tag(environment, kind)] = digest
        return digest

    def evidence(self, name: str, version: int) -> list[bytes]:
        self._known(name, version)
        return list(self._files[(name, version)].values())

    def evidence_tags(self, name: str, version: int) -> dict[str, str]:
        self._known(name, version)
        tags = self._tags[(name, version)]
        return {tag: value for tag, value in tags.items() if tag.startswith(TAG_PREFIX)}

    def replace(self, name: str, version: int, *, kind: str, environment: str, line: bytes) -> None:
        """Overwrite an envelope's artifact without touching its tag."""
        self._files.setdefault((name, version), {})[evidence_artifact(environment, kind)] = line

    def delete(self, name: str, version: int, *, kind: str, environment: str) -> None:
        """Remove an envelope's artifact, leaving its tag."""
        self._files.get((name, version), {}).pop(evidence_artifact(environment, kind), None)


if TYPE_CHECKING:  # mypy holds the fake to the port it stands in for
    _port: type[EvidenceStore] = MemoryEvidence
