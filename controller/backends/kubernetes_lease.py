"""Leases as ``coordination.k8s.io/v1`` Lease objects, as controller-runtime's leader election
keeps them: one per release, in one namespace (the controller's own by default).

The object is named ``sluice-<environment>-<model>`` made a DNS-1123 subdomain (lowercased,
anything but letters, digits and ``-`` replaced, with a short hash of the release's name
appended whenever that changed it or it would pass 253 characters); its annotation
``sluice.dev/lease`` keeps the release's own ``ENV/MODEL``, so two releases whose names clean
up alike are told apart rather than sharing a lease. The spec is the Lease's own:
``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime`` and ``renewTime`` (MicroTime,
RFC 3339 with microseconds), and ``leaseTransitions``, counted up whenever the holder changes.
A hand-over request (:mod:`controller.lease`) is the annotation
``sluice.dev/lease-requested-by``.

The version token is ``metadata.resourceVersion``, so each swap is the API server's own
optimistic concurrency: a create (POST) that finds the object exists, a replace (PUT) or a
delete (DELETE with ``preconditions.resourceVersion``) from a stale version is answered 409,
and the swap is lost. The client is the pod's service account, else the kubeconfig; the
controller needs get, create, update and delete on ``leases`` in ``coordination.k8s.io`` in
the namespace (``manifests/controller/rbac.yaml``). API failures become one line naming the
URL (credentials redacted) and the fix; the token never reaches a message.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import HTTPError

from controller.backends.kubernetes_client import (
    CustomObjects,
    KubernetesRequest,
    api_error,
    api_host,
    no_object_error,
    status_details,
    unreachable_error,
)
from controller.errors import ConfigError, SluiceError
from controller.lease import GRAPH_LEASE_PREFIX, Lease

if TYPE_CHECKING:
    from kubernetes.client import ApiClient  # type: ignore[import-untyped]

__all__ = [
    "SERVICE_ACCOUNT_NAMESPACE",
    "KubernetesLeaseStore",
    "default_lease_namespace",
    "lease_object",
    "lease_object_name",
    "lease_of",
]

_GROUP, _VERSION, _PLURAL = "coordination.k8s.io", "v1", "leases"
#: Where a pod finds the namespace it runs in.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_FALLBACK_NAMESPACE = "sluice"
_MAX_NAME = 253
_NAME_ANNOTATION = "sluice.dev/lease"
_REQUEST_ANNOTATION = "sluice.dev/lease-requested-by"
_MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def default_lease_namespace(path: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace the controller's pod runs in, else ``sluice``."""
    try:
        namespace = path.read_text(encoding="utf-8").strip()
    except OSError:
        return _FALLBACK_NAMESPACE
    return namespace or _FALLBACK_NAMESPACE


def lease_object_name(name: str) -> str:
    """The Lease object of release lease ``ENV/MODEL``: a valid DNS-1123 subdomain."""
    wanted = "sluice-" + name.replace("/", "-", 1)
    clean = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).strip("-")
    if clean == wanted and len(clean) <= _MAX_NAME:
        return clean
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[: _MAX_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def _label_value(value: str) -> str:
    """A label value (at most 63 of letters, digits, ``-_.``, alphanumeric at both ends)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)


def _microtime(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime(_MICROTIME)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def lease_object(
    name: str, lease: Lease, namespace: str, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Lease object recording ``lease`` for release ``name``; from ``previous`` (the object
    it replaces) it keeps the resourceVersion and counts a change of holder."""
    environment, _, model = name.partition("/")
    graph = model.removeprefix(GRAPH_LEASE_PREFIX) if model.startswith(GRAPH_LEASE_PREFIX) else None
    old_spec = (previous or {}).get("spec") or {}
    transitions = int(old_spec.get("leaseTransitions") or 0)
    old_holder = old_spec.get("holderIdentity")
    if old_holder and old_holder != lease.holder:
        transitions += 1
    annotations = {_NAME_ANNOTATION: name}
    if lease.requested_by:
        annotations[_REQUEST_ANNOTATION] = lease.requested_by
    metadata: dict[str, Any] = {
        "name": lease_object_name(name),
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/managed-by": "sluice",
            "sluice.dev/environment": _label_value(environment),
            # A graph walk's lease names its graph, a release's its model.
            **(
                {"sluice.dev/graph": _label_value(graph)}
                if graph is not None
                else {"sluice.dev/model": _label_value(model)}
            ),
        },
        "annotations": annotations,
    }
    version = ((previous or {}).get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = str(version)
    return {
        "apiVersion": f"{_GROUP}/{_VERSION}",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": lease.holder,
            "leaseDurationSeconds": max(1, round(lease.duration_seconds)),
            "acquireTime": _microtime(lease.acquired_at),
            "renewTime": _microtime(lease.renewed_at),
            "leaseTransitions": transitions,
        },
    }


def lease_of(document: dict[str, Any]) -> Lease:
    """The lease a Lease object records; an expired one (any controller may replace it) when
    it names no holder, as a released controller-runtime lease does, or cannot be read."""
    spec = document.get("spec") or {}
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    holder = spec.get("holderIdentity")
    acquired = _epoch(spec.get("acquireTime"))
    renewed = _epoch(spec.get("renewTime")) or acquired
    duration = spec.get("leaseDurationSeconds")
    if not holder or renewed is None or not isinstance(duration, int):
        return Lease(str(holder or "nobody"), 0.0, 0.0, 0.0)
    return Lease(
        holder=str(holder),
        acquired_at=acquired if acquired is not None else renewed,
        renewed_at=renewed,
        duration_seconds=float(duration),
        requested_by=str(annotations.get(_REQUEST_ANNOTATION) or "") or None,
    )


