"""A graph member's traffic: the requests an InferenceGraph routed to one InferenceService.

A member of an InferenceGraph (a regime's specialist) answers the graph's requests among any
others its route takes, so its revision series cannot tell which of them the graph sent, nor
for which regime. The graph's router counts every call it makes to a step in series of
Sluice's own (written by :mod:`controller.local.graph_metrics` locally), in the environment's
unit, buckets, namespace, revision and status labels, under names of their own:

- in seconds (``knative-otel``, ``sluice-wrapper`` and custom profiles in seconds): the
  histogram ``sluice_graph_step_duration_seconds``, whose ``_count`` counts the calls;
- in milliseconds (``knative-opencensus``): the counter ``sluice_graph_step_request_count``
  and the histogram ``sluice_graph_step_request_latencies``;

labelled ``graph_name``, ``node_name``, ``step_name`` (the step's name, else its index),
``service_name`` (the member InferenceService), ``service_url``, the profile's revision label
(the member's revision that answered) and its status label.

A release with :class:`GraphTraffic` set is judged on those series: its builtin metric checks
and the judge select the graph (and node and step, when given) and ``service_name`` = the
release's InferenceService, and compare the canary revision with the primary by the revision
label, so both are measured on the requests the graph routed to the member.

With :class:`~controller.gates.graph_replay.GraphReplay` set (``replay``), a member the graph
rarely calls is judged on a replay of its regime's requests instead: the load test sends them
to both revisions and the gates read the member's own revision series (:func:`judged_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from controller.gates.graph_replay import GraphReplay
from controller.gates.metrics_profile import MetricsProfile

__all__ = ["GraphTraffic", "StepMetricNames", "judged_graph", "step_metric_names"]

# A Kubernetes object name (the graph), and a node or step name without anything a PromQL
# string would need escaped (quotes, backslashes).
_OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_NODE_OR_STEP = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


@dataclass(frozen=True)
class StepMetricNames:
    """The step series' names under a profile: the request counter and the histogram."""

    requests: str
    latency: str


def step_metric_names(profile: MetricsProfile) -> StepMetricNames:
    """What the step series are called in an environment of ``profile``."""
    if profile.latency_unit == "seconds":
        histogram = "sluice_graph_step_duration_seconds"
        return StepMetricNames(f"{histogram}_count", histogram)
    return StepMetricNames("sluice_graph_step_request_count", "sluice_graph_step_request_latencies")


class GraphTraffic(BaseModel):
    """Judge a graph member's canary on the requests an InferenceGraph routed to it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    graph: str = Field(
        max_length=253,
        pattern=_OBJECT_NAME,
        description="The InferenceGraph (in the release's namespace) whose calls to this "
        "release's InferenceService the gates read.",
    )
    node: str | None = Field(
        default=None,
        max_length=253,
        pattern=_NODE_OR_STEP,
        description="Only the calls of this node of the graph (e.g. by-regime); unset: every "
        "node that calls the InferenceService.",
    )
    step: str | None = Field(
        default=None,
        max_length=253,
        pattern=_NODE_OR_STEP,
        description="Only the calls of steps of this name (e.g. volatile; a step without a "
        "name is named by its index); unset: every step that calls the InferenceService.",
    )
    replay: GraphReplay | None = Field(
        default=None,
        description="For a member the graph rarely calls (too few requests for the judge's "
        "minSamples): judge it on a replay of its regime's requests instead. At each analysis "
        "the load test sends the rows of this file to the canary's and the primary's tag "
        "routes, and the metric checks and the judge compare the two on the "
        "InferenceService's own revision series; unset: on the graph's step series.",
    )

    @property
    def where(self) -> str:
        """How a check's summary names what it read."""
        return f"on graph {self.graph}'s calls"

    def matchers(self, inference_service: str) -> str:
        """The label matchers of the graph's calls to ``inference_service`` (no revision)."""
        matchers = f'graph_name="{self.graph}"'
        if self.node is not None:
            matchers += f', node_name="{self.node}"'
        if self.step is not None:
            matchers += f', step_name="{self.step}"'
        return matchers + f', service_name="{inference_service}"'


def judged_graph(traffic: GraphTraffic | None) -> GraphTraffic | None:
    """The graph whose step series a release's checks, judge and watch read: its
    ``graphTraffic``, or None (the InferenceService's own revision series) when it has none or
    replays its regime's requests, which reach the revisions through their tag routes, outside
    the graph."""
    return traffic if traffic is not None and traffic.replay is None else None
