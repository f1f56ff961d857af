"""``python -m controller.local.kserve_graph_router --graph-json JSON``: Sluice's graph router as
KServe's router image, so that a cluster's InferenceGraphs export the series Sluice judges.

KServe's own router (Go, ``cmd/router/main.go``) exports no metrics: the step series, Switch
decisions and branch series (:mod:`controller.local.graph_metrics`) that judge a graph canary
and a graph member (``graphTraffic``) came only from the local target's router
(:mod:`controller.local.graph_router`). A cluster can replace KServe's router image: this
module is the entry point of that image (the Dockerfile's ``graph-router`` target). It runs the
local target's router (:class:`~controller.local.graph_router.GraphRouter`, the same executor,
step caller and metrics) under KServe's contract, which it reads from the process KServe starts.

KServe's contract, as read in kserve/kserve (none of its code is used here):

- **Arguments.** KServe's InferenceGraph controller starts the ``router`` image of the
  ``inferenceservice-config`` ConfigMap (``RouterConfig``: ``image``, resources, ``headers``,
  ``imagePullPolicy``, ``imagePullSecrets``; ``pkg/controller/v1alpha1/inferencegraph/
  controller.go``) with the container args ``--graph-json <the graph's spec as JSON>`` and no
  command, so the image's ENTRYPOINT gets them (``createKnativeService`` in
  ``knative_reconciler.go`` for Serverless mode, ``createInferenceGraphPodSpec`` in
  ``raw_ig.go`` for RawDeployment mode). The JSON is ``spec`` only: no name, namespace or
  annotations. ``cmd/router/main.go`` parses it with pflag (``--graph-json JSON`` and
  ``--graph-json=JSON``) and exits 1 when it is not a graph.
- **serviceUrl.** Before deploying the router, the controller fills in every ``serviceName``
  step's ``serviceUrl`` that is empty with the InferenceService's predictor endpoint
  (``GetPredictorEndpoint``: ``status.address.url`` plus the protocol's predict path, e.g.
  ``http://fraud.models.svc.cluster.local/v1/models/fraud:predict``) and requeues while a member
  is missing or not ready (``controller.go``). The router itself never looks anything up (its
  pod has ``automountServiceAccountToken: false``): it calls ``step.ServiceURL`` and nothing
  else (``executeStep``/``callService`` in ``main.go``). So does this router; a ``serviceName``
  step that arrives without a URL fails as KServe's does (``Post "": unsupported protocol
  scheme ""``, a 500 of the graph). So that the step series read alike locally and on a cluster
  (``service_url`` is a ``serviceUrl`` step's URL, empty for a ``serviceName`` step), the URL
  KServe filled in is taken as the member's endpoint rather than as the step's own
  (:func:`cluster_deployment`).
- **Environment.** ``PROPAGATE_HEADERS`` (``constants.RouterHeadersPropagateEnvVar``): the
  ``router.headers.propagate`` patterns of the ConfigMap joined by ``,``, set only when the
  setting exists (``knative_reconciler.go``, ``raw_ig.go``); unset, KServe's router propagates
  no header (``main.go``), and a pattern that does not compile is logged and skipped.
  ``spec.routerTimeouts.serviceClient`` bounds each step call (``initTimeouts``); unset, Go's
  default client waits forever and the Knative revision's ``timeout`` (``spec.timeout``, which
  KServe copies to ``TimeoutSeconds``; Knative's default 300 s) ends the request: here the step
  timeout is ``serviceClient``, else ``timeout``, else 300 s. Knative sets ``K_SERVICE`` and
  ``K_CONFIGURATION`` (the Knative Service, named after the graph) and ``K_REVISION`` in every
  revision's pod.
- **Port and probes.** The router listens on ``constants.RouterPort`` (8080) on every address
  and answers ``constants.RouterReadinessEndpoint`` (``/readyz``) 200, or 503 ``shutting
  down`` once it got SIGTERM or SIGINT; it then sleeps 30 s (``drainSleepDuration``) so the
  endpoint is taken out of rotation, shuts the server down and exits 0 (``handleSignals``).
  KServe's RawDeployment pods probe ``/readyz`` on 8080 (``constants.GetRouterReadinessProbe``);
  Knative probes the port. Every other path, any method, is the graph (``graphHandler``).
- **Pods.** KServe labels the router's pods ``serving.kserve.io/inferencegraph: <graph>``
  (``constants.InferenceGraphLabel``, set on the revision template and the Deployment).

What this router adds, and reads from its environment:

- ``GET /metrics``: the step series (each call labelled with the member revision that answered,
  from the member's ``X-Sluice-Revision``: Sluice's model server adds it on a cluster from
  ``K_REVISION``, :mod:`controller.local.serving.revision_header`), the Switch decisions and the
  branch series, under the metrics profile ``SLUICE_METRICS_PROFILE`` (a built-in profile's
  name; ``knative-otel`` when unset). Not the graph's request series: the Knative queue-proxy in
  front of the router counts those. Not the outcome series: they read the prediction log, which
  only the local target has (README). ``/metrics`` and ``/_sluice/...`` (the replay,
  :mod:`controller.local.graph_router`) are kept from the graph, as locally.
- The router's revision (the branch series' revision label and each answer's
  ``X-Sluice-Revision``): ``K_REVISION``; without it (RawDeployment) ``<graph>-`` and the first
  ten hex digits of the SHA-256 of ``--graph-json``, one per spec as a Knative revision is.
- The graph's name: ``SLUICE_GRAPH_NAME``, else ``K_SERVICE``, else the pod's name
  (``HOSTNAME``) without the Deployment's two hash suffixes (RawDeployment names the
  Deployment after the graph).
- The namespace (the profile's namespace label): ``SLUICE_NAMESPACE``, else the service
  account's namespace file (``/var/run/secrets/kubernetes.io/serviceaccount/namespace``), else
  the namespace of the members' cluster-local URLs (``<service>.<namespace>.svc...``: KServe's
  router pods mount no service-account token, so the file is normally absent), else
  ``default``.
- ``SLUICE_GRAPH_ROUTER_PORT``: another port than KServe's fixed 8080 (tests);
  ``SLUICE_DRAIN_SECONDS``: another drain than 30 s (tests).

Not reproduced: KServe's server read, write and idle timeouts (``routerTimeouts.server*``); a
stop closes connections still open after the drain rather than waiting for them; ``https``
step URLs are refused (502) where KServe's router calls them, or calls them over http inside
an Istio mesh; cluster-local InferenceService addresses are ``http``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from controller.gates.metrics_profile import BUILTIN_PROFILES, DEFAULT_PROFILE, MetricsProfile
from controller.local.graph.spec import GraphSpecError, InferenceGraph, parse_inference_graph
from controller.local.graph_router import GraphDeployment, GraphRouter
from controller.local.serving.http1 import Request, encode_response

__all__ = [
    "KSERVE_ROUTER_PORT",
    "READINESS_PATH",
    "KServeGraphRouter",
    "RouterSettings",
    "RouterSetupError",
    "cluster_deployment",
    "main",
    "router_settings",
]

#: ``constants.RouterPort``: where KServe's router listens (its probes and Services say so).
KSERVE_ROUTER_PORT = 8080
#: ``constants.RouterReadinessEndpoint``.
READINESS_PATH = b"/readyz"
#: ``constants.RouterHeadersPropagateEnvVar``.
PROPAGATE_ENV = "PROPAGATE_HEADERS"
#: ``drainSleepDuration`` of KServe's router.
DRAIN_SECONDS = 30.0
#: Where a pod with a service-account token finds its namespace.
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Seconds a step call may take when the spec bounds neither it nor the request (Knative's
#: default revision timeout).
DEFAULT_STEP_TIMEOUT = 300.0

PORT_ENV = "SLUICE_GRAPH_ROUTER_PORT"
DRAIN_ENV = "SLUICE_DRAIN_SECONDS"
NAMESPACE_ENV = "SLUICE_NAMESPACE"
GRAPH_NAME_ENV = "SLUICE_GRAPH_NAME"
PROFILE_ENV = "SLUICE_METRICS_PROFILE"

# A cluster-local Service hostname: <service>.<namespace>.svc[.<cluster domain>].
_CLUSTER_LOCAL = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.|$)"
)
# A Deployment's pod name: <deployment>-<pod-template-hash>-<5 characters>.
_POD_SUFFIXES = re.compile(r"-[a-z0-9]{1,10}-[a-z0-9]{5}$")
_log = logging.getLogger("sluice.graph_router")


class RouterSetupError(ValueError):
    """The process was started with something it cannot serve; the message says what."""


@dataclass(frozen=True)
class RouterSettings:
    """What the router reads from KServe's args and its environment (the module's doc)."""

    graph: str
    namespace: str
    revision: str
    port: int
    drain_seconds: float
    profile: MetricsProfile
    propagate_headers: tuple[str, ...]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """KServe's router's flags (``--graph-json``)."""
    parser = argparse.ArgumentParser(
        prog="python -m controller.local.kserve_graph_router",
        description="Serve one InferenceGraph as KServe's router does, with Sluice's metrics.",
        allow_abbrev=False,
    )
    parser.add_argument("--graph-json", required=True, help="the InferenceGraph's spec as JSON")
    return parser.parse_args(argv)


def router_settings(
    graph_json: str,
    spec: Mapping[str, Any],
    env: Mapping[str, str],
    namespace_file: Path = NAMESPACE_FILE,
) -> RouterSettings:
    """The settings of the router of ``spec`` (given as ``graph_json``) in environment
    ``env``; :class:`RouterSetupError` for an unknown profile or a malformed number."""
    graph = env.get(GRAPH_NAME_ENV) or env.get("K_SERVICE") or _deployment_of(env.get("HOSTNAME"))
    digest = hashlib.sha256(graph_json.encode()).hexdigest()[:10]
    revision = env.get("K_REVISION") or f"{graph or 'graph'}-{digest}"
    profile_name = env.get(PROFILE_ENV) or DEFAULT_PROFILE
    profile = BUILTIN_PROFILES.get(profile_name)
    if profile is None:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise RouterSetupError(f"{PROFILE_ENV}={profile_name!r} is not one of {known}")
    return RouterSettings(
        graph=graph,
        namespace=_namespace(env, namespace_file, spec),
        revision=revision,
        port=int(_number(env, PORT_ENV, KSERVE_ROUTER_PORT)),
        drain_seconds=_number(env, DRAIN_ENV, DRAIN_SECONDS),
        profile=profile,
        propagate_headers=_patterns(env.get(PROPAGATE_ENV)),
    )


def cluster_deployment(spec: Mapping[str, Any], settings: RouterSettings) -> GraphDeployment:
    """What the router serves: the graph of ``spec``, each ``serviceName``'s URL (the one
    KServe filled in, when all its steps got the same), and the router's revision;
    :class:`~controller.local.graph.spec.GraphSpecError` when ``spec`` is no graph."""
    graph = parse_inference_graph(
        {"metadata": {"name": settings.graph, "namespace": settings.namespace}, "spec": spec}
    )
    urls = _member_urls(graph)
    nodes = {
        name: replace(
            node,
            steps=tuple(
                replace(step, target=replace(step.target, service_url=""))
                if step.target.service_name in urls
                else step
                for step in node.steps
            ),
        )
        for name, node in graph.nodes.items()
    }
    return GraphDeployment(
        replace(graph, nodes=nodes), urls, settings.revision, _step_timeout(spec)
    )


class KServeGraphRouter(GraphRouter):
    """The graph's router with KServe's readiness endpoint; no request series (the
    queue-proxy's on a cluster)."""

    def __init__(self, settings: RouterSettings, host: str = "0.0.0.0") -> None:  # noqa: S104
        super().__init__(
            graph=settings.graph,
            namespace=settings.namespace,
            host=host,
            port=settings.port,
            metrics_profile=settings.profile,
            propagate_headers=settings.propagate_headers,
            request_metrics=False,
        )
        #: Set on SIGTERM: ``/readyz`` answers 503 from then on.
        self.shutting_down = False

    async def handle(self, request: Request) -> bytes:
        if request.url.split(b"?", 1)[0] == READINESS_PATH:
            if self.shutting_down:  # Go's http.Error
                headers = [
                    (b"Content-Type", b"text/plain; charset=utf-8"),
                    (b"X-Content-Type-Options", b"nosniff"),
                ]
                return encode_response(503, headers, b"shutting down\n")
            return encode_response(200, [], b"")
        return await super().handle(request)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the graph until SIGTERM or SIGINT, then drain and exit 0; 1 when ``--graph-json``
    is not a graph (as KServe's router), 2 when the environment is malformed."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    args = parse_args(argv)
    try:
        spec = json.loads(args.graph_json)
        if not isinstance(spec, dict):
            raise GraphSpecError("the graph JSON is not an object")
    except (ValueError, GraphSpecError) as exc:
        _log.error("failed to unmarshall inference graph json: %s", exc)
        return 1
    try:
        settings = router_settings(args.graph_json, spec, os.environ)
    except RouterSetupError as exc:
        _log.error("%s", exc)
        return 2
    try:
        deployment = cluster_deployment(spec, settings)
    except GraphSpecError as exc:
        _log.error("failed to unmarshall inference graph json: %s", exc)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stop.set())
    router = KServeGraphRouter(settings)
    router.deploy(deployment)
    router.start()
    _log.info(
        "InferenceGraph %s (revision %s, namespace %s) listening on :%d, metrics profile %s",
        settings.graph, settings.revision, settings.namespace, settings.port,
        os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE,
    )  # fmt: skip
    stop.wait()
    router.shutting_down = True
    _log.info("shutting down: %gs for the endpoint to leave rotation", settings.drain_seconds)
    # Further signals are ignored, as KServe's router reads only the first.
    threading.Event().wait(settings.drain_seconds)
    router.stop()
    _log.info("server shut down")
    return 0


def _deployment_of(pod: str | None) -> str:
    """The Deployment a pod named ``pod`` belongs to ("" when it is not one's)."""
    if not pod:
        return ""
    return _POD_SUFFIXES.sub("", pod) if _POD_SUFFIXES.search(pod) else ""


def _namespace(env: Mapping[str, str], namespace_file: Path, spec: Mapping[str, Any]) -> str:
    if env.get(NAMESPACE_ENV):
        return env[NAMESPACE_ENV]
    try:
        written = namespace_file.read_text().strip()
    except OSError:
        written = ""
    if written:
        return written
    for url in _step_urls(spec):
        host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        match = _CLUSTER_LOCAL.match(host)
        if match:
            return match.group(2)
    return "default"


def _step_urls(spec: Mapping[str, Any]) -> list[str]:
    nodes = spec.get("nodes")
    if not isinstance(nodes, Mapping):
        return []
    return [
        str(step["serviceUrl"])
        for node in nodes.values()
        if isinstance(node, Mapping) and isinstance(node.get("steps"), list)
        for step in node["steps"]
        if isinstance(step, Mapping) and step.get("serviceName") and step.get("serviceUrl")
    ]


def _member_urls(graph: InferenceGraph) -> dict[str, str]:
    """Each ``serviceName``'s URL where every step naming it has the same (KServe's filling)."""
    seen: dict[str, set[str]] = {}
    for node in graph.nodes.values():
        for step in node.steps:
            if step.target.service_name and step.target.service_url:
                seen.setdefault(step.target.service_name, set()).add(step.target.service_url)
    unfilled = {
        step.target.service_name
        for node in graph.nodes.values()
        for step in node.steps
        if step.target.service_name and not step.target.service_url
    }
    return {
        name: next(iter(urls))
        for name, urls in seen.items()
        if len(urls) == 1 and name not in unfilled
    }


def _step_timeout(spec: Mapping[str, Any]) -> float:
    timeouts = spec.get("routerTimeouts")
    for value in (
        timeouts.get("serviceClient") if isinstance(timeouts, Mapping) else None,
        spec.get("timeout"),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return float(value)
    return DEFAULT_STEP_TIMEOUT


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise RouterSetupError(f"{name}={value!r} is not a number") from None
    if not 0 <= number < float("inf"):
        raise RouterSetupError(f"{name}={value!r} is not a non-negative number")
    return number


def _patterns(value: str | None) -> tuple[str, ...]:
    """``PROPAGATE_HEADERS`` as KServe's router reads it: comma-separated regular expressions,
    none when unset; one that does not compile is logged and left out."""
    if value is None:
        return ()
    patterns = []
    for pattern in value.split(","):
        try:
            re.compile(pattern)
        except re.error as exc:
            _log.error("failed to compile pattern %r: %s", pattern, exc)
            continue
        patterns.append(pattern)
    return tuple(patterns)


if __name__ == "__main__":
    raise SystemExit(main())
