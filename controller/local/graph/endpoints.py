"""Where a graph's ``serviceName`` steps send their requests, as KServe's controller decides.

KServe's router never looks InferenceServices up: before it deploys the router, KServe's
InferenceGraph reconciler (``pkg/controller/v1alpha1/inferencegraph/controller.go``) fills in
every ``serviceName`` step's ``serviceUrl`` (one the step already has is kept) with the
InferenceService's predictor endpoint (``GetPredictorEndpoint``): its ``status.address.url``
followed by the predict path of its protocol, ``/v1/models/<model>:predict`` for V1 (the
default) and ``/v2/models/<model>/infer`` for V2 (``protocolVersion: v2``). The router then
POSTs each step's request to that URL, so it passes through the InferenceService's own
route (Knative's traffic split, its queue-proxies, their request metrics) like any other
client's.

The model is the InferenceService's name (KServe takes a ``--model_name`` argument first;
the local model servers serve every InferenceService under its own name). An
InferenceService that does not exist, or has no ``status.address.url`` yet (it has never been
ready), stops the reconcile with KServe's error (``Failed to find graph service <name>``,
``service <name> is not ready``): the graph's router is not (re)deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.local.graph.spec import InferenceGraph

__all__ = ["Resolution", "predict_path", "predictor_endpoint", "resolve_service_urls"]

_V2 = "v2"


def predict_path(model: str, protocol: str = "v1") -> str:
    """KServe's ``PredictPath``: the path a graph step calls on an InferenceService."""
    if protocol == _V2:
        return f"/v2/models/{model}/infer"
    return f"/v1/models/{model}:predict"


def _protocol(isvc: Mapping[str, Any]) -> str:
    """``protocolVersion`` of the predictor's implementation (``model``, or a framework key)."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    for key in ("model", *sorted(predictor)):
        part = predictor.get(key)
        if isinstance(part, Mapping) and part.get("protocolVersion"):
            return str(part["protocolVersion"])
    return "v1"


def predictor_endpoint(isvc: Mapping[str, Any]) -> str:
    """The URL a graph step naming ``isvc`` (an InferenceService object) calls; "" while it
    has no ``status.address.url``."""
    address = ((isvc.get("status") or {}).get("address") or {}).get("url")
    if not address:
        return ""
    name = str((isvc.get("metadata") or {}).get("name", ""))
    return f"{str(address).rstrip('/')}{predict_path(name, _protocol(isvc))}"


@dataclass(frozen=True)
class Resolution:
    """Each ``serviceName``'s step URL, or why KServe would not deploy the router yet."""

    urls: Mapping[str, str] = field(default_factory=dict)
    problem: str = ""  # KServe's reconcile error; "" when every service resolved


def resolve_service_urls(
    graph: InferenceGraph, isvcs: Mapping[str, Mapping[str, Any]]
) -> Resolution:
    """The step URL of every InferenceService ``graph`` names, from the InferenceService
    objects of its namespace by name; the first one that cannot be resolved stops it."""
    urls: dict[str, str] = {}
    for name in graph.service_names():
        isvc = isvcs.get(name)
        if isvc is None:
            return Resolution(problem=f"Failed to find graph service {name}")
        url = predictor_endpoint(isvc)
        if not url:
            return Resolution(problem=f"service {name} is not ready")
        urls[name] = url
    return Resolution(urls)
