"""Retraining through the forge: the ``repository_dispatch`` the train workflow runs on."""

from __future__ import annotations

import re

from controller.domain import RetrainRequest
from controller.ports import Forge

__all__ = ["DISPATCH_EVENT", "NAME_PATTERN", "ForgeRetrain", "dispatch_payload"]

#: The ``repository_dispatch`` type ``.github/workflows/train.yml`` listens for.
DISPATCH_EVENT = "retrain"
#: Model and environment names the train workflow accepts (it checks the same pattern).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def dispatch_payload(request: RetrainRequest, requested_at: str = "") -> dict[str, object]:
    """The ``client_payload`` the train workflow reads: model, environment, features, since, and
    (from :class:`~controller.retrain.retrainer.Retrainer`) ``requested_at``, the ``at`` of the
    record the workflow's ``sluice retrain report`` finishes."""
    payload: dict[str, object] = {
        "model": request.model,
        "environment": request.environment,
        "features": list(request.features),
        "since": request.since,
    }
    if requested_at:
        payload["requested_at"] = requested_at
    return payload


class ForgeRetrain:
    """Retrain through the forge: the ``retrain`` dispatch that the train workflow runs on."""

    def __init__(self, forge: Forge) -> None:
        self.forge = forge

    def start(self, request: RetrainRequest) -> str:
        """Send the dispatch; the workflow trains, registers and proposes."""
        return self.start_requested_at(request, "")

    def start_requested_at(self, request: RetrainRequest, requested_at: str) -> str:
        """Send the dispatch with ``requested_at``, which the workflow's ``sluice retrain
        report`` passes back, so its outcome lands on this retraining's record."""
        payload = dispatch_payload(request, requested_at)
        self.forge.dispatch(DISPATCH_EVENT, payload)
        return f"sent repository_dispatch {DISPATCH_EVENT} {payload}"
