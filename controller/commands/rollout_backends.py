"""The backends a rollout pass runs on, from the settings: the composition root of the rollout.

:func:`build_reconciler` names every concrete backend of ``sluice rollout``, ``rollback``,
``status`` and ``serve --rollouts``: MLflow, Git, Prometheus, Locust, the local target or a
cluster (Argo CD and Kubernetes), the notifier, the lease store, the prediction log and, with
``SLUICE_EVIDENCE_KEY`` (or ``_FILE``), the evidence recorder;
``sluice graph rollout`` takes its target, Prometheus and lease keeper from
:func:`build_target`, :func:`build_metrics` and :func:`build_lease`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from controller.backends.git_lease import GitLeaseStore
from controller.backends.git_repo import GitWorkspace
from controller.backends.mlflow_attestations import MlflowAttestations
from controller.backends.mlflow_evidence import MlflowEvidence
from controller.backends.mlflow_registry import MlflowRegistry, configure_mlflow_http
from controller.commands.local_state import local_root, local_stack_url, prediction_logs
from controller.commands.propose import gitops_workspace
from controller.errors import ConfigError
from controller.lease import LeaseKeeper
from controller.null_ports import NO_FORGE, NO_GRAPH_REPLAY
from controller.ports import (
    Forge,
    GraphReplay,
    LeaseStore,
    LiveRequestCounts,
    MetricsSource,
    Notifier,
    PredictionStore,
    Target,
)
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.rollout.reconcile import Reconciler

__all__ = [
    "TargetKind",
    "approval_lease",
    "build_lease",
    "build_metrics",
    "build_notifier",
    "build_reconciler",
    "build_target",
]

TargetKind = Literal["local", "kubernetes"]


def build_target(settings: Settings, kind: TargetKind) -> Target:
    """The local target, or a cluster through Argo CD and the Kubernetes API."""
    if kind == "local":
        from controller.local.target import LocalTarget

        return LocalTarget(local_root(settings))
    if not settings.argocd_url:
        raise ConfigError("--target kubernetes needs Argo CD: set SLUICE_ARGOCD_URL")
    if settings.argocd_auth_token is None:
        raise ConfigError("--target kubernetes needs an Argo CD token: set ARGOCD_AUTH_TOKEN")
    from controller.backends.kubernetes_target import KubernetesTarget

    return KubernetesTarget(
        settings.argocd_url,
        settings.argocd_auth_token.get_secret_value(),
        application_for=settings.argocd_application,
        namespace=settings.kubernetes_namespace,
    )


def build_metrics(settings: Settings, kind: TargetKind) -> MetricsSource | None:
    """Prometheus: the configured one, else the local stack's; None when there is none."""
    url = settings.prometheus_url
    if url is None and kind == "local":
        url = local_stack_url(settings, "prometheus")
    if url is None:
        return None
    from controller.backends.prometheus import PrometheusSource

    token = settings.prometheus_bearer_token
    return PrometheusSource(url, bearer_token=token.get_secret_value() if token else None)


def build_notifier(settings: Settings) -> Notifier:
    """The Slack webhook of ``notify_webhook_url``, else the log."""
    if settings.notify_webhook_url is None:
        from controller.notify import LogNotifier

        return LogNotifier()
    from controller.backends.slack_notifier import SlackWebhookNotifier

    return SlackWebhookNotifier(settings.notify_webhook_url.get_secret_value())


