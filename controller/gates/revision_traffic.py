"""Request counts and latency histograms of one revision from Prometheus, the evidence the
statistical judge and the sequential watch weigh (``increase()`` over a window).

With a :class:`~controller.gates.graph_traffic.GraphTraffic`, of the revision's answers to an
InferenceGraph's calls to its InferenceService only (the graph's step series); with a
:class:`~controller.gates.graph_branches.GraphBranches`, of one branch of a graph canary
("revision" names the branch)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from controller.analysis_types import LatencyHistogram, MetricSample, RevisionTraffic
from controller.errors import ConfigError
from controller.gates.graph_branches import GraphBranches
from controller.gates.graph_traffic import GraphTraffic
from controller.gates.metrics_profile import MetricsProfile
from controller.gates.promql_queries import (
    DEFAULT_METRICS_PROFILE,
    DURATION_PATTERN,
    request_series,
)
from controller.ports import MetricsSource

__all__ = ["request_count", "revision_request_counts", "revision_traffic"]


def revision_traffic(
    source: MetricsSource,
    *,
    revision: str,
    namespace: str,
    configuration: str,
    interval: str,
    profile: MetricsProfile = DEFAULT_METRICS_PROFILE,
    graph: GraphTraffic | GraphBranches | None = None,
    inference_service: str = "",
) -> RevisionTraffic | None:
    """Requests, 5xx errors and the latency histogram of ``revision`` over ``interval``.

    Counts come from ``increase()``, which extrapolates to the window's edges, so they are
    rounded estimates (about 5 % high for a 15 s series scraped every second, in the tests);
    requests counted before a series' first scrape are not seen. None when
    the revision answered no requests in the window. The histogram's bounds are in
    milliseconds whatever the profile's unit. May raise :class:`MetricsUnavailable`.
    """
    requests, errors = revision_request_counts(
        source,
        revision=revision,
        namespace=namespace,
        configuration=configuration,
        interval=interval,
        profile=profile,
        graph=graph,
        inference_service=inference_service,
    )
    if requests <= 0:
        return None
    series = request_series(
        profile,
        namespace=namespace,
        configuration=configuration,
        revision=revision,
        graph=graph,
        inference_service=inference_service,
    )
    buckets = source.query(
        f"sum by (le)(increase({series.latency}_bucket{{{series.selector}}}[{interval}]))"
    )
    return RevisionTraffic(
        revision=revision,
        requests=requests,
        errors=errors,
        latency=_histogram(buckets, scale=profile.milliseconds_per_unit),
    )


def revision_request_counts(
    source: MetricsSource,
    *,
    revision: str,
    namespace: str,
    configuration: str,
    interval: str,
    profile: MetricsProfile = DEFAULT_METRICS_PROFILE,
    graph: GraphTraffic | GraphBranches | None = None,
    inference_service: str = "",
) -> tuple[int, int]:
    """(requests, 5xx errors) of ``revision`` over ``interval``, as :func:`revision_traffic`
    counts them but without the latency histogram: two queries, cheap enough to run every
    second (the sequential watch). (0, 0) when the revision answered nothing in the window.
    May raise :class:`MetricsUnavailable`."""
    context = {
        "namespace": namespace,
        "configuration": configuration,
        "inference_service": inference_service,
    }
    if not re.match(DURATION_PATTERN, interval):
        raise ConfigError(f"interval {interval!r} is not a Prometheus duration such as 1m")
    count = request_count(source, profile, revision, context, interval, graph=graph)
    requests = round(count or 0.0)
    if requests <= 0:
        return 0, 0
    errors = request_count(
        source, profile, revision, context, interval, errors_only=True, graph=graph
    )
    return requests, min(max(round(errors or 0.0), 0), requests)


def request_count(
    source: MetricsSource,
    profile: MetricsProfile,
    revision: str,
    context: Mapping[str, str],
    interval: str,
    *,
    errors_only: bool = False,
    graph: GraphTraffic | GraphBranches | None = None,
) -> float | None:
    """Requests (or 5xx answers) of ``revision`` over ``interval``; None for no data or NaN.
    With ``graph``, the graph's calls to ``context["inference_service"]`` it answered."""
    series = request_series(
        profile,
        namespace=context["namespace"],
        configuration=context["configuration"],
        revision=revision,
        graph=graph,
        inference_service=context.get("inference_service", ""),
    )
    selector = series.selector
    if errors_only:
        selector += f", {profile.errors_matcher()}"
    samples = source.query(f"sum(increase({series.requests}{{{selector}}}[{interval}]))")
    if not samples or not math.isfinite(samples[0].value):
        return None
    return samples[0].value


def _histogram(samples: Sequence[MetricSample], *, scale: float) -> LatencyHistogram | None:
    """Per-bucket counts from cumulative ``le`` buckets (bounds times ``scale``), kept
    monotonic after rounding."""
    cumulative = sorted(
        (float(sample.labels["le"]) * scale, sample.value)
        for sample in samples
        if "le" in sample.labels and math.isfinite(sample.value)
    )
    if not cumulative or round(cumulative[-1][1]) <= 0:
        return None
    counts, previous = [], 0
    for _, value in cumulative:
        # increase() extrapolates each bucket on its own, so rounding can dip; never count < 0.
        running = max(previous, round(value))
        counts.append(running - previous)
        previous = running
    return LatencyHistogram(tuple(bound for bound, _ in cumulative), tuple(counts))
