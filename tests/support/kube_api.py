"""A Kubernetes API server and Argo CD on 127.0.0.1, as far as Sluice talks to them.

- ``coordination.k8s.io/v1`` Leases: GET, POST, PUT and DELETE with the API server's own
  optimistic concurrency: every write bumps ``metadata.resourceVersion``; a create of an
  existing name is 409 AlreadyExists, a replace from another resourceVersion or a delete whose
  ``preconditions.resourceVersion`` is stale is 409 Conflict, a missing object 404 NotFound, a
  namespace the server does not have 404 on ``namespaces``. Written objects are checked as the
  API server validates a Lease (DNS-1123 subdomain name, label values, MicroTime fields with
  microseconds, an integer ``leaseDurationSeconds``): 422 Invalid otherwise.
- InferenceServices (GET ``/apis/serving.kserve.io/v1beta1/...``) and Argo CD's
  ``GET /api/v1/applications/NAME`` from dicts a test fills in.

Every Kubernetes request needs ``Authorization: Bearer KUBE_TOKEN`` (401 otherwise); ``forbid``
answers 403 to the Lease verbs named in it, as a missing RBAC rule does.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ARGOCD_TOKEN", "KUBE_TOKEN", "KubeApi", "kube_api", "write_kubeconfig"]

KUBE_TOKEN = "kube-sa-token-lease-0123456789abcdef"
ARGOCD_TOKEN = "argocd-api-token-lease-9f8e7d6c5b4a"

LEASES = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/?]+))?$")
ISVC = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices/([^/]+)$"
)
APPLICATION = re.compile(r"^/api/v1/applications/([^/]+)$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class KubeApi(ThreadingHTTPServer):
    """The server; ``leases`` maps (namespace, name) to the stored object."""

    daemon_threads = True

    def __init__(self, namespaces: tuple[str, ...] = ("sluice",)) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.namespaces = set(namespaces)
        self.lock = threading.Lock()
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.isvcs: dict[tuple[str, str], dict[str, Any]] = {}
        self.applications: dict[str, dict[str, Any]] = {}
        self.forbid: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self._versions = itertools.count(100)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_version(self) -> str:
        return str(next(self._versions))


@contextmanager
def kube_api(namespaces: tuple[str, ...] = ("sluice",)) -> Iterator[KubeApi]:
    """A running server, shut down after."""
    server = KubeApi(namespaces)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def write_kubeconfig(path: Path, url: str, token: str = KUBE_TOKEN) -> Path:
    """A kubeconfig whose current context reaches ``url`` with ``token``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "sluice", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "sluice"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _status(code: int, reason: str, message: str, details: Any = None) -> dict[str, Any]:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    status |= {"message": message, "reason": reason, "code": code}
    return status | ({"details": details} if details else {})


def lease_problems(document: Any, namespace: str, name: str | None) -> list[str]:
    """What the API server's validation of a Lease would refuse."""
    if not isinstance(document, dict):
        return ["body is not an object"]
    problems = []
    metadata = document.get("metadata") or {}
    if (document.get("apiVersion"), document.get("kind")) != ("coordination.k8s.io/v1", "Lease"):
        problems.append("apiVersion/kind")
    object_name = metadata.get("name") or ""
    if not SUBDOMAIN.match(object_name) or len(object_name) > 253:
        problems.append(f"metadata.name {object_name!r}")
    if name is not None and object_name != name:
        problems.append("metadata.name does not match the path")
    if metadata.get("namespace") not in (None, namespace):
        problems.append("metadata.namespace does not match the path")
    for key, value in (metadata.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"label {key}={value!r}")
    spec = document.get("spec") or {}
    allowed = {
        "holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
        "leaseTransitions", "strategy", "preferredHolder",
    }  # fmt: skip
    problems += [f"unknown spec.{key}" for key in set(spec) - allowed]
    for key in ("acquireTime", "renewTime"):
        if key in spec and not MICROTIME.match(str(spec[key])):
            problems.append(f"spec.{key} {spec[key]!r} is not a MicroTime")
    for key in ("leaseDurationSeconds", "leaseTransitions"):
        if key in spec and (type(spec[key]) is not int or spec[key] < 0):
            problems.append(f"spec.{key} {spec[key]!r} is not a non-negative integer")
    return problems


