"""The soak watcher of ``sluice serve``, built from the settings (:mod:`controller.soak.watch`).

It runs only where it can sign: without ``SLUICE_EVIDENCE_KEY`` (or ``..._FILE``) there is no
soak evidence to record, so there is no watcher and one log line says why. Prometheus and the
target that names the serving revision are those of the rollouts (``--rollouts``), else the
status page's (Argo CD's cluster when ``SLUICE_ARGOCD_URL`` is set, else the local target);
one that cannot be built leaves the soak's checks unread, which holds a soak that has checks
and is logged once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry
from controller.commands.rollout_backends import TargetKind, build_metrics, build_target
from controller.errors import ConfigError
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.ports import MetricsSource, ReleaseRepository, Target
from controller.settings import Settings
from controller.soak.watch import SoakWatcher

__all__ = ["build_soak_watcher"]

log = logging.getLogger("sluice.serve")


def build_soak_watcher(
    settings: Settings,
    *,
    workspace: ReleaseRepository,
    registry: MlflowRegistry,
    target: TargetKind,
    environments: Sequence[str] | None = None,
) -> SoakWatcher | None:
    """The soak watcher, or None (logged) when no evidence key is set."""
    signer = load_evidence_signer(os.environ)
    if signer is None:
        log.info(
            "no %s: versions do not soak here (no soak evidence is recorded)", EVIDENCE_KEY_ENV
        )
        return None
    metrics: MetricsSource | None = None
    observed: Target | None = None
    try:
        metrics = build_metrics(settings, target)
        observed = build_target(settings, target)
    except ConfigError as exc:
        log.warning("soak checks cannot be read (%s); a soak with checks holds", exc.message)
    return SoakWatcher(
        workspace=workspace,
        registry=registry,
        evidence=MlflowEvidence(settings.mlflow_tracking_uri),
        attestations=MlflowAttestations(settings.mlflow_tracking_uri),
        signer=signer,
        controller=f"sluice-serve@{socket.gethostname()}",
        metrics=metrics,
        target=observed,
        environments=environments,
    )
