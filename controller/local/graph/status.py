"""What KServe's controller reports for an InferenceGraph: its ``status``, as a pure function.

KServe's InferenceGraph reconciler (``pkg/controller/v1alpha1/inferencegraph/controller.go``)
first resolves every ``serviceName`` step to its InferenceService's predictor endpoint; when one
is not found, or has no address yet (its predictor never became ready), the reconcile ends
there with an error and the graph's ``status`` is left as it was: a new graph reports nothing
until all its services are up. Then it deploys the router and copies its state:

- Serverless: the router's Knative Service conditions (``ConfigurationsReady``, ``Ready``,
  ``RoutesReady``), and ``url`` while ``Ready`` is True;
- RawDeployment: ``Ready`` True once the router's Deployment is available, and its ``url``;

and in both a ``Stopped`` False condition. With the annotation ``serving.kserve.io/stop:
"true"`` the services are not resolved and the status becomes ``Stopped`` True and ``Ready``
False (reason ``Stopped``) with no ``url``. The local target's router runs in the runtime
itself, so it is ready as soon as the graph is deployed. ``now`` is the RFC 3339 time stamped
on conditions that change.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from controller.local.graph.spec import InferenceGraph, parse_inference_graph
from controller.local.kserve_status_values import FALSE, TRUE, Condition

__all__ = ["STOP_ANNOTATION", "graph_status", "has_predictor_endpoint"]

#: KServe's force-stop annotation.
STOP_ANNOTATION = "serving.kserve.io/stop"
_RAW = "RawDeployment"
#: A Knative Service's conditions, which KServe copies onto the graph (Serverless mode).
_KSVC_CONDITIONS = ("ConfigurationsReady", "Ready", "RoutesReady")


def has_predictor_endpoint(isvc: Mapping[str, Any]) -> bool:
    """KServe's test before a graph uses an InferenceService: ``status.address.url`` is set
    (it is once the predictor has been ready)."""
    address = (isvc.get("status") or {}).get("address") or {}
    return bool(address.get("url"))


def graph_status(
    graph: InferenceGraph | Mapping[str, Any],
    services_ready: Mapping[str, bool],
    previous: Mapping[str, Any] | None,
    *,
    now: str,
    url: str = "",
    domain: str = "example.com",
    deployment_mode: str = "Serverless",
) -> dict[str, Any] | None:
    """The graph's ``status`` after one KServe reconcile.

    ``services_ready`` maps each InferenceService of the namespace to whether it has a
    predictor endpoint (:func:`has_predictor_endpoint`); a name absent from it is not found.
    ``previous`` is the status before (None when the graph has none); it is what comes back
    when a service is missing or not ready. ``url`` is where the graph answers (the local
    router); without it, KServe's ``http://<name>.<namespace>.<domain>`` (Serverless) or
    ``http://<name>-<namespace>.<domain>`` (RawDeployment).
    """
    parsed = graph if isinstance(graph, InferenceGraph) else parse_inference_graph(graph)
    held = _held_conditions(previous)
    if parsed.annotations.get(STOP_ANNOTATION, "").lower() == "true":
        stopped = (Condition("Stopped", TRUE), Condition("Ready", FALSE, "Stopped"))
        return {"conditions": _stamped(stopped, held, now)}
    if not all(services_ready.get(name, False) for name in parsed.service_names()):
        return copy.deepcopy(dict(previous)) if previous is not None else None
    if deployment_mode == _RAW:
        conditions: tuple[Condition, ...] = (Condition("Ready", TRUE),)
        default_url = f"http://{parsed.name}-{parsed.namespace}.{domain}"
    else:
        conditions = tuple(Condition(t, TRUE) for t in _KSVC_CONDITIONS)
        default_url = f"http://{parsed.name}.{parsed.namespace}.{domain}"
    conditions += (Condition("Stopped", FALSE),)
    return {"conditions": _stamped(conditions, held, now), "url": url or default_url}


def _held_conditions(previous: Mapping[str, Any] | None) -> dict[tuple[str, ...], str]:
    """The transition time of each previous condition, keyed by what it says."""
    held: dict[tuple[str, ...], str] = {}
    for entry in (previous or {}).get("conditions") or []:
        key = tuple(str(entry.get(k, "")) for k in ("type", "status", "reason", "message"))
        held[key] = str(entry.get("lastTransitionTime", ""))
    return held


def _stamped(
    conditions: tuple[Condition, ...], held: Mapping[tuple[str, ...], str], now: str
) -> list[dict[str, str]]:
    """The conditions as dicts, keeping a transition time while a condition holds."""
    out = []
    for condition in conditions:
        key = (condition.type, condition.status, condition.reason, condition.message)
        stamp = held.get(key) or now
        out.append(condition.to_dict() | {"lastTransitionTime": stamp})
    return out
