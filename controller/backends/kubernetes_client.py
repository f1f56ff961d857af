"""The Kubernetes API client Sluice's cluster backends share: the pod's service account, else
the kubeconfig, with a failure to find either as one :class:`~controller.errors.ConfigError`;
the custom-objects API built from it on first use; and the mapping of the API server's errors
(an ``ApiException``'s status, a transport failure) to one Sluice error line naming the URL,
credentials redacted, and the fix."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.errors import ConfigError, RemoteUnavailable, SluiceError
from controller.redact import redact

if TYPE_CHECKING:
    from kubernetes.client import ApiClient  # type: ignore[import-untyped]

__all__ = [
    "KUBE_CREDENTIALS_FIX",
    "CustomObjects",
    "KubernetesRequest",
    "api_error",
    "api_host",
    "load_api_client",
    "no_object_error",
    "status_details",
    "unreachable_error",
]

KUBE_CREDENTIALS_FIX = (
    "run Sluice in the cluster with a service account, or point KUBECONFIG at a kubeconfig"
)


def load_api_client() -> Any:
    """The pod's service account, else the kubeconfig (``KUBECONFIG``, ``~/.kube/config``)."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        try:
            # KUBECONFIG is read now: the library reads it once, when it is first imported.
            config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG") or None,
                client_configuration=configuration,
            )
        except (config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"no Kubernetes credentials ({redact(' '.join(str(exc).split()))[:200]}); "
                f"{KUBE_CREDENTIALS_FIX}"
            ) from None
    return client.ApiClient(configuration)


class CustomObjects:
    """A ``CustomObjectsApi`` built on first use, once, from ``api_client`` or else from
    :func:`load_api_client` (which :meth:`close` then closes)."""

    def __init__(self, api_client: ApiClient | None = None) -> None:
        self._api_client = api_client
        self._built_client: Any = None
        self._custom_objects: Any = None
        self._lock = threading.Lock()

    def api(self) -> Any:
        """The ``CustomObjectsApi``, built on the first call."""
        with self._lock:
            if self._custom_objects is None:
                from kubernetes import client

                api_client = self._api_client
                if api_client is None:
                    api_client = self._built_client = load_api_client()
                self._custom_objects = client.CustomObjectsApi(api_client)
            return self._custom_objects

    def close(self) -> None:
        """Close the Kubernetes client built here (one passed in is its owner's to close)."""
        if self._built_client is not None:
            self._built_client.close()


def api_host(api: Any) -> str:
    """The API server's URL as an error line may show it, credentials redacted."""
    return redact(str(api.api_client.configuration.host))


def status_details(body: Any) -> dict[str, Any]:
    """The ``details`` of the Status object an API error carries as its body, or {}."""
    try:
        status = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return {}
    details = status.get("details") if isinstance(status, dict) else None
    return details if isinstance(details, dict) else {}


@dataclass(frozen=True)
class KubernetesRequest:
    """One request to the API server, described for the one line its failure becomes."""

    #: The API server's URL, redacted (:func:`api_host`).
    host: str
    #: The object asked for: "InferenceService models/fraud-detector".
    what: str
    #: The request in a message: "reading InferenceService ...", "(get Lease ...)".
    doing: str
    #: What a 403 forbids ("reading InferenceService ...") and the grant that fixes it.
    forbidden: str
    grant: str
    #: The API a 404 of the whole API says is not served ("group/version plural") and the fix.
    resource: str
    not_served_fix: str
    #: The fix when the API server cannot be reached.
    unreachable_fix: str = "check the cluster and the kubeconfig"


def api_error(request: KubernetesRequest, status: int, reason: str) -> SluiceError:
    """An ``ApiException``'s status as a Sluice error: the credentials (401), a missing grant
    (403) or API (404) as a :class:`ConfigError`, anything else as worth a retry later."""
    host = request.host
    if status == 401:
        return ConfigError(
            f"the Kubernetes API at {host} rejected Sluice's credentials (401) {request.doing}; "
            "renew the service account token or the kubeconfig's"
        )
    if status == 403:
        return ConfigError(
            f"the Kubernetes API at {host} forbids {request.forbidden} (403); {request.grant}"
        )
    if status == 404:
        return ConfigError(
            f"the Kubernetes API at {host} does not serve {request.resource} (404); "
            f"{request.not_served_fix}"
        )
    return RemoteUnavailable(
        f"the Kubernetes API at {host} answered {status} {reason} {request.doing}; retry later"
    )


def unreachable_error(request: KubernetesRequest, exc: BaseException) -> RemoteUnavailable:
    """A transport failure (urllib3's ``HTTPError``) of ``request``."""
    return RemoteUnavailable(
        f"the Kubernetes API at {request.host} is unreachable ({type(exc).__name__}) "
        f"{request.doing}; {request.unreachable_fix}"
    )


def no_object_error(request: KubernetesRequest) -> RemoteUnavailable:
    """An answer to ``request`` that is not an object."""
    return RemoteUnavailable(
        f"the Kubernetes API at {request.host} answered {request.what} with no object"
    )
