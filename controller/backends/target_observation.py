"""What a target reports, from the InferenceService object KServe writes and the Argo CD
Application that syncs it: a pure mapping to a :class:`~controller.target_types.TargetObservation`
that the cluster target and the local target share (the local runtime writes the same shapes).

In KServe's RawDeployment (``Standard``) mode there is no Knative, and KServe leaves the
revision and traffic fields of ``status.components.predictor`` empty; the same observation is
then read from ``spec.canary[]``, ``status.canaryStatuses[]`` and the conditions
(:func:`raw_predictor_fields`), each Deployment standing for a revision. Where Argo CD's
resource tree has no health for the InferenceService, Argo CD's own Lua health check is run on
the object (:mod:`controller.backends.argocd_health`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.backends.argocd_health import HealthStatus, inferenceservice_health
from controller.manifests.deployment_mode import (
    LOCAL_REVISIONS_ANNOTATION,
    RAW_DEPLOYMENT_MODES,
    canary_deployment_name,
    deployment_mode,
)
from controller.target_types import TargetObservation, TrafficEntry

__all__ = [
    "observation_from",
    "raw_predictor_fields",
    "resource_health",
    "revision_storage",
    "synced_revision",
]

#: KServe's API group, whose InferenceService Argo CD lists among an Application's resources.
KSERVE_GROUP = "serving.kserve.io"
# Where KServe reports that the latest created revision failed, most specific first.
_FAILURE_CONDITIONS = ("PredictorConfigurationReady", "PredictorReady")


def observation_from(
    inference_service: Mapping[str, Any],
    application: Mapping[str, Any] | None,
    *,
    health: HealthStatus | None = None,
) -> TargetObservation:
    """What a target reports, from the InferenceService object and its Argo CD Application.

    ``health`` overrides the Application's; without either, Argo CD's check runs on the object.
    """
    metadata = inference_service.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = str(metadata.get("namespace") or "default")
    status = inference_service.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    if _reads_deployments(inference_service, status):
        predictor = raw_predictor_fields(inference_service)
    app_status = (application or {}).get("status") or {}
    if health is None:
        health = resource_health(app_status, name, namespace) or inferenceservice_health(
            inference_service
        )
    return TargetObservation(
        exists=True,
        synced_revision=synced_revision(app_status, name, namespace),
        sync_status=str((app_status.get("sync") or {}).get("status") or "Unknown"),
        health=health.status,
        health_message=health.message,
        namespace=namespace,
        configuration=f"{name}-predictor",
        url=status.get("url") or predictor.get("url") or None,
        latest_created=predictor.get("latestCreatedRevision") or None,
        latest_ready=predictor.get("latestReadyRevision") or None,
        latest_rolledout=predictor.get("latestRolledoutRevision") or None,
        previous_rolledout=predictor.get("previousRolledoutRevision") or None,
        traffic=tuple(_traffic_entry(entry) for entry in predictor.get("traffic") or ()),
        failure=_failure(status) or _canary_failure(status),
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        requires_pruning=tuple(
            f"{resource.get('kind')}/{resource.get('name')}"
            for resource in app_status.get("resources") or ()
            if resource.get("requiresPruning")
        ),
    )


def _reads_deployments(inference_service: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """RawDeployment on a cluster: the mode KServe reports, else the one the manifest asks for
    (its annotation, or ``spec.canary``). The local target's RawDeployment status carries its
    own revisions in the Knative fields and says so (``LOCAL_REVISIONS_ANNOTATION``)."""
    if (status.get("annotations") or {}).get(LOCAL_REVISIONS_ANNOTATION):
        return False
    reported = status.get("deploymentMode")
    if reported:
        return reported in RAW_DEPLOYMENT_MODES
    return deployment_mode(inference_service) == "RawDeployment"


def raw_predictor_fields(inference_service: Mapping[str, Any]) -> dict[str, Any]:
    """Knative's ``components.predictor`` fields for a RawDeployment InferenceService, from
    its spec and what KServe reports, so the rollout reads one shape in both modes.

    Each predictor is a Deployment with a Service of the same name (kserve#5672):
    ``<isvc>-predictor`` for ``spec.predictor`` (``<isvc>-<name>-predictor`` once it has a
    ``name``, as after a promotion, kserve#5912), ``<isvc>-<name>-predictor`` for each
    ``spec.canary`` entry. That name is the revision: the PodMonitor labels the model
    server's series with it (``revision_name``, from the pod label ``app: isvc.<Deployment>``,
    ``manifests/monitoring/podmonitor-model-servers.yaml``), so the gates find both.

    - ``latestCreatedRevision``: the first canary's Deployment while ``spec.canary`` has one,
      else the primary's; ``latestReadyRevision``: the canary's once its
      ``status.canaryStatuses[]`` entry is ``ready``, else the primary's once ``PredictorReady``
      is True; ``latestRolledoutRevision``: the primary's while it is ready.
    - ``traffic``: nothing while the primary is not ready; the primary alone at 100 % without
      a canary; with one, the canary tagged ``latest`` at the ``trafficPercent`` its status
      reports (0 until ready: KServe routes a canary only once ready, kserve#5984) once it is
      ready, and the primary tagged ``prev`` with the rest.
    - tag URLs: each Deployment's own Service, ``http://<Deployment>.<ns>.svc.cluster.local``
      (port 80), which reaches that Deployment alone from inside the cluster (a Locust run by
      the controller's pod). Assumed where KServe's documentation is silent: the Service
      listens on port 80 and a RawDeployment gets no per-tag hostnames (KServe's tag routing
      is Knative's).

    Sluice writes one canary; further ``spec.canary`` entries are not read.
    """
    metadata = inference_service.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = str(metadata.get("namespace") or "default")
    spec = inference_service.get("spec") or {}
    status = inference_service.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    primary_name = str((spec.get("predictor") or {}).get("name") or "")
    primary = canary_deployment_name(name, primary_name) if primary_name else f"{name}-predictor"
    primary_ready = (conditions.get("PredictorReady") or {}).get("status") == "True"
    canaries = spec.get("canary") or []
    canary_name = str(((canaries[0] if canaries else {}).get("predictor") or {}).get("name") or "")
    canary = canary_deployment_name(name, canary_name) if canary_name else ""
    reported: Mapping[str, Any] = next(
        (s for s in status.get("canaryStatuses") or () if canary and s.get("name") == canary_name),
        {},
    )
    canary_ready = bool(reported.get("ready"))

    def service_url(deployment: str) -> str:
        return f"http://{deployment}.{namespace}.svc.cluster.local"

    traffic: list[dict[str, Any]] = []
    if primary_ready and not canary:
        traffic = [{"revisionName": primary, "percent": 100, "latestRevision": True}]
    elif primary_ready:
        percent = int(reported.get("trafficPercent") or 0) if canary_ready else 0
        if canary_ready:
            traffic.append(
                {"revisionName": canary, "percent": percent, "latestRevision": True,
                 "tag": "latest", "url": service_url(canary)}
            )  # fmt: skip
        traffic.append(
            {"revisionName": primary, "percent": 100 - percent, "latestRevision": False,
             "tag": "prev", "url": service_url(primary)}
        )  # fmt: skip
    latest_ready = canary if canary_ready else (primary if primary_ready else "")
    return {
        "latestCreatedRevision": canary or primary,
        "latestReadyRevision": latest_ready,
        "latestRolledoutRevision": primary if primary_ready else "",
        "url": service_url(primary) if primary_ready else "",
        "traffic": traffic,
    }


def revision_storage(inference_service: Mapping[str, Any]) -> dict[str, str]:
    """The storageUri each revision of the InferenceService runs, as far as its spec says:
    Serverless, the latest created revision runs the spec's (an older revision's is not in the
    object); RawDeployment, the primary's Deployment runs ``spec.predictor``'s and the
    canary's its own."""
    spec = inference_service.get("spec") or {}
    predictor = spec.get("predictor") or {}
    primary_uri = str((predictor.get("model") or {}).get("storageUri") or "")
    status = inference_service.get("status") or {}
    fields = (status.get("components") or {}).get("predictor") or {}
    if _reads_deployments(inference_service, status):
        fields = raw_predictor_fields(inference_service)
        canaries = spec.get("canary") or []
        canary = (canaries[0].get("predictor") or {}) if canaries else {}
        canary_uri = str((canary.get("model") or {}).get("storageUri") or "")
        uris = {
            str(t["revisionName"]): primary_uri
            for t in fields["traffic"]
            if t.get("tag") != "latest"
        }
        if not canaries:
            uris = {str(fields["latestCreatedRevision"]): primary_uri}
        elif canary_uri:
            uris[str(fields["latestCreatedRevision"])] = canary_uri
        return {name: uri for name, uri in uris.items() if name and uri}
    latest = str(fields.get("latestCreatedRevision") or "")
    return {latest: primary_uri} if latest and primary_uri else {}


def _canary_failure(status: Mapping[str, Any]) -> str | None:
    """A RawDeployment canary whose model cannot load (its ``canaryStatuses[]`` entry's
    ``modelStatus``), when the top-level model status does not already say so."""
    for canary in status.get("canaryStatuses") or ():
        model = canary.get("modelStatus") or {}
        if model.get("transitionStatus") == "BlockedByFailedLoad":
            info = model.get("lastFailureInfo") or {}
            return str(info.get("message") or info.get("reason") or "BlockedByFailedLoad")
    return None


def synced_revision(
    app_status: Mapping[str, Any], name: str | None = None, namespace: str = "default"
) -> str | None:
    """The commit the environment last synced, as far as InferenceService ``name`` goes.

    Argo CD's ``status.sync.revision`` is the commit it *compared* against (the branch tip),
    so it names what runs while ``status.sync.status`` is Synced, or while the Application is
    OutOfSync because of other resources: ``status.resources`` then lists ``name`` as Synced,
    its live object being the one that commit renders (another InferenceService refused by
    KServe's webhook must not hold back this one's rollout). Otherwise the last successful
    sync is the newest ``status.history`` entry (appended only on success).
    """
    sync = app_status.get("sync") or {}
    revision = sync.get("revision") or _first(sync.get("revisions"))
    if revision and sync.get("status") == "Synced":
        return str(revision)
    if revision and name and sync.get("status") == "OutOfSync":
        resource = _resource(app_status, name, namespace)
        if resource is not None and resource.get("status") == "Synced":
            return str(revision)
    history = app_status.get("history") or []
    if history:
        last = history[-1]
        revision = last.get("revision") or _first(last.get("revisions"))
        return str(revision) if revision else None
    return None


def resource_health(
    app_status: Mapping[str, Any], name: str, namespace: str
) -> HealthStatus | None:
    """Argo CD's health of InferenceService ``namespace/name`` from ``status.resources``.

    None when the Application does not list it or lists it without health (Argo CD's resource
    tree cache had nothing for it).
    """
    health = (_resource(app_status, name, namespace) or {}).get("health") or {}
    if health.get("status"):
        return HealthStatus(str(health["status"]), str(health.get("message") or ""))
    return None


def _resource(app_status: Mapping[str, Any], name: str, namespace: str) -> Mapping[str, Any] | None:
    """InferenceService ``namespace/name``'s entry in the Application's ``status.resources``."""
    for resource in app_status.get("resources") or ():
        if (
            resource.get("kind") == "InferenceService"
            and resource.get("group", KSERVE_GROUP) == KSERVE_GROUP
            and resource.get("name") == name
            and resource.get("namespace", namespace) == namespace
        ):
            return dict(resource)
    return None


def _traffic_entry(entry: Mapping[str, Any]) -> TrafficEntry:
    return TrafficEntry(
        revision=str(entry.get("revisionName") or ""),
        percent=int(entry.get("percent") or 0),
        latest=bool(entry.get("latestRevision")),
        tag=entry.get("tag") or None,
        url=entry.get("url") or None,
    )


def _failure(status: Mapping[str, Any]) -> str | None:
    """The message of KServe's ``RevisionFailed`` condition, or of a blocked model load."""
    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    for kind in _FAILURE_CONDITIONS:
        condition = conditions.get(kind) or {}
        if condition.get("status") == "False" and condition.get("reason") == "RevisionFailed":
            return str(condition.get("message") or "RevisionFailed")
    model = status.get("modelStatus") or {}
    if model.get("transitionStatus") == "BlockedByFailedLoad":
        # KServe never clears lastFailureInfo, so it counts only while the load is blocked.
        info = model.get("lastFailureInfo") or {}
        return str(info.get("message") or info.get("reason") or "BlockedByFailedLoad")
    return None


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None