class KubernetesLeaseStore:
    """A :class:`~controller.ports.LeaseStore` of Lease objects in ``namespace``.

    Without ``api_client`` the Kubernetes client is built on first use, from the pod's service
    account or else the kubeconfig.
    """

    def __init__(
        self,
        namespace: str,
        *,
        api_client: ApiClient | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.namespace = namespace
        self._custom_objects = CustomObjects(api_client)
        self._timeout = timeout_seconds
        #: The object last read or written per release name, to replace it from.
        self._seen: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"KubernetesLeaseStore(namespace={self.namespace!r})"

    def close(self) -> None:
        """Close the Kubernetes client this store built."""
        self._custom_objects.close()

    # -- the LeaseStore protocol -------------------------------------------------------------------

    def read(self, name: str) -> tuple[Lease, str] | None:
        document = self._get(name)
        if document is None:
            return None
        return lease_of(document), _version(document)

    def swap(self, name: str, expected: str | None, lease: Lease | None) -> bool:
        if lease is None:
            return self._delete(name, expected)
        if expected is None:
            return self._create(name, lease)
        previous = self._seen.get(name)
        if previous is None or _version(previous) != expected:
            previous = self._get(name)
            if previous is None or _version(previous) != expected:
                return False
        body = lease_object(name, lease, self.namespace, previous)
        written = self._call("update", name, "replace_namespaced_custom_object", body=body)
        return self._remember(name, written)

    # -- the API calls ----------------------------------------------------------------------------

    def _get(self, name: str) -> dict[str, Any] | None:
        document = self._call("get", name, "get_namespaced_custom_object")
        if document is None:
            self._seen.pop(name, None)
            return None
        recorded = ((document.get("metadata") or {}).get("annotations") or {}).get(_NAME_ANNOTATION)
        if recorded is not None and recorded != name:
            raise ConfigError(
                f"Lease {self.namespace}/{lease_object_name(name)} is the lease of {recorded}, "
                f"not {name}: rename one of the two releases"
            )
        self._seen[name] = document
        return document

    def _create(self, name: str, lease: Lease) -> bool:
        body = lease_object(name, lease, self.namespace)
        return self._remember(
            name, self._call("create", name, "create_namespaced_custom_object", body=body)
        )

    def _delete(self, name: str, expected: str | None) -> bool:
        if expected is None:
            return self._get(name) is None
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"resourceVersion": expected},
        }
        deleted = self._call("delete", name, "delete_namespaced_custom_object", body=options)
        self._seen.pop(name, None)
        return deleted is not None

    def _remember(self, name: str, document: dict[str, Any] | None) -> bool:
        if document is None:
            self._seen.pop(name, None)
            return False
        self._seen[name] = document
        return True

    def _call(
        self, verb: str, name: str, method: str, *, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """One request; None when it lost (409, or 404 of the object itself), the object
        otherwise; every other failure is a :class:`~controller.errors.SluiceError`."""
        from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

        api = self._custom_objects.api()
        obj = lease_object_name(name)
        what = f"Lease {self.namespace}/{obj}"
        request = KubernetesRequest(
            host=api_host(api),
            what=what,
            doing=f"({verb} {what})",
            forbidden=f"Sluice to {verb} {what}",
            grant=f"grant its service account get, create, update and delete on "
            f"{_PLURAL}.{_GROUP} in namespace {self.namespace} (manifests/controller/rbac.yaml)",
            resource=f"{_GROUP}/{_VERSION} {_PLURAL}",
            not_served_fix="is it a Kubernetes API server (1.14 or later)?",
            unreachable_fix="check the cluster and the kubeconfig, or set "
            "SLUICE_ROLLOUT_LEASE_STORE=git",
        )
        args: list[Any] = [_GROUP, _VERSION, self.namespace, _PLURAL]
        if verb != "create":
            args.append(obj)
        kwargs: dict[str, Any] = {"_request_timeout": self._timeout}
        if body is not None:
            kwargs["body"] = body
        try:
            answer = getattr(api, method)(*args, **kwargs)
        except ApiException as exc:
            status = int(exc.status or 0)
            if status == 409 or (status == 404 and _names_object(exc.body, obj)):
                return None
            raise _lease_api_error(request, status, str(exc.reason), exc.body) from None
        except HTTPError as exc:
            raise unreachable_error(request, exc) from None
        if not isinstance(answer, dict):
            if verb == "delete":
                return {}
            raise no_object_error(request)
        return answer


def _version(document: dict[str, Any]) -> str:
    return str((document.get("metadata") or {}).get("resourceVersion") or "")


def _names_object(body: Any, name: str) -> bool:
    """Whether a 404's Status is about the Lease, not its namespace or a missing API."""
    details = status_details(body)
    return details.get("name") == name and details.get("kind") in (None, _PLURAL, "Lease")


def _lease_api_error(
    request: KubernetesRequest, status: int, reason: str, body: Any
) -> SluiceError:
    """As :func:`~controller.backends.kubernetes_client.api_error`, and a 404 of the namespace
    names the namespace."""
    if status == 404 and status_details(body).get("kind") == "namespaces":
        namespace = request.what.removeprefix("Lease ").split("/", 1)[0]
        return ConfigError(
            f"the Kubernetes API at {request.host} has no namespace {namespace} (404) "
            f"{request.doing}; create it or set SLUICE_ROLLOUT_LEASE_NAMESPACE"
        )
    return api_error(request, status, reason)
