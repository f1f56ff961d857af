"""A cluster as Sluice's deployment target: KServe through the Kubernetes API, sync through Argo CD.

The two facts the rollout needs live in two places. Revisions, traffic and conditions are on
the InferenceService in the cluster (KServe writes its ``status``); which commit the
environment synced, and the health Argo CD shows, are Argo CD's. The Application is read
through Argo CD's REST API rather than as a custom resource because Argo CD 3 no longer keeps
per-resource health in the Application object (``status.resourceHealthSource: appTree``): its
API server puts ``status.resources[].health`` back from its resource-tree cache on a plain
``GET /api/v1/applications/{name}``. When that cache has nothing for the InferenceService,
Argo CD's own Lua health check is run on the object
(:mod:`controller.backends.argocd_health`), so the answer is still the one Argo CD's UI shows.

Turning the two documents into a :class:`~controller.target_types.TargetObservation` is the
pure :func:`observation_from`, which the local target shares: its runtime writes the same
shapes. In KServe's RawDeployment (``Standard``) mode there is no Knative, and KServe leaves
the revision and traffic fields of ``status.components.predictor`` empty; the same observation
is then read from ``spec.canary[]``, ``status.canaryStatuses[]`` and the conditions
(:func:`raw_predictor_fields`), each Deployment standing for a revision. Library and HTTP
failures become :mod:`controller.errors` here, in one line that names the URL (credentials
redacted) and the fix; the Argo CD token never reaches a message.
"""

from __future__ import annotations

import json
import string
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import requests
from urllib3.exceptions import HTTPError

from controller.backends.argocd_health import HealthStatus, inferenceservice_health
from controller.backends.kubernetes_client import load_api_client
from controller.deployment_mode import (
    LOCAL_REVISIONS_ANNOTATION,
    RAW_DEPLOYMENT_MODES,
    canary_deployment_name,
    deployment_mode,
)
from controller.errors import ConfigError, RemoteUnavailable, SluiceError
from controller.redact import redact, register_secret
from controller.target_types import TargetObservation, TrafficEntry

if TYPE_CHECKING:
    from kubernetes.client import ApiClient  # type: ignore[import-untyped]

__all__ = [
    "KubernetesTarget",
    "Naming",
    "observation_from",
    "raw_predictor_fields",
    "resource_health",
    "synced_revision",
]

_GROUP, _VERSION, _PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
_ARGOCD_AUTH_FIX = "set ARGOCD_AUTH_TOKEN to a valid Argo CD API token"
# Where KServe reports that the latest created revision failed, most specific first.
_FAILURE_CONDITIONS = ("PredictorConfigurationReady", "PredictorReady")

#: How an environment's Application or namespace is named: a function, or a template over
#: ``{environment}``.
Naming = Callable[[str], str] | str


