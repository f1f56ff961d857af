"""Prometheus, scripted: the built-in PromQL answered from the routed version's behaviour
(:class:`ScriptedMetrics`), or any PromQL answered by a text it contains
(:class:`AnsweredMetrics`)."""

from __future__ import annotations

import math
import re

from controller.analysis_types import MetricSample
from controller.errors import MetricsUnavailable
from controller.gates.metrics_profile import KNATIVE_OTEL, MetricsProfile
from controller.testing.behaviours import Behaviours
from controller.testing.cluster import InstantCluster

__all__ = ["AnsweredMetrics", "ScriptedMetrics"]

_LABEL = re.compile(r'(\w+)\s*(=|!=)\s*"([^"]*)"')
_QUANTILE = re.compile(r"^histogram_quantile\(\s*([0-9.]+)\s*,")


class _Prometheus:
    """What both fakes do with every query: keep it, and fail it during an :attr:`outage`."""

    def __init__(self) -> None:
        self.outage = False
        #: Every query received, in order.
        self.queries: list[str] = []

    def _receive(self, promql: str) -> None:
        self.queries.append(promql)
        if self.outage:
            raise MetricsUnavailable("Prometheus at http://prometheus.fake is unreachable")


class ScriptedMetrics(_Prometheus):
    """A :class:`~controller.ports.MetricsSource` answering the built-in PromQL shapes.

    A revision in its service's traffic answered ``requests`` requests in any window, with the
    error ratio and latencies of its version's :class:`Behaviour`; one outside the traffic
    answered none (empty results). A query of another shape (a custom check) has no data. Set
    :attr:`outage` to make every query fail as an unreachable Prometheus does. Series are
    named as ``profile`` names them (current Knative's by default); a query for other names
    has no data, as on a cluster whose Knative exports the other shape.
    """

    def __init__(
        self,
        cluster: InstantCluster,
        *,
        behaviours: Behaviours | None = None,
        requests: int = 2000,
        profile: MetricsProfile = KNATIVE_OTEL,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.profile = profile
        self.behaviours = behaviours or cluster.behaviours
        self.requests = requests

    def query(self, promql: str) -> list[MetricSample]:
        """Evaluate ``promql`` against the scripted traffic of the revision it selects."""
        self._receive(promql)
        profile = self.profile
        labels = {k: v for k, op, v in _LABEL.findall(promql) if op == "="}
        uri = self.cluster.serving(
            labels.get(profile.namespace_label, ""),
            labels.get(profile.configuration_label, ""),
            labels.get(profile.revision_label, ""),
        )
        if uri is None:
            return []
        behaviour = self.behaviours.of(uri)
        errors = round(self.requests * behaviour.error_ratio)
        quantile = _QUANTILE.match(promql)
        buckets, requests = f"{profile.latency}_bucket{{", f"{profile.requests}{{"
        if quantile and f"rate({buckets}" in promql:
            # The builtin query scales a histogram in seconds to milliseconds itself.
            return [MetricSample({}, behaviour.latency_quantile(float(quantile.group(1))))]
        if f"increase({buckets}" in promql:
            scale = profile.milliseconds_per_unit
            return [
                MetricSample({"le": "+Inf" if math.isinf(b) else f"{b / scale:g}"}, float(count))
                for b, count in behaviour.cumulative_counts(self.requests)
            ]
        if "or vector(0)" in promql and f"rate({requests}" in promql:
            return [MetricSample({}, 100.0 * (self.requests - errors) / self.requests)]
        if promql.startswith(f"sum(increase({requests}"):
            five_xx = profile.errors_matcher() in promql
            return [MetricSample({}, float(errors if five_xx else self.requests))]
        return []


class AnsweredMetrics(_Prometheus):
    """A :class:`~controller.ports.MetricsSource` answering each query with the value set for
    the first text it contains (``answers["request-success"] = 99.9``); a query matching none
    has no data. Set :attr:`outage` to fail every query as an unreachable Prometheus does."""

    def __init__(self, answers: dict[str, float] | None = None) -> None:
        super().__init__()
        self.answers: dict[str, float] = dict(answers or {})

    def query(self, promql: str) -> list[MetricSample]:
        """The value of the first answer whose text ``promql`` contains, as one sample."""
        self._receive(promql)
        for text, value in self.answers.items():
            if text in promql:
                return [MetricSample({}, value)]
        return []
