"""KServe InferenceGraphs on the local target: the router's semantics and the graph's status.

An InferenceGraph (``serving.kserve.io/v1alpha1``) chains, switches, splits and ensembles
InferenceServices; on a cluster KServe runs a router (``cmd/router/main.go``) for it. This
package is that router's behaviour in Python, split as the rest of the local target is:

- :mod:`~controller.local.graph.spec`: the graph as typed nodes and steps;
- :mod:`~controller.local.graph.routing`: each routing decision as a pure function
  (Switch's first match, Splitter's weights, Sequence's data passing and stop, Ensemble's
  keys), with :mod:`~controller.local.graph.conditions` for GJSON conditions and
  :mod:`~controller.local.graph.go_json` for JSON as Go's ``encoding/json`` writes it;
- :mod:`~controller.local.graph.executor`: one request through the graph, with the calls to
  services behind a ``StepCaller`` and an Ensemble's steps run concurrently;
- :mod:`~controller.local.graph.endpoints`: the URL KServe's controller gives each
  ``serviceName`` step (the InferenceService's predictor endpoint);
- :mod:`~controller.local.graph.status`: the ``status`` KServe's controller writes.

The local runtime serves each applied graph on a port of its own
(:mod:`controller.local.graph_router`), calling the steps over HTTP
(:mod:`controller.local.graph_caller`).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.local.graph.executor import (
        GraphAnswer,
        StepAnswer,
        StepCaller,
        StepCallFailed,
        StepRef,
        answer_graph_request,
    )
    from controller.local.graph.spec import InferenceGraph, parse_inference_graph
    from controller.local.graph.status import graph_status, has_predictor_endpoint

__all__ = [
    "GraphAnswer",
    "InferenceGraph",
    "StepAnswer",
    "StepCallFailed",
    "StepCaller",
    "StepRef",
    "answer_graph_request",
    "graph_status",
    "has_predictor_endpoint",
    "parse_inference_graph",
]

#: The module of each name above, imported on first use: only the routing modules need gjson-py
#: (the ``graph`` extra), so the runtime reads a graph's spec, status and endpoints without it.
_HOMES = {
    **dict.fromkeys(
        ("GraphAnswer", "StepAnswer", "StepCaller", "StepCallFailed", "StepRef"), "executor"
    ),
    "answer_graph_request": "executor",
    "InferenceGraph": "spec",
    "parse_inference_graph": "spec",
    "graph_status": "status",
    "has_predictor_endpoint": "status",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