class KubernetesTarget:
    """The :class:`~controller.ports.Target` for a cluster: Kubernetes API plus Argo CD.

    ``application_for`` and ``namespace`` name the Argo CD Application and the namespace of an
    environment: a function of the environment, or a template such as ``"sluice-{environment}"``
    (``{environment}`` is the only field). Without ``api_client`` the Kubernetes client is
    built on first use, from the pod's service account or else the kubeconfig.
    ``verify_tls`` applies to Argo CD (``argocd --insecure``); the Kubernetes client follows
    its own configuration.
    """

    def __init__(
        self,
        argocd_url: str,
        argocd_token: str | None,
        *,
        application_for: Naming = "sluice-{environment}",
        namespace: Naming = "default",
        api_client: ApiClient | None = None,
        verify_tls: bool = True,
        timeout_seconds: float = 10.0,
    ) -> None:
        register_secret(argocd_token)
        self.argocd_url = argocd_url.rstrip("/")
        self._token = argocd_token or None
        self._application_for = _naming(application_for, "application_for")
        self._namespace_for = _naming(namespace, "namespace")
        self._api_client = api_client
        self._built_client: Any = None
        self._custom_objects: Any = None
        self._lock = threading.Lock()
        self._verify_tls = verify_tls
        self._timeout = timeout_seconds
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"KubernetesTarget(argocd_url={redact(self.argocd_url)!r})"

    def close(self) -> None:
        """Close the HTTP connections (and the Kubernetes client this target built)."""
        self._session.close()
        if self._built_client is not None:
            self._built_client.close()

    # -- the Target protocol ---------------------------------------------------------------------

    def observe(self, environment: str, inference_service: str) -> TargetObservation:
        """The InferenceService as KServe reports it and the environment as Argo CD does.

        An InferenceService the cluster does not have is ``exists=False`` (Argo CD is then not
        asked). :class:`~controller.errors.RemoteUnavailable` when either API cannot answer,
        :class:`~controller.errors.ConfigError` when a credential or a name is wrong.
        """
        namespace = self._namespace_for(environment)
        isvc = self._read_inference_service(namespace, inference_service)
        if isvc is None:
            return TargetObservation(exists=False, namespace=namespace)
        application = self._read_application(self._application_for(environment))
        return observation_from(isvc, application)

    def request_sync(self, environment: str) -> None:
        """Ask Argo CD to refresh the environment's Application now (``GET ...?refresh=normal``,
        what ``argocd app get --refresh`` sends), so its automated sync applies a commit
        Sluice just pushed instead of at its next poll of Git (three minutes by default)."""
        self._read_application(self._application_for(environment), refresh=True)

    # -- Kubernetes --------------------------------------------------------------------------------

    def _api(self) -> Any:
        with self._lock:
            if self._custom_objects is None:
                from kubernetes import client  # type: ignore[import-untyped]

                api_client = self._api_client
                if api_client is None:
                    api_client = self._built_client = load_api_client()
                self._custom_objects = client.CustomObjectsApi(api_client)
            return self._custom_objects

    def _read_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

        api = self._api()
        host = redact(str(api.api_client.configuration.host))
        what = f"InferenceService {namespace}/{name}"
        try:
            document = api.get_namespaced_custom_object(
                _GROUP, _VERSION, namespace, _PLURAL, name, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404 and _names_object(exc.body, name):
                return None
            raise _kubernetes_error(int(exc.status or 0), str(exc.reason), host, what) from None
        except HTTPError as exc:
            raise RemoteUnavailable(
                f"the Kubernetes API at {host} is unreachable ({type(exc).__name__}) reading "
                f"{what}; check the cluster and the kubeconfig"
            ) from None
        if not isinstance(document, dict):
            raise RemoteUnavailable(f"the Kubernetes API at {host} answered {what} with no object")
        return document

    # -- Argo CD -----------------------------------------------------------------------------------

    def _read_application(self, name: str, *, refresh: bool = False) -> dict[str, Any]:
        url = f"{self.argocd_url}/api/v1/applications/{urllib.parse.quote(name, safe='')}"
        shown = redact(url)
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._session.get(
                url,
                headers=headers,
                params={"refresh": "normal"} if refresh else None,
                timeout=self._timeout,
                verify=self._verify_tls,
            )
        except requests.exceptions.SSLError:
            raise ConfigError(
                f"Argo CD at {shown} failed TLS verification; trust its CA "
                "(REQUESTS_CA_BUNDLE) or turn TLS verification off for Argo CD"
            ) from None
        except requests.RequestException as exc:
            raise RemoteUnavailable(
                f"Argo CD at {shown} is unreachable ({type(exc).__name__}); check "
                "SLUICE_ARGOCD_URL and that argocd-server is running"
            ) from None
        if response.status_code != 200:
            raise _argocd_error(response, shown, name)
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("status", {}), dict):
            raise RemoteUnavailable(
                f"Argo CD at {shown} did not answer with an Application; "
                "is the URL argocd-server's?"
            )
        return document


# -- the pure mapping, shared with the local target ------------------------------------------------


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
            and resource.get("group", _GROUP) == _GROUP
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


# -- configuration and errors ----------------------------------------------------------------------


def _naming(value: Naming, what: str) -> Callable[[str], str]:
    """A template's fields are checked now, so a typo fails at start, not mid-rollout."""
    if callable(value):
        return value
    template = value
    fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    unknown = sorted(fields - {"environment"})
    if unknown:
        raise ConfigError(
            f"{what} template {template!r} uses {', '.join(repr(f) for f in unknown)}; "
            "only {environment} is available"
        )
    return lambda environment: template.format(environment=environment)


def _names_object(body: Any, name: str) -> bool:
    """Whether a 404's Status is about the object, not a missing API (KServe not installed)."""
    try:
        status = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return False
    details = status.get("details") if isinstance(status, dict) else None
    return isinstance(details, dict) and details.get("name") == name


def _kubernetes_error(status: int, reason: str, host: str, what: str) -> SluiceError:
    if status == 401:
        return ConfigError(
            f"the Kubernetes API at {host} rejected Sluice's credentials (401) reading {what}; "
            "renew the service account token or the kubeconfig's"
        )
    if status == 403:
        return ConfigError(
            f"the Kubernetes API at {host} forbids reading {what} (403); grant Sluice's identity "
            f"get on {_PLURAL}.{_GROUP}"
        )
    if status == 404:
        return ConfigError(
            f"the Kubernetes API at {host} does not serve {_GROUP}/{_VERSION} {_PLURAL} (404); "
            "install KServe in the cluster"
        )
    return RemoteUnavailable(
        f"the Kubernetes API at {host} answered {status} {reason} reading {what}; retry later"
    )


def _argocd_error(response: requests.Response, shown: str, name: str) -> SluiceError:
    status = response.status_code
    if status == 401:
        return ConfigError(f"Argo CD at {shown} rejected the token (401); {_ARGOCD_AUTH_FIX}")
    if status == 403:
        # Argo CD answers 403 for an Application that does not exist, so as not to reveal it.
        return ConfigError(
            f"Argo CD at {shown} denied access (403): application {name!r} does not exist or "
            "the token may not read it; check SLUICE_ARGOCD_APPLICATION and the token's RBAC"
        )
    if status == 404:
        return ConfigError(
            f"Argo CD at {shown} has no application {name!r} (404); check SLUICE_ARGOCD_APPLICATION"
        )
    return RemoteUnavailable(f"Argo CD at {shown} answered {status}; retry later")
