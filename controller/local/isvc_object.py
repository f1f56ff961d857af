"""An applied InferenceService as the Kubernetes API returns it.

Why a module of its own: the local runtime (:mod:`controller.local.applied`) and the tests'
:class:`~controller.testing.cluster.InstantCluster` both keep an applied manifest with the
generation and ``status`` KServe gave it, and both show it to readers written for a cluster
(Argo CD's health check, :func:`~controller.backends.kubernetes_target.observation_from`): the
object they read is built here once, so that the fake cannot drift from the emulator.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AppliedInferenceService"]


class AppliedInferenceService:
    """A mixin of a dataclass holding an applied InferenceService's ``document``,
    ``generation`` and ``status``: its name, namespace and API object."""

    document: dict[str, Any]
    generation: int
    status: dict[str, Any]

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return str(self.document["metadata"]["name"])

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (``default`` when the overlay sets none)."""
        return str(self.document["metadata"].get("namespace") or "default")

    def to_object(self) -> dict[str, Any]:
        """The InferenceService as the Kubernetes API would return it."""
        metadata = dict(self.document.get("metadata", {}), generation=self.generation)
        return {
            "apiVersion": self.document.get("apiVersion", "serving.kserve.io/v1beta1"),
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": self.document.get("spec", {}),
            "status": self.status,
        }
