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

import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import HTTPError

from controller.backends.argocd_application import ArgoCDApplications
from controller.backends.kubernetes_client import (
    CustomObjects,
    KubernetesRequest,
    api_error,
    api_host,
    no_object_error,
    status_details,
    unreachable_error,
)
from controller.backends.target_observation import (
    observation_from,
    raw_predictor_fields,
    resource_health,
    revision_storage,
    synced_revision,
)
from controller.errors import ConfigError
from controller.redact import redact
from controller.target_types import TargetObservation

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
_GRAPH_VERSION, _GRAPHS = "v1alpha1", "inferencegraphs"

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
        self._argocd = ArgoCDApplications(
            argocd_url, argocd_token, verify_tls=verify_tls, timeout_seconds=timeout_seconds
        )
        self.argocd_url = self._argocd.url
        self._application_for = _naming(application_for, "application_for")
        self._namespace_for = _naming(namespace, "namespace")
        self._custom_objects = CustomObjects(api_client)
        self._timeout = timeout_seconds

    def __repr__(self) -> str:
        return f"KubernetesTarget(argocd_url={redact(self.argocd_url)!r})"

    def close(self) -> None:
        """Close the HTTP connections (and the Kubernetes client this target built)."""
        self._argocd.close()
        self._custom_objects.close()

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
        application = self._argocd.read(self._application_for(environment))
        return observation_from(isvc, application)

    def served_storage(self, environment: str, inference_service: str) -> dict[str, str]:
        """The storageUri of the revisions the InferenceService's spec names
        (:class:`~controller.ports.ServedStorage`; :func:`revision_storage`); empty when the
        cluster does not have it."""
        isvc = self._read_inference_service(self._namespace_for(environment), inference_service)
        return revision_storage(isvc) if isvc is not None else {}

    def request_sync(self, environment: str) -> None:
        """Ask Argo CD to refresh the environment's Application now (``GET ...?refresh=normal``,
        what ``argocd app get --refresh`` sends), so its automated sync applies a commit
        Sluice just pushed instead of at its next poll of Git (three minutes by default)."""
        self._argocd.read(self._application_for(environment), refresh=True)

    def inference_graphs(self, environment: str) -> list[dict[str, Any]]:
        """The InferenceGraphs in the environment's namespace, as the API returns them
        (:class:`~controller.ports.GraphInventory`); none where the cluster does not serve the
        InferenceGraph API (a KServe without it runs no graphs).

        :class:`~controller.errors.RemoteUnavailable` when the API cannot answer,
        :class:`~controller.errors.ConfigError` when a credential or a grant is missing.
        """
        from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

        namespace = self._namespace_for(environment)
        api = self._custom_objects.api()
        request = _kserve_request(
            api, f"InferenceGraphs in {namespace}", ("listing", "list"),
            f"{_GRAPH_VERSION} {_GRAPHS}", "install KServe's InferenceGraph CRD",
        )  # fmt: skip
        try:
            listed = api.list_namespaced_custom_object(
                _GROUP, _GRAPH_VERSION, namespace, _GRAPHS, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return []  # the API is not served: no InferenceGraph can exist
            raise api_error(request, int(exc.status or 0), str(exc.reason)) from None
        except HTTPError as exc:
            raise unreachable_error(request, exc) from None
        items = listed.get("items") if isinstance(listed, dict) else None
        if not isinstance(items, list):
            raise no_object_error(request)
        return [item for item in items if isinstance(item, dict)]

    # -- Kubernetes --------------------------------------------------------------------------------

    def _read_inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        api = self._custom_objects.api()
        what = f"InferenceService {namespace}/{name}"
        request = _kserve_request(
            api, what, ("reading", "get"), f"{_VERSION} {_PLURAL}", "install KServe in the cluster"
        )
        try:
            document = api.get_namespaced_custom_object(
                _GROUP, _VERSION, namespace, _PLURAL, name, _request_timeout=self._timeout
            )
        except ApiException as exc:
            # A 404 about the object, not about a missing API (KServe not installed).
            if exc.status == 404 and status_details(exc.body).get("name") == name:
                return None
            raise api_error(request, int(exc.status or 0), str(exc.reason)) from None
        except HTTPError as exc:
            raise unreachable_error(request, exc) from None
        if not isinstance(document, dict):
            raise no_object_error(request)
        return document


# -- configuration ---------------------------------------------------------------------------------


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


def _kserve_request(
    api: Any, what: str, verb: tuple[str, str], resource: str, not_served_fix: str
) -> KubernetesRequest:
    """A request to KServe's API group about ``what``: ``verb`` is what Sluice was doing and
    the RBAC verb it needs (``("listing", "list")``), ``resource`` the version and plural."""
    doing, permission = verb
    version, plural = resource.split(" ")
    return KubernetesRequest(
        host=api_host(api),
        what=what,
        doing=f"{doing} {what}",
        forbidden=f"{doing} {what}",
        grant=f"grant Sluice's identity {permission} on {plural}.{_GROUP}",
        resource=f"{_GROUP}/{version} {plural}",
        not_served_fix=not_served_fix,
    )