class _Handler(BaseHTTPRequestHandler):
    server: KubeApi

    def _route(self, method: str) -> None:
        self.server.requests.append((method, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        authorization = self.headers.get("Authorization")
        if match := APPLICATION.match(path):
            if authorization != f"Bearer {ARGOCD_TOKEN}":
                self._reply(401, {"error": "invalid session", "code": 16})
            elif (document := self.server.applications.get(match.group(1))) is None:
                self._reply(403, {"error": "permission denied", "code": 7})
            else:
                self._reply(200, document)
            return
        if authorization != f"Bearer {KUBE_TOKEN}":
            self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
        elif (match := ISVC.match(path)) and method == "GET":
            document = self.server.isvcs.get((match.group(1), match.group(2)))
            if document is None:
                details = {"name": match.group(2), "group": "serving.kserve.io",
                           "kind": "inferenceservices"}  # fmt: skip
                self._reply(404, _status(404, "NotFound", "not found", details))
            else:
                self._reply(200, document)
        elif match := LEASES.match(path):
            self._lease(method, match.group(1), match.group(2), body)
        else:
            self._reply(404, "404 page not found", content_type="text/plain")

    def _lease(self, method: str, namespace: str, name: str | None, body: Any) -> None:
        verb = {"GET": "get", "POST": "create", "PUT": "update", "DELETE": "delete"}[method]
        if verb in self.server.forbid:
            message = (
                f'leases.coordination.k8s.io is forbidden: User "system:serviceaccount:x:y" '
                f'cannot {verb} resource "leases" in API group "coordination.k8s.io" in the '
                f'namespace "{namespace}"'
            )
            self._reply(403, _status(403, "Forbidden", message))
            return
        if namespace not in self.server.namespaces:
            details = {"name": namespace, "kind": "namespaces"}
            self._reply(
                404, _status(404, "NotFound", f'namespaces "{namespace}" not found', details)
            )
            return
        if (name is None) != (method == "POST"):
            self._reply(405, _status(405, "MethodNotAllowed", "method not allowed"))
            return
        with self.server.lock:
            code, answer = self._lease_locked(method, namespace, name, body)
        self._reply(code, answer)

    def _lease_locked(
        self, method: str, namespace: str, name: str | None, body: Any
    ) -> tuple[int, Any]:
        leases = self.server.leases
        if method in ("POST", "PUT"):
            problems = lease_problems(body, namespace, name)
            if problems:
                return 422, _status(422, "Invalid", "; ".join(problems))
            name = name or body["metadata"]["name"]
        assert name is not None
        key = (namespace, name)
        current = leases.get(key)
        details = {"name": name, "group": "coordination.k8s.io", "kind": "leases"}
        what = f'leases.coordination.k8s.io "{name}"'
        missing = _status(404, "NotFound", f"{what} not found", details)
        conflict = _status(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {what}: the object has been modified; please "
            "apply your changes to the latest version and try again",
            details,
        )
        if method == "GET":
            return (404, missing) if current is None else (200, current)
        if method == "POST":
            if current is not None:
                return 409, _status(409, "AlreadyExists", f"{what} already exists", details)
            return 201, self._store(key, body, f"uid-{name}")
        if method == "PUT":
            if current is None:
                return 404, missing
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                return 409, conflict
            return 200, self._store(key, body, current["metadata"]["uid"])
        # DELETE
        if current is None:
            return 404, missing
        wanted = ((body or {}).get("preconditions") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            return 409, conflict
        del leases[key]
        return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                     "details": {"name": name, "kind": "leases"}}  # fmt: skip

    def _store(self, key: tuple[str, str], body: dict[str, Any], uid: str) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        version = self.server.next_version()
        stored["metadata"] |= {"namespace": key[0], "resourceVersion": version, "uid": uid}
        self.server.leases[key] = stored
        return stored

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _reply(self, code: int, body: Any, content_type: str = "application/json") -> None:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""
