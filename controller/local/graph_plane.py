"""The InferenceGraphs of one environment, as KServe's InferenceGraph controller runs them.

An InferenceGraph Argo CD applies gets, from KServe's controller, a router once every
``serviceName`` step resolves to its InferenceService's predictor endpoint
(:mod:`controller.local.graph.endpoints`), and a ``status`` (:mod:`controller.local.graph.status`:
none until then, ``Ready`` and ``url`` after). :class:`GraphPlane` does both each pass of the
runtime, from the InferenceServices as they are at that pass:

- each graph has a router on a stable port (:mod:`controller.local.graph_router`), which
  answers 503 until its first deployment;
- a deployment is the graph's spec with its step URLs; a spec that changed, or a URL, is a new
  deployment (and a new revision of the router, ``<graph>-0000K``) once every service of the
  *new* spec resolves: until then the router goes on answering with the previous one, as
  KServe's reconcile stops before it updates the router;
- the graph's health is Argo CD's with Sluice's check (the graph's ``Ready`` condition).

Routing needs gjson-py (the ``graph`` extra): the router's modules are imported with the first
graph, and a graph synced where the extra is missing is refused with the fix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.errors import ManifestInvalid
from controller.gates.metrics_profile import DEFAULT_PROFILE, MetricsProfile, resolve_profile
from controller.local.graph.endpoints import resolve_service_urls
from controller.local.graph.headers import DEFAULT_PROPAGATED_HEADERS
from controller.local.graph.spec import InferenceGraph, parse_inference_graph
from controller.local.graph.status import STOP_ANNOTATION, graph_status, has_predictor_endpoint
from controller.local.state import utc_now
from controller.manifests.deployment_mode import deployment_mode
from controller.manifests.inference_graph import validate_inferencegraph

if TYPE_CHECKING:
    from controller.local.graph_outcomes import OutcomeReader
    from controller.local.graph_router import GraphRouter

__all__ = ["GRAPH_PORT_PREFIX", "AppliedGraph", "GraphPlane", "graph_refusal"]

#: The key of a graph's router port among the runtime's ports (InferenceServices use the name).
GRAPH_PORT_PREFIX = "InferenceGraph/"
#: KServe's router's client has no timeout of its own; a hung member must not hold a local
#: request for ever.
_SERVICE_TIMEOUT_SECONDS = 300.0
_log = logging.getLogger("sluice.local.runtime")


def graph_refusal(document: Mapping[str, Any]) -> str:
    """Why the local target's API server refuses an InferenceGraph ("" when it admits it):
    the CRD's schema and KServe's webhook, as a cluster's would, or the missing extra."""
    name = (document.get("metadata") or {}).get("name", "?")
    try:
        validate_inferencegraph(document, source=f"InferenceGraph {name}", sluice_rules=False)
    except ManifestInvalid as exc:
        return exc.message
    if importlib.util.find_spec("gjson") is None:
        return (
            f"InferenceGraph {name}: the local target routes graphs with gjson-py, which is "
            "not installed: pip install 'sluice[graph]' (make setup installs it)"
        )
    return ""


