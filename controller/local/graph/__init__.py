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
- :mod:`~controller.local.graph.status`: the ``status`` KServe's controller writes.

The runtime does not serve graphs over HTTP yet; :func:`answer_graph_request` answers one
request given the graph object and a step caller.
"""

from controller.local.graph.executor import (
    GraphAnswer,
    StepAnswer,
    StepCaller,
    StepCallFailed,
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
    "answer_graph_request",
    "graph_status",
    "has_predictor_endpoint",
    "parse_inference_graph",
]
