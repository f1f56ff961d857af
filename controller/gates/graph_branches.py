"""A graph canary's branches: the two graphs' answers at the root Splitter, as Prometheus has them.

A graph change is served in canary form (:mod:`controller.manifests.graph_canary`): a Splitter
at ``root`` sends ``100 - W`` % of the requests to step ``stable`` (the current graph) and
``W`` % to step ``canary`` (the proposed one). The graph's router times each step that routes to
a node, from the request entering the node to its answer (written by
:mod:`controller.local.graph_metrics` locally), in the **branch series**, in the environment's
unit, buckets, namespace and status labels:

- in seconds (``knative-otel``, ``sluice-wrapper`` and custom profiles in seconds): the
  histogram ``sluice_graph_branch_duration_seconds``, whose ``_count`` counts the answers;
- in milliseconds (``knative-opencensus``): the histogram
  ``sluice_graph_branch_request_latencies``, whose ``_count`` counts them;

labelled ``graph_name``, ``node_name`` (the node the step is in), ``step_name``, ``target_node``
(the node it routes to), the profile's revision label (the router's revision) and its status
label (the node's answer).

A graph's rollout compares the two branches as a model's compares two revisions: the builtin
metric checks of :mod:`controller.gates.prometheus_checks` select, with :class:`GraphBranches`,
``step_name`` and ``target_node`` both ``canary`` for the canary and both ``stable`` for the
baseline (the canary form refuses graphs with nodes of those names, so nothing else matches),
at any router revision: each weight step is a new revision of the router, and both branches
keep their names across them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.errors import ConfigError
from controller.gates.graph_traffic import StepMetricNames
from controller.gates.metrics_profile import MetricsProfile

__all__ = [
    "BRANCH_MILLISECONDS",
    "BRANCH_SECONDS",
    "CANARY_BRANCH",
    "STABLE_BRANCH",
    "GraphBranches",
    "branch_metric_names",
]

#: The histogram of node steps' answers, in seconds and (``knative-opencensus``) milliseconds.
BRANCH_SECONDS = "sluice_graph_branch_duration_seconds"
BRANCH_MILLISECONDS = "sluice_graph_branch_request_latencies"
#: The root Splitter's steps (and the nodes they route to) in a graph's canary form.
CANARY_BRANCH = "canary"
STABLE_BRANCH = "stable"
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_NODE_OR_STEP = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def branch_metric_names(profile: MetricsProfile) -> StepMetricNames:
    """What the branch series are called in an environment of ``profile``: the counter (the
    histogram's ``_count``) and the histogram."""
    histogram = BRANCH_SECONDS if profile.latency_unit == "seconds" else BRANCH_MILLISECONDS
    return StepMetricNames(f"{histogram}_count", histogram)


@dataclass(frozen=True)
class GraphBranches:
    """Judge a graph canary on its branch series: one branch (``canary`` or ``stable``) of
    ``graph``'s Splitter ``node`` stands where a revision stands in a model's checks."""

    graph: str
    node: str = "root"

    def __post_init__(self) -> None:
        # Both go into PromQL strings unescaped.
        if not _OBJECT_NAME.match(self.graph):
            raise ConfigError(f"graph {self.graph!r} is not a Kubernetes object name")
        if not _NODE_OR_STEP.match(self.node):
            raise ConfigError(f"node {self.node!r} is not a node name")

    def matchers(self, branch: str) -> str:
        """The label matchers of ``branch``'s answers (any router revision)."""
        if not _NODE_OR_STEP.match(branch):
            raise ConfigError(f"branch {branch!r} is not a step name")
        return (
            f'graph_name="{self.graph}", node_name="{self.node}", step_name="{branch}", '
            f'target_node="{branch}"'
        )

    @property
    def where(self) -> str:
        """How a check's summary names what it read."""
        return f"in graph {self.graph}'s {self.node} Splitter"