@dataclass
class AppliedGraph:
    """One applied InferenceGraph: its manifest, router, status and deployment."""

    document: dict[str, Any]
    router: GraphRouter
    generation: int = 0
    status: dict[str, Any] | None = None  # None until KServe writes one
    health: dict[str, str] = field(default_factory=dict)
    #: Why the last sync's manifest was refused ("" once one is applied).
    refused: str = ""
    #: KServe's reconcile error while a service does not resolve ("" when none).
    waiting: str = ""
    counter: int = 0  # revisions of the router
    deployed: str = ""  # the fingerprint of the deployment the counter names

    @property
    def name(self) -> str:
        return str(self.document["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.document["metadata"].get("namespace") or "default")

    @property
    def revision(self) -> str:
        """The router's revision, as Knative names the revisions of the graph's service."""
        return f"{self.name}-{self.counter:05d}"

    @property
    def problem(self) -> str:
        """Why it does not serve what Git asks, in one line ("" when nothing is wrong)."""
        return f"not applied: {self.refused}" if self.refused else self.waiting

    def to_object(self) -> dict[str, Any]:
        """The InferenceGraph as the Kubernetes API would return it."""
        metadata = dict(self.document.get("metadata", {}), generation=self.generation)
        obj = {
            "apiVersion": self.document.get("apiVersion", "serving.kserve.io/v1alpha1"),
            "kind": "InferenceGraph",
            "metadata": metadata,
            "spec": self.document.get("spec", {}),
        }
        return obj | ({"status": self.status} if self.status is not None else {})


class GraphPlane:
    """The InferenceGraphs of one environment, each with its router."""

    def __init__(
        self,
        port: Callable[[str], int],
        metrics_profile: MetricsProfile | None = None,
        propagate_headers: Sequence[str] = DEFAULT_PROPAGATED_HEADERS,
        prediction_log: OutcomeReader | None = None,
    ) -> None:
        self._port = port
        #: The runtime's prediction log, which each router reads its outcome series from.
        self.prediction_log = prediction_log
        #: What every graph's router passes on to its steps (KServe's ``headers.propagate``).
        self.propagate_headers = tuple(propagate_headers)
        self.graphs: dict[str, AppliedGraph] = {}
        self.metrics_profile = metrics_profile or resolve_profile(DEFAULT_PROFILE)

    def set_metrics_profile(self, profile: MetricsProfile) -> None:
        """Export request metrics under ``profile`` from every graph router, now and later."""
        self.metrics_profile = profile
        for graph in self.graphs.values():
            graph.router.set_metrics_profile(profile)

    def apply(self, document: dict[str, Any]) -> str:
        """Apply an admitted InferenceGraph; ``kubectl apply``'s verb for it."""
        name = str(document["metadata"]["name"])
        graph = self.graphs.get(name)
        if graph is None:
            graph = self.graphs[name] = AppliedGraph(document, self.new_router(document))
            verb = "created"
        else:
            verb = "unchanged" if graph.document == document else "configured"
        if graph.generation == 0 or graph.document.get("spec") != document.get("spec"):
            graph.generation += 1
        graph.document, graph.refused = document, ""
        return verb

    def refuse(self, name: str, message: str) -> None:
        """Say why the last sync's manifest of ``name`` was refused; it keeps what it runs."""
        if name in self.graphs:
            self.graphs[name].refused = message

    def resume(self, graph: AppliedGraph) -> None:
        """Take back a graph saved before a restart (its router not deployed yet)."""
        self.graphs[graph.name] = graph

    def reconcile(self, isvcs: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
        """One KServe pass over every graph, given the InferenceService objects; each graph's
        health as Argo CD's check reads it."""
        from controller.backends.argocd_health import inferencegraph_health  # imports lupa

        objects = list(isvcs)
        healths = {}
        for graph in self.graphs.values():
            same_namespace = {
                str(o["metadata"]["name"]): o
                for o in objects
                if str(o["metadata"].get("namespace") or "default") == graph.namespace
            }
            parsed = parse_inference_graph(graph.document)
            self._deploy(graph, parsed, same_namespace)
            ready = {name: has_predictor_endpoint(o) for name, o in same_namespace.items()}
            graph.status = graph_status(
                parsed, ready, graph.status, now=utc_now(), url=graph.router.url,
                deployment_mode=deployment_mode(graph.document),
            )  # fmt: skip
            health = inferencegraph_health(graph.to_object())
            graph.health = {"status": health.status, "message": health.message}
            healths[graph.name] = (health.status, health.message)
        return healths

    def _deploy(
        self, graph: AppliedGraph, parsed: InferenceGraph, isvcs: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Deploy what KServe's reconcile would: nothing while stopped, the new spec once all
        its services resolve, else keep what runs."""
        from controller.local.graph_router import GraphDeployment

        router = graph.router
        if parsed.annotations.get(STOP_ANNOTATION, "").lower() == "true":
            graph.waiting = ""
            router.deploy(None, f"it is stopped ({STOP_ANNOTATION})")
            return
        resolution = resolve_service_urls(parsed, isvcs)
        graph.waiting = resolution.problem
        if resolution.problem:
            if router.deployment is None:
                router.deploy(None, resolution.problem)
            return
        spec = graph.document.get("spec") or {}
        fingerprint = _fingerprint(spec, resolution.urls)
        if fingerprint != graph.deployed:
            graph.counter += 1
            graph.deployed = fingerprint
        running = router.deployment
        if running is None or running.revision != graph.revision:
            router.deploy(GraphDeployment(parsed, resolution.urls, graph.revision, _timeout(spec)))
            _log.info("%s: router revision %s serves the graph", graph.name, graph.revision)

    def new_router(self, document: Mapping[str, Any]) -> GraphRouter:
        """A started router for ``document``'s graph, on its stable port."""
        from controller.local.graph_router import GraphRouter

        metadata = document.get("metadata") or {}
        name = str(metadata["name"])
        router = GraphRouter(
            graph=name,
            namespace=str(metadata.get("namespace") or "default"),
            port=self._port(GRAPH_PORT_PREFIX + name),
            metrics_profile=self.metrics_profile,
            propagate_headers=self.propagate_headers,
            prediction_log=self.prediction_log,
        )
        return router.start()

    def router_ports(self) -> list[int]:
        """The ports of the graphs' routers, for Prometheus to scrape."""
        return [graph.router.port for graph in self.graphs.values()]

    def remove(self, name: str) -> None:
        """Delete a graph that left Git: its router stops."""
        self.graphs.pop(name).router.stop()

    def shutdown(self) -> None:
        """Stop every graph's router."""
        for graph in self.graphs.values():
            graph.router.stop()


def _fingerprint(spec: Mapping[str, Any], urls: Mapping[str, str]) -> str:
    """What KServe passes its router (``--graph-json``): the spec with the resolved URLs."""
    text = json.dumps({"spec": spec, "urls": dict(urls)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _timeout(spec: Mapping[str, Any]) -> float:
    """``routerTimeouts.serviceClient`` (seconds), else the local default."""
    value = (spec.get("routerTimeouts") or {}).get("serviceClient")
    return float(value) if isinstance(value, int) and value > 0 else _SERVICE_TIMEOUT_SECONDS
