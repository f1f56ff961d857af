"""Plain values of a canary analysis: samples, load reports, histograms and verdicts.

The gates (:mod:`controller.gates`) turn what the metrics source and the load generator
observed into :class:`GateResult` values; the rollout decision reads only those. Keeping them
here, free of Prometheus and Locust types, lets the decision and the gates be tested with
plain numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "GateResult",
    "LatencyHistogram",
    "LoadPlan",
    "LoadReport",
    "MetricSample",
    "MetricSeries",
    "RevisionTraffic",
    "Verdict",
]


class Verdict(enum.StrEnum):
    """What one gate concluded at one analysis.

    Four outcomes, kept apart as Argo Rollouts keeps ``Failed``, ``Error`` and
    ``Inconclusive`` apart (Flagger treats "no data" as a failure or, with some providers, as a
    pass; both hurt users):

    - ``fail``: the model was measured and found worse (a threshold crossed with data behind
      it, a significant difference); only this condemns a version;
    - ``error``: the gate's tool did not work (Locust crashed or could not start, a Prometheus
      query errored or Prometheus was unreachable): nothing was learnt about the model;
    - ``inconclusive``: the tool worked but the evidence is not there yet (no data, NaN, too
      few samples, a sequential test that has not decided);
    - ``pass``.

    Errors and inconclusive analyses hold the step and are retried; past their limits the
    rollout is aborted, never quarantined.
    """

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    ERROR = "error"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the numbers behind it, for commit bodies and ``sluice status``."""

    gate: str
    verdict: Verdict
    #: One line a person reads in a commit body or the PR: "success 99.2% (min 99%)".
    summary: str
    #: The measured values by name (``canary_success_rate``, ``p99_ms``…), JSON-safe.
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSample:
    """One element of a Prometheus instant vector."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class MetricSeries:
    """One series of a Prometheus range query: its labels and (epoch seconds, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class LatencyHistogram:
    """Latency counts by upper bound in milliseconds (cumulative ``le`` buckets are NOT used).

    ``counts[i]`` is the number of requests with ``bounds[i-1] < latency <= bounds[i]``; the last
    bound may be ``inf``. Both Prometheus histograms (after differencing the cumulative
    buckets) and Locust's rounded response-time table map onto this.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        """Number of requests counted."""
        return sum(self.counts)


@dataclass(frozen=True)
class RevisionTraffic:
    """Requests one revision answered in an analysis window: totals, errors, latencies."""

    revision: str
    requests: int
    errors: int
    latency: LatencyHistogram | None = None


@dataclass(frozen=True)
class LoadPlan:
    """A load test against one revision's route.

    ``url`` is the base URL of the route (the canary's tag route); ``headers`` are sent with every
    request (a tag header where tags are routed by header). ``payloads`` are model inputs, one
    row (feature name to value) each, sampled from the model's input example or reference data.
    """

    url: str
    model_name: str
    protocol: Literal["v1", "v2"]
    payloads: tuple[Mapping[str, object], ...]
    users: int = 4
    spawn_rate: float = 4.0
    duration_seconds: float = 20.0
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Where the Locust report (``--json`` output, logs) is kept as an artifact.
    report_dir: Path | None = None
    #: Stop once this many requests were sent (a smoke); ``duration_seconds`` still bounds it.
    max_requests: int | None = None
    #: Requests per second in all, each user paced to ``rps / users``; None: back to back.
    rps: float | None = None
    #: ``random``: each request a row drawn at random; ``cycle``: the rows in order, round
    #: again (a replay sends exactly its file's rows).
    order: Literal["random", "cycle"] = "random"


@dataclass(frozen=True)
class LoadReport:
    """What a load test measured, read from Locust's ``--json`` summary."""

    requests: int
    failures: int
    duration_seconds: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    latency: LatencyHistogram | None = None
    report_path: Path | None = None

    @property
    def failure_ratio(self) -> float:
        """Failures over requests (0 when nothing was sent)."""
        return self.failures / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        """Requests per second over the test."""
        return self.requests / self.duration_seconds if self.duration_seconds > 0 else 0.0
