"""What a model version does once served: every answer of the serving fakes derives from it.

A :class:`Behaviour` gives a version's error ratio, log-normal latencies, cold starts and whether
it loads at all; :class:`Behaviours` maps storage URIs to them by marker, so the cluster, the
metrics and the load fakes (and through them the real gates and judge) agree on one version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

from controller.analysis_types import LatencyHistogram

__all__ = [
    "FAILING",
    "HEALTHY",
    "LATENCY_BOUNDS_MS",
    "SLOW",
    "UNLOADABLE",
    "Behaviour",
    "Behaviours",
]

#: Upper bounds (ms) of the latency histograms the fakes report (a subset of Knative's).
LATENCY_BOUNDS_MS = (5.0, 10.0, 20.0, 40.0, 60.0, 100.0, 150.0, 250.0, 500.0, 1000.0, 5000.0)
_SIGMA = 0.5  # spread of the log-normal latencies: p99 is about 3.2 times the median
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Behaviour:
    """How a model version behaves once served; every fake answer is derived from it.

    Latencies are log-normal around ``median_ms``. ``cold_runs`` load tests against each new
    revision of the version answer only a handful of requests (a cold start), too few to judge.
    """

    loads: bool = True
    error_ratio: float = 0.0
    median_ms: float = 40.0
    cold_runs: int = 0

    def latency_quantile(self, q: float) -> float:
        """The ``q``-quantile (0 < q < 1) of the latency, in milliseconds."""
        return self.median_ms * math.exp(_SIGMA * _NORMAL.inv_cdf(q))

    def latency_share(self, bound_ms: float) -> float:
        """The share of requests answered within ``bound_ms``."""
        if math.isinf(bound_ms):
            return 1.0
        return _NORMAL.cdf((math.log(bound_ms) - math.log(self.median_ms)) / _SIGMA)

    def cumulative_counts(self, requests: int) -> list[tuple[float, int]]:
        """Prometheus-style cumulative ``le`` buckets of ``requests`` requests (+Inf last)."""
        bounds = (*LATENCY_BOUNDS_MS, math.inf)
        return [(b, round(requests * self.latency_share(b))) for b in bounds]

    def histogram(self, requests: int) -> LatencyHistogram:
        """Per-bucket counts of ``requests`` requests."""
        cumulative = self.cumulative_counts(requests)
        counts, previous = [], 0
        for _, running in cumulative:
            counts.append(running - previous)
            previous = running
        return LatencyHistogram(tuple(b for b, _ in cumulative), tuple(counts))


HEALTHY = Behaviour()
#: Fails a fifth of its requests (answers 5xx), as ``models.faulty`` with ``--error-rate 0.2``.
FAILING = Behaviour(error_ratio=0.2)
#: About 300 ms slower than a healthy version.
SLOW = Behaviour(median_ms=340.0)
#: Its model server never loads: the revision fails.
UNLOADABLE = Behaviour(loads=False)


def _contains_word(text: str, marker: str) -> bool:
    """Whether ``marker`` occurs in ``text`` with no letter or digit against an end of it that
    is a letter or digit (``/cold-model`` may follow anything; ``bad`` may not follow ``2``)."""
    start = text.find(marker)
    while start >= 0:
        end = start + len(marker)
        before = text[start - 1] if start and marker[0].isalnum() else ""
        after = text[end] if end < len(text) and marker[-1].isalnum() else ""
        if not before.isalnum() and not after.isalnum():
            return True
        start = text.find(marker, start + 1)
    return False


def _default_markers() -> dict[str, Behaviour]:
    return {"unloadable": UNLOADABLE, "bad": FAILING, "slow": SLOW}


@dataclass(frozen=True)
class Behaviours:
    """The behaviour of a storage URI: that of the first marker it contains, else ``default``.

    The default markers make ``file:///models/bad-v3`` failing, ``…/slow…`` slow and
    ``…/unloadable…`` unloadable; a test with registry-made URIs names its own markers (a
    distinctive part of each version's URI). A marker counts only as a whole word: no letter or
    digit may touch it on either side, so ``bad`` inside a registry's hex id (``m-3f2bad9…``,
    about one model in 140) leaves that version healthy.
    """

    markers: Mapping[str, Behaviour] = field(default_factory=_default_markers)
    default: Behaviour = HEALTHY

    def of(self, uri: str) -> Behaviour:
        """The behaviour of the version served from ``uri``."""
        return next(
            (b for marker, b in self.markers.items() if _contains_word(uri, marker)), self.default
        )

    def with_marker(self, marker: str, behaviour: Behaviour) -> Behaviours:
        """These behaviours, and ``behaviour`` for URIs containing ``marker`` (checked first)."""
        return Behaviours({marker: behaviour, **self.markers}, self.default)
