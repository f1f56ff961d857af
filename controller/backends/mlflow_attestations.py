"""The :class:`~controller.ports.AttestationStore` of an MLflow registry.

A version's attestation is ``provenance.intoto.jsonl`` at the top of the run that registered
it; its artifact is whatever the registry's download URI for the version serves now, fetched
whole and hashed file by file (the bytes a model server would load). MLflow's own client
reads both, so any artifact store MLflow reads (proxied, ``s3://``, ``file://``) works.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from controller.backends.mlflow_errors import registry_errors
from controller.provenance.statement import ATTESTATION_ARTIFACT, file_digests

__all__ = ["MlflowAttestations"]


class MlflowAttestations:
    """Attestations and artifact digests of the versions in one MLflow registry."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def _client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def attestation(self, name: str, version: int) -> bytes | None:
        """The envelope logged with the version's run, or None when it logged none."""
        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            client = self._client()
            run_id = client.get_model_version(name, str(version)).run_id
            if not run_id:
                return None
            names = {str(artifact.path) for artifact in client.list_artifacts(run_id)}
            if ATTESTATION_ARTIFACT not in names:
                return None
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(run_id, ATTESTATION_ARTIFACT, tmp)
                return Path(path).read_bytes()

    def artifact_digests(self, name: str, version: int) -> dict[str, str]:
        """The sha256 of every file the registry serves for the version now."""
        import mlflow.artifacts

        with registry_errors(self.tracking_uri, f"version {version} of model {name!r}"):
            uri = self._client().get_model_version_download_uri(name, str(version))
            with tempfile.TemporaryDirectory() as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri
                )
                return file_digests(Path(local))
