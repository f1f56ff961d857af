"""A KServe InferenceGraph's spec as typed values: nodes, their router type and their steps.

KServe's router reads the graph's ``spec`` as JSON (``--graph-json``) into
``v1alpha1.InferenceGraphSpec``; this is the same reading, from the object as a plain dict (a
manifest, or what the local target applied). It checks only what routing relies on; the
CRD's schema and KServe's webhook rules are checked before a graph is committed
(:mod:`controller.manifests.inference_graph`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller.manifests.inference_graph import ROOT_NODE

__all__ = [
    "ROOT_NODE",
    "Dependency",
    "GraphSpecError",
    "InferenceGraph",
    "Node",
    "RouterType",
    "Step",
    "StepTarget",
    "parse_inference_graph",
]


class GraphSpecError(ValueError):
    """The object is not an InferenceGraph the router can read."""


class RouterType(StrEnum):
    """How a node routes a request between its steps (the CRD's ``routerType`` enum)."""

    SEQUENCE = "Sequence"
    SPLITTER = "Splitter"
    ENSEMBLE = "Ensemble"
    SWITCH = "Switch"


class Dependency(StrEnum):
    """Whether a step's failure decides the node's answer (``Hard``) or not (``Soft``, and
    unset, which KServe's router treats alike)."""

    SOFT = "Soft"
    HARD = "Hard"


@dataclass(frozen=True)
class StepTarget:
    """Where a step sends its request: another node of the graph, an InferenceService of the
    graph's namespace (KServe resolves it to the service's predictor endpoint), or a URL.
    Exactly one is set in a valid graph."""

    node_name: str = ""
    service_name: str = ""
    service_url: str = ""

    @property
    def is_node(self) -> bool:
        """The router recurses into ``node_name`` rather than calling a service."""
        return bool(self.node_name)


@dataclass(frozen=True)
class Step:
    """One step of a node (``v1alpha1.InferenceStep``)."""

    target: StepTarget
    name: str = ""
    data: str = ""  # "$request" or "$response" (Sequence)
    weight: int | None = None  # Splitter
    condition: str = ""  # GJSON (Switch, Sequence)
    dependency: Dependency = Dependency.SOFT
    map_predictions_to_instances: bool = False  # Sequence

    @property
    def hard(self) -> bool:
        """A failed answer of this step decides its node's answer."""
        return self.dependency is Dependency.HARD


@dataclass(frozen=True)
class Node:
    """A router node: its type and its steps, in order."""

    router_type: str  # a RouterType; anything else answers 500 as KServe's router does
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class InferenceGraph:
    """The graph: its name and namespace, and its nodes by name (``root`` is entered first)."""

    name: str
    namespace: str
    nodes: Mapping[str, Node]
    annotations: Mapping[str, str]

    def service_names(self) -> tuple[str, ...]:
        """The InferenceServices the graph's steps name, each once, in order of appearance."""
        names = (s.target.service_name for n in self.nodes.values() for s in n.steps)
        return tuple(dict.fromkeys(name for name in names if name))


def parse_inference_graph(obj: Mapping[str, Any]) -> InferenceGraph:
    """The graph of an InferenceGraph object; :class:`GraphSpecError` if it has no nodes or a
    field of the wrong type."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("nodes"), Mapping):
        raise GraphSpecError("InferenceGraph has no spec.nodes")
    nodes = {str(name): _node(str(name), node) for name, node in spec["nodes"].items()}
    return InferenceGraph(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace") or "default"),
        nodes=nodes,
        annotations=dict(metadata.get("annotations") or {}),
    )


def _node(name: str, node: Any) -> Node:
    if not isinstance(node, Mapping):
        raise GraphSpecError(f"spec.nodes.{name} is not an object")
    steps = node.get("steps") or []
    if not isinstance(steps, list):
        raise GraphSpecError(f"spec.nodes.{name}.steps is not a list")
    return Node(
        router_type=str(node.get("routerType", "")),
        steps=tuple(_step(f"spec.nodes.{name}.steps.{i}", s) for i, s in enumerate(steps)),
    )


def _step(where: str, step: Any) -> Step:
    if not isinstance(step, Mapping):
        raise GraphSpecError(f"{where} is not an object")
    weight = step.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int)):
        raise GraphSpecError(f"{where}.weight is not an integer")
    dependency = step.get("dependency") or Dependency.SOFT.value
    if dependency not in {d.value for d in Dependency}:
        raise GraphSpecError(f"{where}.dependency is neither Soft nor Hard")
    return Step(
        target=StepTarget(
            node_name=_text(step, "nodeName", where),
            service_name=_text(step, "serviceName", where),
            service_url=_text(step, "serviceUrl", where),
        ),
        name=_text(step, "name", where),
        data=_text(step, "data", where),
        weight=weight,
        condition=_text(step, "condition", where),
        dependency=Dependency(dependency),
        map_predictions_to_instances=step.get("mapPredictionsToInstances") is True,
    )


def _text(step: Mapping[str, Any], key: str, where: str) -> str:
    value = step.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GraphSpecError(f"{where}.{key} is not a string")
    return value