def build_reconciler(
    settings: Settings, *, target: TargetKind, remote: str | None, forge: Forge = NO_FORGE
) -> Reconciler:
    """Every backend of a rollout, from the settings."""
    # The rollout engine (its judges load numpy) with the one function that builds it:
    # `sluice lineage` and the soak watcher take a target from here, not a reconciler.
    from controller.rollout.analysis import Analyzer
    from controller.rollout.evidence_recorder import recorder_from_settings
    from controller.rollout.reconcile import Reconciler

    configure_mlflow_http(
        retries=settings.registry_request_retries,
        timeout_seconds=settings.registry_request_timeout_seconds,
    )
    tracking_uri = settings.mlflow_tracking_uri
    if target == "local" and "mlflow_tracking_uri" not in settings.model_fields_set:
        # The local stack's MLflow, unless one was given explicitly.
        tracking_uri = local_stack_url(settings, "mlflow") or tracking_uri
    registry = MlflowRegistry(tracking_uri)
    workspace = gitops_workspace(settings, remote)
    from controller.backends.locust_load import LocustLoadGenerator

    deployed_to = build_target(settings, target)
    predictions = _prediction_logs(settings, target)
    analyzer = Analyzer(
        registry=registry,
        metrics=build_metrics(settings, target),
        load=LocustLoadGenerator(),
        report_dir=settings.state_dir / "reports",
        # The local router counts each revision's answers live; a cluster's come from Prometheus.
        counters=deployed_to if isinstance(deployed_to, LiveRequestCounts) else None,
        # KPI checks read the requests each revision served, and their outcomes, from the log.
        outcomes=predictions,
    )
    lease = build_lease(settings, workspace)
    attestations = MlflowAttestations(tracking_uri)
    return Reconciler(
        workspace=workspace,
        registry=registry,
        target=deployed_to,
        analyzer=analyzer,
        notifier=build_notifier(settings),
        forge=forge,
        predictions=predictions,
        graph_replay=_graph_replay(deployed_to),
        lease=lease,
        attestations=attestations,
        evidence=recorder_from_settings(
            settings, MlflowEvidence(tracking_uri), attestations, controller=lease.holder
        ),
    )


def build_lease(settings: Settings, workspace: GitWorkspace) -> LeaseKeeper:
    """This process's keeper of the rollout leases (of releases and of graph walks), in the
    configured store, for the configured duration."""
    return LeaseKeeper(
        _lease_store(settings, workspace), duration_seconds=settings.rollout_lease_seconds
    )


def approval_lease(settings: Settings, workspace: GitWorkspace) -> LeaseKeeper:
    """This process's keeper of the approval recorders' leases
    (:func:`~controller.lease.approval_lease_name`): always a ref in the GitOps remote, the
    one store both ``sluice serve`` and the Promote workflow reach (the workflow has no
    cluster), for the rollout leases' duration."""
    return LeaseKeeper(GitLeaseStore(workspace), duration_seconds=settings.rollout_lease_seconds)


def _lease_store(settings: Settings, workspace: GitWorkspace) -> LeaseStore:
    """Where the rollout leases are kept: a ref in the GitOps remote, or a cluster's Leases."""
    if settings.rollout_lease_store == "git":
        return GitLeaseStore(workspace)
    from controller.backends.kubernetes_lease import (
        KubernetesLeaseStore,
        default_lease_namespace,
    )

    return KubernetesLeaseStore(settings.rollout_lease_namespace or default_lease_namespace())


def _graph_replay(target: Target) -> Callable[[str], GraphReplay]:
    """Where a classifier's downstream check replays an environment's graphs: the local
    target's graph routers; a cluster has none (KServe's router cannot replay)."""
    from controller.local.target import LocalTarget

    if isinstance(target, LocalTarget):
        return target.graph_replay
    return lambda environment: NO_GRAPH_REPLAY


def _prediction_logs(
    settings: Settings, target: TargetKind
) -> Callable[[str], PredictionStore | None]:
    """Where shadow phases read mirrored answers and KPI checks read outcomes, by environment:
    the configured store (PostgreSQL or a SQLite file) for every one, else on the local target
    the log of the environment's own routers (a stack serving staging and production keeps
    one each), else none."""
    configured = settings.prediction_store_url or settings.prediction_log_path
    if configured is None and target != "local":
        return lambda _environment: None
    return prediction_logs(settings)
