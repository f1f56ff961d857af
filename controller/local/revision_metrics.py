"""The request metrics the local router exports as a revision's queue-proxy would on a cluster:
counts and latency histograms per revision and response code, under the environment's metrics
profile (:mod:`controller.gates.metrics_profile`), so a canary analysis runs the same PromQL
against either."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from controller.gates.metrics_profile import (
    DEFAULT_PROFILE,
    OTEL_BUCKETS_SECONDS,
    MetricsProfile,
    resolve_profile,
)

__all__ = ["LATENCY_BUCKETS_MS", "RevisionMetrics"]

# Knative 1.18 queue-proxy's buckets for revision_app_request_latencies, in milliseconds.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500,
    600, 700, 800, 900, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip
# OTEL_BUCKETS_SECONDS are current Knative's buckets for kn.serving.invocation.duration, in
# seconds; the serving wrapper's request histogram shares them, so the constant lives with the
# metrics profiles.


class RevisionMetrics:
    """Request counts and latency histograms per revision and response code.

    Exported under a metrics profile's names: the histogram in the profile's unit, with
    Knative's buckets for that unit, and a separate counter only where the profile counts
    requests with one (Knative 1.18's ``revision_app_request_count``, written by hand because
    ``prometheus_client`` names every counter ``..._total``). The status label holds the code
    (``503``) where the profile's error matcher matches codes, else its class (``5xx``).
    A profile whose series come from the model server itself (``exportedBy: model-server``)
    gets none from the router, as no queue-proxy exports them on a cluster.
    """

    def __init__(
        self,
        namespace: str,
        configuration: str,
        profile: MetricsProfile | None = None,
    ) -> None:
        self._prefix = (namespace, configuration)
        self._lock = threading.Lock()
        # (revision, code) -> [count, sum_ms, per-bucket counts...]
        self._series: dict[tuple[str, int], list[float]] = {}
        self._profile = resolve_profile(DEFAULT_PROFILE)
        self._bounds_ms: tuple[float, ...] = ()
        self.set_profile(profile or self._profile)

    @property
    def profile(self) -> MetricsProfile:
        """The profile whose names ``/metrics`` exports."""
        return self._profile

    def set_profile(self, profile: MetricsProfile) -> None:
        """Export under ``profile`` from now on; a change starts every series again (a
        Prometheus reads the new names as new series, as after a queue-proxy upgrade)."""
        seconds = profile.latency_unit == "seconds"
        bounds_ms = tuple(b * 1000 for b in OTEL_BUCKETS_SECONDS) if seconds else LATENCY_BUCKETS_MS
        with self._lock:
            if profile == self._profile and self._bounds_ms:
                return
            self._profile, self._bounds_ms = profile, bounds_ms
            self._series.clear()

    def observe(self, revision: str, code: int, latency_ms: float) -> None:
        """Count one request to ``revision`` that answered ``code`` after ``latency_ms``."""
        with self._lock:
            bucket = bisect.bisect_left(self._bounds_ms, latency_ms)
            series = self._series.get((revision, code))
            if series is None:
                series = self._series[(revision, code)] = [0.0] * (len(self._bounds_ms) + 3)
            series[0] += 1
            series[1] += latency_ms
            series[2 + bucket] += 1

    def _snapshot(
        self,
    ) -> tuple[MetricsProfile, tuple[float, ...], list[tuple[str, int, list[float]]]]:
        with self._lock:
            items = sorted((key, list(values)) for key, values in self._series.items())
            return (
                self._profile,
                self._bounds_ms,
                [(revision, code, values) for (revision, code), values in items],
            )

    def counts(self) -> dict[tuple[str, int], int]:
        """Requests so far by (revision, response code)."""
        _, _, series = self._snapshot()
        return {(revision, code): int(values[0]) for revision, code, values in series}

    @staticmethod
    def _labels(
        profile: MetricsProfile, prefix: tuple[str, str], revision: str, code: int
    ) -> dict[str, str]:
        status = str(code) if profile.is_error("500") else f"{code // 100}xx"
        return {
            profile.namespace_label: prefix[0],
            profile.configuration_label: prefix[1],
            profile.revision_label: revision,
            profile.status_label: status,
        }

    def collect(self) -> Iterator[Metric]:
        """The latency histogram (the ``prometheus_client`` collector protocol)."""
        profile, bounds_ms, series = self._snapshot()
        if profile.exported_by != "queue-proxy":
            return  # the model servers export these series themselves
        scale = 1 / profile.milliseconds_per_unit
        names: list[str] | None = None
        family: HistogramMetricFamily | None = None
        for revision, code, values in series:
            labels = self._labels(profile, self._prefix, revision, code)
            if family is None:
                names = list(labels)
                family = HistogramMetricFamily(
                    profile.latency, f"Request latency in {profile.latency_unit}", labels=names
                )
            cumulative, buckets = 0.0, []
            for bound, count in zip((*bounds_ms, None), values[2:], strict=True):
                cumulative += count
                le = "+Inf" if bound is None else f"{bound * scale:g}"
                buckets.append((le, cumulative))
            family.add_metric([labels[n] for n in names or ()], buckets, values[1] * scale)
        if family is not None:
            yield family

    def exposition(self, registry: CollectorRegistry) -> bytes:
        """Prometheus text for ``/metrics``: the counter (when the profile has its own),
        then ``registry``."""
        profile, _, series = self._snapshot()
        lines: list[str] = []
        own_counter = profile.requests != f"{profile.latency}_count"
        if own_counter and profile.exported_by == "queue-proxy":
            name = profile.requests
            lines += [f"# HELP {name} The number of requests\n", f"# TYPE {name} counter\n"]
            for revision, code, values in series:
                labels = self._labels(profile, self._prefix, revision, code)
                pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{pairs}}} {values[0]:.1f}\n")
        return "".join(lines).encode() + generate_latest(registry)


def _escape(value: str) -> str:
    """A label value as the Prometheus text format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
