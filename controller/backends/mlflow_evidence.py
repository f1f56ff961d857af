"""The :class:`~controller.ports.EvidenceStore` of an MLflow registry.

A version's evidence lives with the run that registered it, beside its provenance:
``evidence/ENV/KIND.intoto.jsonl`` holds the latest envelope of each kind recorded in each
environment, and the version's tag ``sluice.evidence.ENV.KIND`` the digest of that line as it
was written. The tag is what makes a replaced or deleted artifact visible: the registry's tags
and the artifact store are edited by different people with different rights. MLflow's own
client writes and reads both, so any artifact store MLflow reads works.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from controller.backends.mlflow_errors import registry_errors
from controller.errors import ModelNotFound
from controller.evidence.statement import (
    EVIDENCE_DIR,
    TAG_PREFIX,
    evidence_artifact,
    evidence_tag,
)
from controller.provenance.signing import envelope_digest

__all__ = ["MlflowEvidence"]


class MlflowEvidence:
    """Evidence envelopes and their tags, for the versions of one MLflow registry."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _run_id(self, client: Any, name: str, version: int) -> str:
        run_id = client.get_model_version(name, str(version)).run_id
        if not run_id:
            raise ModelNotFound(
                f"version {version} of model {name!r} has no run to keep its evidence in; "
                "register versions from a run (training does)"
            )
        return str(run_id)

    def record(self, name: str, version: int, line: bytes, *, kind: str, environment: str) -> str:
        """Log ``line`` as ``evidence/ENV/KIND.intoto.jsonl`` of the version's run, then tag
        its digest on the version (a crash between the two leaves an untagged line, which
        verification reports, never a tag without its line)."""
        digest = envelope_digest(line)
        artifact = Path(evidence_artifact(environment, kind))
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            client = self._client()
            run_id = self._run_id(client, name, version)
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / artifact.name
                local.write_bytes(line)
                client.log_artifact(run_id, str(local), artifact.parent.as_posix())
            client.set_model_version_tag(
                name, str(version), evidence_tag(environment, kind), digest
            )
        return digest

    def evidence(self, name: str, version: int) -> list[bytes]:
        """Every ``evidence/*/*.intoto.jsonl`` of the version's run."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            client = self._client()
            run_id = self._run_id(client, name, version)
            top = {str(artifact.path) for artifact in client.list_artifacts(run_id)}
            if EVIDENCE_DIR not in top:
                return []
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(client.download_artifacts(run_id, EVIDENCE_DIR, tmp))
                return [path.read_bytes() for path in sorted(local.rglob("*.intoto.jsonl"))]

    def evidence_tags(self, name: str, version: int) -> dict[str, str]:
        """The version's ``sluice.evidence.*`` tags."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            tags = self._client().get_model_version(name, str(version)).tags or {}
        return {str(k): str(v) for k, v in tags.items() if str(k).startswith(TAG_PREFIX)}
