"""``sluice serve``: the long-running controller, composed from its parts.

It watches every release that the environments in Git declare, proposes when a release's
alias moves away from its pin (polling every interval; an MLflow webhook only wakes the loop
early), and serves the read-only status page at ``/`` (:mod:`controller.commands.status`),
``/healthz``, ``/metrics``, ``/hooks/mlflow`` and, with an Alertmanager
token, ``/hooks/alertmanager``, where drift alerts start retraining
(:mod:`controller.commands.retrain`), and, when configured, ``/v1/feedback`` and
``/v1/events`` into the prediction log (:mod:`controller.commands.feedback_route`,
:mod:`controller.commands.events`). With an evidence key (``SLUICE_EVIDENCE_KEY``) a thread
soaks the versions that serve 100 % in an environment another one promotes from with a
``require.soak``, and records their signed soak evidence (:mod:`controller.commands.soak`).
With ``--rollouts TARGET`` a second thread runs the
rollout reconcile for every watched release each interval, reporting into the same
``/metrics``. An environment with ``promotion:`` does not follow its alias: a thread of its
own proposes to it each version its upstream environment promoted, once the version's
evidence is complete (:mod:`controller.proposals.auto_propose`), and, with an evidence key
and GitHub, records the approval of each pull request into an environment that requires one
(:mod:`controller.proposals.approval_evidence`). ``--env`` restricts the
loops to the named environments. On SIGTERM or SIGINT the rollout loop ends its pass and
releases its leases, so another controller takes over its rollouts at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

from controller.backends.git_repo import GitWorkspace, Identity
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.events import build_events_route
from controller.commands.feedback_route import build_feedback_route
from controller.commands.kpi_series import build_kpi_series
from controller.commands.retrain import build_alertmanager_hook
from controller.commands.rollout_backends import (
    approval_lease,
    build_notifier,
    build_reconciler,
)
from controller.commands.soak import build_soak_watcher
from controller.commands.status import build_status_page
from controller.errors import ConfigError
from controller.evidence.signing import EVIDENCE_KEY_ENV, load_evidence_signer
from controller.ports import Forge
from controller.proposals.approval_evidence import ApprovalRecorder
from controller.proposals.auto_propose import AutoProposer
from controller.proposals.proposal_scan import ReleaseSnapshot
from controller.proposals.propose import ProposalRequest, ProposalResult, propose
from controller.redact import register_secret
from controller.rollout.loop import RolloutLoop
from controller.rollout.telemetry import RolloutMetrics
from controller.serve.server import ServeMetrics, SluiceServer, sluice_routes
from controller.serve.watch import WatchedModel, Watcher
from controller.settings import Settings

__all__ = ["build_watcher", "run_serve"]

log = logging.getLogger("sluice.serve")
#: How long a stop waits for the rollout loop's pass to end and its leases to be released
#: (within Kubernetes' default 30 s termination grace period).
_STOP_GRACE_SECONDS = 20.0


def build_watcher(
    snapshot: ReleaseSnapshot,
    propose_version: Callable[[ProposalRequest], object],
    *,
    interval_seconds: float,
    metrics: ServeMetrics,
) -> Watcher:
    """A watcher over the releases Git declares in the snapshot's environments, answering from
    one batched snapshot a pass (but those of environments with ``promotion:``, whose
    versions come by evidence); :class:`ConfigError` when there is nothing to watch."""
    releases = snapshot.watched()
    watched = [WatchedModel(w.model, w.alias, w.environment) for w in releases if not w.by_evidence]
    if not releases:
        where = f" in {', '.join(snapshot.environments)}" if snapshot.environments else ""
        raise ConfigError(
            f"no releases to watch{where}: add releases to manifests/overlays/ENV/sluice.yaml"
        )

    def on_change(release: WatchedModel, version: int) -> None:
        # The first look hands on every alias; a pin that already names it needs nothing.
        if snapshot.pinned_version(release.environment, release.model) == version:
            return
        log.info("%s: alias %s now names v%s; proposing", release, release.alias, version)
        propose_version(
            ProposalRequest(model=release.model, environment=release.environment, version=version)
        )

    return Watcher(snapshot.alias_version, on_change, watched, interval_seconds, observer=metrics)


def _invalidate_then(snapshot: ReleaseSnapshot, watcher: Watcher, model: str, alias: str) -> bool:
    snapshot.invalidate()
    return watcher.trigger(model, alias)


def _rollout_loop(
    settings: Settings,
    target: Literal["local", "kubernetes"] | None,
    remote: str,
    snapshot: ReleaseSnapshot,
    metrics: ServeMetrics,
    forge: Forge,
) -> RolloutLoop | None:
    """The rollout loop on ``target``, reporting into the same ``/metrics``; None when off."""
    if target is None:
        return None
    reconciler = build_reconciler(settings, target=target, remote=remote, forge=forge)
    reconciler.metrics = RolloutMetrics(metrics.registry)
    return RolloutLoop(
        reconciler,
        lambda: [(w.environment, w.model) for w in snapshot.watched()],
        settings.poll_interval_seconds,
        poll_seconds=settings.rollout_poll_interval_seconds,
        on_error=metrics.watch_error,
    )


def _approval_recorder(
    settings: Settings,
    workspace: GitWorkspace,
    registry: MlflowRegistry,
    evidence: MlflowEvidence,
    attestations: MlflowAttestations,
    forge: Forge,
) -> ApprovalRecorder | None:
    """What records the approvals of pull requests, when there are pull requests and an
    evidence key to sign with."""
    if not forge.opens_pull_requests:
        return None
    signer = load_evidence_signer(os.environ)
    if signer is None:
        log.info("no %s: approvals of pull requests are not recorded", EVIDENCE_KEY_ENV)
        return None
    return ApprovalRecorder(
        workspace=workspace, registry=registry, evidence=evidence, attestations=attestations,
        forge=forge, signer=signer, clock=time.time, lease=approval_lease(settings, workspace),
    )  # fmt: skip


def run_serve(
    settings: Settings,
    *,
    forge: Forge,
    remote: str,
    rollouts: Literal["local", "kubernetes"] | None = None,
    environments: Sequence[str] | None = None,
) -> None:
    """Run until SIGINT or SIGTERM; with ``rollouts``, reconcile every release's rollout too.

    ``environments`` restricts both loops to those environments (default: all in Git); one
    that Git does not declare is a :class:`ConfigError` before the server starts.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    workspace = GitWorkspace(
        remote,
        settings.state_dir / "git",
        identity=Identity(settings.git_author_name, settings.git_author_email),
    )
    snapshot = ReleaseSnapshot(workspace, registry, environments=environments)
    metrics = ServeMetrics()
    attestations = MlflowAttestations(settings.mlflow_tracking_uri)
    evidence = MlflowEvidence(settings.mlflow_tracking_uri)

    def propose_version(request: ProposalRequest) -> ProposalResult:
        result = propose(
            request, registry=registry, workspace=workspace, forge=forge,
            attestations=attestations, evidence=evidence,
        )  # fmt: skip
        log.info("%s v%s → %s: %s", result.model, result.version, result.environment, result.status)
        return result

    watcher = build_watcher(
        snapshot, propose_version, interval_seconds=settings.poll_interval_seconds, metrics=metrics
    )
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    register_secret(secret)
    if settings.mlflow_webhook_url:
        if secret is None:
            raise ConfigError(
                "SLUICE_MLFLOW_WEBHOOK_URL needs SLUICE_WEBHOOK_SECRET to sign deliveries"
            )
        registry.ensure_webhook("sluice", settings.mlflow_webhook_url, secret)
    # The local stack keeps a prediction log per environment: the one this controller's
    # environment writes when it watches one (else the stack's first environment's).
    home = environments[0] if environments is not None and len(environments) == 1 else None
    events = build_events_route(settings, metrics=metrics, environment=home)
    routes = sluice_routes(
        metrics=metrics,
        status=watcher.status,
        mlflow_trigger=lambda model, alias: _invalidate_then(snapshot, watcher, model, alias),
        mlflow_webhook_secret=secret,
        max_age_seconds=settings.webhook_max_age_seconds,
        replay_file=settings.state_dir / "webhooks" / "mlflow-deliveries.json",
        alertmanager_hook=build_alertmanager_hook(
            settings, forge=forge, registry=registry, metrics=metrics, models=registry
        ),
        feedback=build_feedback_route(settings, metrics=metrics, environment=home),
        events=events[0] if events is not None else None,
        # The page reads the target the rollouts run on, else the cluster when Argo CD is set.
        page=build_status_page(
            settings,
            remote=remote,
            target=rollouts or ("kubernetes" if settings.argocd_url else "local"),
            environments=environments,
        ),
    )
    kpis = build_kpi_series(settings, snapshot, workspace)
    metrics.registry.register(kpis)
    kpis.refresher.start()
    stop = threading.Event()
    loop = _rollout_loop(settings, rollouts, remote, snapshot, metrics, forge)
    soak = build_soak_watcher(
        settings,
        # Its own clone: the soak thread reads Git while the watcher's thread syncs.
        workspace=GitWorkspace(
            remote,
            settings.state_dir / "git-soak",
            identity=Identity(settings.git_author_name, settings.git_author_email),
        ),
        registry=registry,
        target=rollouts or ("kubernetes" if settings.argocd_url else "local"),
        environments=environments,
    )
    if soak is not None:
        threading.Thread(
            target=soak.run_forever,
            args=(stop, settings.poll_interval_seconds),
            name="sluice-soak",
            daemon=True,
        ).start()
    rollout_thread = None
    if loop is not None:
        rollout_thread = threading.Thread(
            target=loop.run_forever, args=(stop,), name="sluice-rollouts", daemon=True
        )
        rollout_thread.start()
    promoter = AutoProposer(
        workspace, registry, evidence, attestations, propose_version, environments=environments,
        approvals=_approval_recorder(settings, workspace, registry, evidence, attestations, forge),
        notifier=build_notifier(settings),
    )  # fmt: skip
    threading.Thread(
        target=promoter.run_forever, args=(stop, settings.poll_interval_seconds),
        name="sluice-auto-propose", daemon=True,
    ).start()  # fmt: skip

    def shutdown(_signum: int, _frame: object) -> None:
        stop.set()
        watcher.wake()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    with SluiceServer(routes, host=settings.serve_host, port=settings.serve_port) as server:
        log.info(
            "listening on %s, watching %d releases of %s",
            server.url,
            len(snapshot.watched()),
            ", ".join(snapshot.environments or ("every environment",)),
        )
        watcher.run_forever(stop)
    kpis.refresher.stop()
    if events is not None:
        events[1].close()  # writes the answers still queued
    if rollout_thread is not None:
        # The loop finishes its pass and releases its leases; a pass stuck past the grace
        # period is cut off with the process, and its leases expire on their own.
        log.info("stopping: releasing the rollout leases")
        rollout_thread.join(_STOP_GRACE_SECONDS)
