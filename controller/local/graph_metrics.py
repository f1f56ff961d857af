"""Request metrics of an InferenceGraph's steps: what the graph sent each member, and how it went.

A member InferenceService of a graph counts the graph's requests among all its others (they
pass through its route, :mod:`controller.local.router`), so its own revision series cannot
tell which requests a graph routed to it, nor from which node. To judge a member on the
traffic a graph gives it (a regime's specialist on that regime's rows), the local graph
router also counts every step call it makes, in series of Sluice's own (KServe's router
exports none) written the way the environment's request metrics are
(:mod:`controller.gates.metrics_profile`): the same unit, buckets, status label (a code or a
class) and namespace label, under names of their own so that no query of the revisions'
series counts a request twice:

- in seconds (``knative-otel``, ``sluice-wrapper``): the histogram
  ``sluice_graph_step_duration_seconds``, whose ``_count`` counts the calls;
- in milliseconds (``knative-opencensus``): the counter ``sluice_graph_step_request_count``
  and the histogram ``sluice_graph_step_request_latencies``;

labelled ``graph_name``, ``node_name``, ``step_name`` (the step's name, else its index),
``service_name`` (the member InferenceService; empty for a ``serviceUrl`` step),
``service_url`` (a ``serviceUrl`` step's URL; empty otherwise), the profile's revision label
(the member's revision that answered, from its router's ``X-Sluice-Revision``; empty when none
did) and its status label (a step that got no answer counts as 502, 504 when it timed out).
The names are :func:`~controller.gates.graph_traffic.step_metric_names`, which the gates of a
graph member's release query.

Each Switch node's decisions are counted too, under every profile, in the counter
``sluice_graph_switch_requests_total`` labelled with the profile's namespace label,
``graph_name``, ``node_name`` (the Switch) and ``step_name`` (the step it chose: its name,
else its index; "" when no condition matched). A Switch that found no branch is told apart
nowhere else: the graph answers KServe's 404 only when the Switch is its root (nested, the
enclosing node turns it into a 500), and a member's own 404 passes through a Switch unchanged.
A step that routes to a node (a Switch step ``nodeName: blend``) has no step call
of its own, so this counter is also the only count of the requests that took it.

Each step that routes to a node is timed too, from the request entering the node to its answer:
the **branch series**, which compare the two graphs of a graph canary (the root Splitter's
``stable`` and ``canary`` steps, :mod:`controller.manifests.graph_canary`) on what clients got.
The histogram :data:`BRANCH_SECONDS` (``knative-otel``, ``sluice-wrapper``; in milliseconds
:data:`BRANCH_MILLISECONDS` under ``knative-opencensus``), whose ``_count`` counts, is labelled
with the profile's namespace label, ``graph_name``, ``node_name`` (the node the step is in),
``step_name`` (its name, else its index), ``target_node`` (the node it routes to), the profile's
revision label (the graph's router revision, ``<graph>-0000K``: each commit of the graph, a
weight step included, is a new one) and status label (the node's answer; 500 when it failed).
``sluice graph rollout`` judges a graph canary on them
(:mod:`controller.gates.graph_branches` names and selects them).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from controller.gates.graph_branches import BRANCH_MILLISECONDS, BRANCH_SECONDS
from controller.gates.graph_traffic import StepMetricNames, step_metric_names
from controller.gates.metrics_profile import (
    DEFAULT_PROFILE,
    OTEL_BUCKETS_SECONDS,
    MetricsProfile,
    resolve_profile,
)
from controller.local.revision_metrics import LATENCY_BUCKETS_MS

__all__ = [
    "BRANCH_MILLISECONDS",
    "BRANCH_SECONDS",
    "SWITCH_REQUESTS",
    "BranchCall",
    "GraphStepMetrics",
    "StepCall",
    "StepMetricNames",
    "step_metric_names",
]

#: The counter of Switch decisions (exported with ``_total``), per node and chosen step.
SWITCH_REQUESTS = "sluice_graph_switch_requests"


@dataclass(frozen=True, order=True)
class StepCall:
    """Which step called which member, and what answered: one series."""

    node: str
    step: str
    service_name: str
    service_url: str
    revision: str
    code: int


@dataclass(frozen=True, order=True)
class BranchCall:
    """Which node step routed to which node, under which router revision, and its answer."""

    node: str
    step: str
    target: str
    revision: str
    code: int


class GraphStepMetrics:
    """Counts and latency histograms of one graph's step calls (thread-safe: the router's
    loop observes, ``/metrics`` may be read from anywhere)."""

    def __init__(self, namespace: str, graph: str, profile: MetricsProfile | None = None) -> None:
        self._namespace, self._graph = namespace, graph
        self._lock = threading.Lock()
        # call -> [count, sum_ms, per-bucket counts...]
        self._series: dict[StepCall, list[float]] = {}
        # (Switch node, chosen step's key or "") -> requests
        self._switched: dict[tuple[str, str], int] = {}
        # branch -> [count, sum_ms, per-bucket counts...]
        self._branches: dict[BranchCall, list[float]] = {}
        self._profile = resolve_profile(DEFAULT_PROFILE)
        self._bounds_ms: tuple[float, ...] = ()
        self.set_profile(profile or self._profile)

    def set_profile(self, profile: MetricsProfile) -> None:
        """Export under ``profile``'s conventions from now on; a change starts every series
        again, as :class:`~controller.local.revision_metrics.RevisionMetrics` does."""
        seconds = profile.latency_unit == "seconds"
        bounds_ms = tuple(b * 1000 for b in OTEL_BUCKETS_SECONDS) if seconds else LATENCY_BUCKETS_MS
        with self._lock:
            if profile == self._profile and self._bounds_ms:
                return
            self._profile, self._bounds_ms = profile, bounds_ms
            self._series.clear()
            self._switched.clear()
            self._branches.clear()

    def observe(self, call: StepCall, latency_ms: float) -> None:
        """Count one step call that ended as ``call`` says after ``latency_ms``."""
        with self._lock:
            self._count(self._series, call, latency_ms)

    def observe_branch(self, branch: BranchCall, latency_ms: float) -> None:
        """Count one node step's answer, ``latency_ms`` after it entered the node."""
        with self._lock:
            self._count(self._branches, branch, latency_ms)

    def _count(self, table: dict[Any, list[float]], key: Any, latency_ms: float) -> None:
        series = table.get(key)
        if series is None:
            series = table[key] = [0.0] * (len(self._bounds_ms) + 3)
        series[0] += 1
        series[1] += latency_ms
        series[2 + bisect.bisect_left(self._bounds_ms, latency_ms)] += 1

    def branch_counts(self) -> dict[BranchCall, int]:
        """Node steps' answers so far, by series."""
        with self._lock:
            return {branch: int(values[0]) for branch, values in self._branches.items()}

    def observe_switch(self, node: str, step: str) -> None:
        """Count one request Switch ``node`` sent to step ``step`` ("": to none)."""
        with self._lock:
            self._switched[(node, step)] = self._switched.get((node, step), 0) + 1

    def counts(self) -> dict[StepCall, int]:
        """Step calls so far, by series."""
        with self._lock:
            return {call: int(values[0]) for call, values in self._series.items()}

    def switch_counts(self) -> dict[tuple[str, str], int]:
        """Switch decisions so far, by node and chosen step ("" for none)."""
        with self._lock:
            return dict(self._switched)

    def _labels(self, profile: MetricsProfile, call: StepCall) -> dict[str, str]:
        status = str(call.code) if profile.is_error("500") else f"{call.code // 100}xx"
        return {
            profile.namespace_label: self._namespace,
            "graph_name": self._graph,
            "node_name": call.node,
            "step_name": call.step,
            "service_name": call.service_name,
            "service_url": call.service_url,
            profile.revision_label: call.revision,
            profile.status_label: status,
        }

    def _snapshot(
        self,
    ) -> tuple[MetricsProfile, tuple[float, ...], list[tuple[StepCall, list[float]]]]:
        with self._lock:
            series = sorted((call, list(values)) for call, values in self._series.items())
            return self._profile, self._bounds_ms, series

    def collect(self) -> Iterator[Metric]:
        """The latency histogram and the Switch counter (the ``prometheus_client`` collector
        protocol)."""
        yield from self._switch_family()
        yield from self._branch_family()
        profile, bounds_ms, series = self._snapshot()
        if not series:
            return
        names = step_metric_names(profile)
        scale = 1 / profile.milliseconds_per_unit
        label_names = list(self._labels(profile, series[0][0]))
        family = HistogramMetricFamily(
            names.latency,
            f"Latency of an InferenceGraph's calls to its steps, in {profile.latency_unit}",
            labels=label_names,
        )
        for call, values in series:
            cumulative, buckets = 0.0, []
            for bound, count in zip((*bounds_ms, None), values[2:], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound is None else f"{bound * scale:g}", cumulative))
            labels = self._labels(profile, call)
            family.add_metric([labels[n] for n in label_names], buckets, values[1] * scale)
        yield family

    def _branch_family(self) -> Iterator[Metric]:
        with self._lock:
            profile, bounds_ms = self._profile, self._bounds_ms
            branches = sorted((b, list(values)) for b, values in self._branches.items())
        if not branches:
            return
        seconds = profile.latency_unit == "seconds"
        scale = 1 / profile.milliseconds_per_unit
        labels = [
            profile.namespace_label, "graph_name", "node_name", "step_name", "target_node",
            profile.revision_label, profile.status_label,
        ]  # fmt: skip
        family = HistogramMetricFamily(
            BRANCH_SECONDS if seconds else BRANCH_MILLISECONDS,
            "Latency of the answers of an InferenceGraph's steps that route to a node, "
            f"in {profile.latency_unit}",
            labels=labels,
        )
        for branch, values in branches:
            status = str(branch.code) if profile.is_error("500") else f"{branch.code // 100}xx"
            cumulative, buckets = 0.0, []
            for bound, count in zip((*bounds_ms, None), values[2:], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound is None else f"{bound * scale:g}", cumulative))
            family.add_metric(
                [
                    self._namespace, self._graph, branch.node, branch.step, branch.target,
                    branch.revision, status,
                ],
                buckets,
                values[1] * scale,
            )  # fmt: skip
        yield family

    def _switch_family(self) -> Iterator[Metric]:
        with self._lock:
            profile, switched = self._profile, sorted(self._switched.items())
        if not switched:
            return
        labels = [profile.namespace_label, "graph_name", "node_name", "step_name"]
        family = CounterMetricFamily(
            SWITCH_REQUESTS,
            'Requests an InferenceGraph\'s Switch node routed, by the step it chose ("": none)',
            labels=labels,
        )
        for (node, step), count in switched:
            family.add_metric([self._namespace, self._graph, node, step], count)
        yield family

    def counter_text(self) -> str:
        """The request counter in Prometheus' text format, where the profile has a counter of
        its own (Knative 1.18's style); "" where the histogram's ``_count`` counts."""
        profile, _, series = self._snapshot()
        names = step_metric_names(profile)
        if names.requests == f"{names.latency}_count":
            return ""
        lines = [
            f"# HELP {names.requests} The number of requests an InferenceGraph sent its steps\n",
            f"# TYPE {names.requests} counter\n",
        ]
        for call, values in series:
            pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in self._labels(profile, call).items())
            lines.append(f"{names.requests}{{{pairs}}} {values[0]:.1f}\n")
        return "".join(lines)


def _escape(value: str) -> str:
    """A label value as the Prometheus text format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
