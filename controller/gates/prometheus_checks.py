"""Metric checks of a canary analysis: PromQL comparing the canary revision with the primary.

At each traffic step Sluice asks Prometheus how the canary revision behaves, using the
request metrics Knative's queue-proxy exports per revision (the local router exports the
same). Their names depend on the Knative version: the environment's metrics profile
(:mod:`controller.gates.metrics_profile`) names the request counter, the latency histogram,
the revision's labels and how a server error is told. Two checks are built in, as in Flagger;
with the default ``knative-otel`` profile they read::

    request-success-rate: the percentage (0-100) of the revision's requests that did not
    answer 5xx

        (sum(rate(kn_serving_invocation_duration_seconds_count{<revision>,
                  http_response_status_code!~"5.."}[1m])) or vector(0))
          / sum(rate(kn_serving_invocation_duration_seconds_count{<revision>}[1m])) * 100

    request-latency: the ``percentile``-th latency in milliseconds

        histogram_quantile(0.99, sum by (le)(
            rate(kn_serving_invocation_duration_seconds_bucket{<revision>}[1m]))) * 1000

where ``<revision>`` is ``k8s_namespace_name="…", kn_configuration_name="…",
kn_revision_name="…"``. 4xx answers count as successes: they are the client's fault, not the
model's. The ``or vector(0)`` keeps a revision that only failed at 0 % rather than "no data";
dividing before scaling keeps a perfect revision at exactly 100. A histogram in seconds is
scaled to milliseconds, so thresholds read the same under every profile.

A check may instead carry a PromQL template of its own, rendered strictly: ``{{ revision }}``
and the other :data:`TEMPLATE_VARIABLES` are substituted, and an unknown or missing variable
is a :class:`~controller.errors.ConfigError` (Flagger renders with ``missingkey=error`` for the
same reason: a query that silently matches nothing looks like a healthy canary).

Thresholds are absolute (``min``, ``max``) or relative to the primary revision, evaluated with
the same query (``maxIncrease``, ``maxDecrease``); the primary's value is shown beside every
check, as a reviewer compares anyway. A gate fails only on a number; no data, NaN or ±Inf is
*inconclusive*, and an unreachable Prometheus or a query it refuses is an *error* (the tool
did not work): neither ever fails a model, and the summary says which.

A graph canary is judged by the same checks on its branch series
(:mod:`controller.gates.graph_branches`): its ``canary`` branch stands for the canary revision
and its ``stable`` branch, named so in the summaries, for the primary, which must then have a
value for every check (:class:`Baseline`), not only for a relative one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.analysis_types import GateResult, Verdict
from controller.errors import ConfigError, MetricsUnavailable
from controller.gates.graph_branches import GraphBranches
from controller.gates.graph_traffic import GraphTraffic
from controller.gates.metrics_profile import MetricsProfile
from controller.gates.promql_queries import (
    DEFAULT_METRICS_PROFILE,
    DURATION_PATTERN,
    TEMPLATE_VARIABLES,
    builtin_query,
    duration_seconds,
    render_query,
    require_object_names,
    template_variables,
)
from controller.gates.revision_traffic import (
    request_count,
    revision_request_counts,
    revision_traffic,
)
from controller.ports import MetricsSource

__all__ = [
    "PRIMARY",
    "TEMPLATE_VARIABLES",
    "Baseline",
    "MetricCheck",
    "builtin_query",
    "evaluate_checks",
    "render_query",
    "revision_request_counts",
    "revision_traffic",
    "template_variables",
]


class MetricCheck(BaseModel):
    """One PromQL check of a canary analysis: a builtin or a query template, and thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(
        max_length=63,
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$",
        description="Name of the check; its gate is reported as prometheus/<name>.",
    )
    builtin: Literal["request-success-rate", "request-latency"] | None = Field(
        default=None,
        description="A builtin check: request-success-rate (percentage 0-100 of requests not "
        "answered 5xx) or request-latency (a percentile in milliseconds). Exclusive with query.",
    )
    query: str | None = Field(
        default=None,
        description="A PromQL template returning one value, with {{ variable }} placeholders: "
        + ", ".join(TEMPLATE_VARIABLES)
        + ". {{ revision }} is the revision being evaluated (the canary, and the primary for "
        "relative thresholds). Exclusive with builtin.",
    )
    min: float | None = Field(
        default=None, description="Fail when the canary's value is below this."
    )
    max: float | None = Field(
        default=None, description="Fail when the canary's value is above this."
    )
    max_increase: float | None = Field(
        default=None,
        alias="maxIncrease",
        ge=0,
        description="Fail when the canary's value exceeds the primary's by more than this "
        "fraction of it (0.2 = 20 %), for latency- or error-like metrics.",
    )
    max_decrease: float | None = Field(
        default=None,
        alias="maxDecrease",
        ge=0,
        le=1,
        description="Fail when the canary's value is below the primary's by more than this "
        "fraction of it (0.01 = 1 %), for success-like metrics.",
    )
    percentile: float = Field(
        default=99.0,
        gt=0,
        le=100,
        description="The latency percentile of request-latency (99 = p99); only for that check.",
    )
    interval: str = Field(
        default="1m",
        pattern=DURATION_PATTERN,
        description="The window the rate is taken over, a Prometheus duration; at least four "
        "scrape intervals.",
    )
    min_requests: int | None = Field(
        default=None,
        alias="minRequests",
        ge=1,
        description="Inconclusive, not judged, while a revision answered fewer requests than "
        "this over the interval (small samples make noisy rates).",
    )

    @model_validator(mode="after")
    def _one_source_and_a_threshold(self) -> Self:
        if (self.builtin is None) == (self.query is None):
            raise ValueError("set exactly one of builtin and query")
        if "percentile" in self.model_fields_set and self.builtin != "request-latency":
            raise ValueError("percentile applies only to builtin request-latency")
        thresholds = (self.min, self.max, self.max_increase, self.max_decrease)
        if all(threshold is None for threshold in thresholds):
            raise ValueError("set at least one threshold: min, max, maxIncrease or maxDecrease")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.builtin == "request-success-rate":
            for threshold in (self.min, self.max):
                if threshold is not None and not (threshold == 0 or 1 <= threshold <= 100):
                    raise ValueError(
                        f"request-success-rate is a percentage (0-100), not {threshold:g}; "
                        f"write 99 for 99 %"
                    )
        if self.query is not None:
            try:
                used = template_variables(self.query, check=self.name)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
            if self.is_relative and "revision" not in used:
                raise ValueError(
                    "maxIncrease and maxDecrease compare the query for the canary and the "
                    "primary: select the revision with {{ revision }}"
                )
        return self

    @property
    def is_relative(self) -> bool:
        """Whether a threshold compares the canary with the primary revision."""
        return self.max_increase is not None or self.max_decrease is not None


# -- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """What the canary is compared with, as the summaries name it, and whether it must have a
    value for every check (else only for a relative threshold)."""

    #: "vs primary 99.9%", "3% below primary".
    name: str
    #: "(the primary revision)" after why it has no value.
    described: str
    #: A baseline without a value (no data, too few requests) makes every check inconclusive,
    #: not only the relative ones: a graph canary is judged only beside its stable branch.
    required: bool = False


#: A model's canary revision is compared with the primary revision.
PRIMARY = Baseline("primary", "the primary revision")


def evaluate_checks(
    source: MetricsSource,
    checks: Sequence[MetricCheck],
    *,
    canary_revision: str,
    primary_revision: str,
    namespace: str,
    configuration: str,
    inference_service: str,
    profile: MetricsProfile = DEFAULT_METRICS_PROFILE,
    max_window_seconds: float | None = None,
    graph: GraphTraffic | GraphBranches | None = None,
    baseline: Baseline = PRIMARY,
) -> list[GateResult]:
    """One :class:`GateResult` per check, named ``prometheus/<check name>``, in order.

    ``max_window_seconds`` (the age of the canary's step) shortens every check's interval to
    at most that: canary and primary are then measured over the same stretch of time, the
    canary's whole life at this step, instead of a minute of the primary against the few
    seconds the canary has existed (a transient on the machine would otherwise weigh on the
    canary alone).

    A check fails only on a measured value past a threshold; no data, NaN or ±Inf (for the
    canary, or the primary when a threshold is relative) is inconclusive, and an unreachable
    Prometheus or a refused query is an error. Duplicate check names and malformed object
    names are a :class:`ConfigError`.

    With ``graph`` (a graph member's release), the builtin checks and ``minRequests`` read the
    graph's calls to ``inference_service`` that each revision answered
    (:mod:`controller.gates.graph_traffic`); a check's own query (and its ``minRequests``) is
    run as written. With :class:`GraphBranches` (a graph canary), ``canary_revision`` and
    ``primary_revision`` name the two branches of the graph's Splitter
    (:mod:`controller.gates.graph_branches`), and ``baseline`` names the second in summaries.
    """
    names = [check.name for check in checks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"metric checks {', '.join(duplicates)} are named twice; rename one")
    context = {
        "namespace": namespace,
        "configuration": configuration,
        "inference_service": inference_service,
        "canary_revision": canary_revision,
        "primary_revision": primary_revision,
    }
    require_object_names(**context)
    return [
        _evaluate(source, _within(check, max_window_seconds), context, profile, graph, baseline)
        for check in checks
    ]


def _within(check: MetricCheck, max_window_seconds: float | None) -> MetricCheck:
    """``check`` with its interval cut to ``max_window_seconds`` (whole seconds, at least 1)."""
    if max_window_seconds is None:
        return check
    window = max(1, math.floor(max_window_seconds))
    if duration_seconds(check.interval) <= window:
        return check
    return check.model_copy(update={"interval": f"{window}s"})


def _evaluate(
    source: MetricsSource,
    check: MetricCheck,
    context: Mapping[str, str],
    profile: MetricsProfile,
    graph: GraphTraffic | GraphBranches | None = None,
    baseline: Baseline = PRIMARY,
) -> GateResult:
    gate = f"prometheus/{check.name}"
    try:
        canary = _measure(source, check, context, context["canary_revision"], profile, graph)
    except MetricsUnavailable as exc:
        return GateResult(gate, Verdict.ERROR, f"{check.name}: {exc.message}")
    if isinstance(canary, str):
        return GateResult(gate, Verdict.INCONCLUSIVE, f"{check.name}: {canary}")
    # The primary's value is shown for every check (a reader compares anyway), but only a
    # relative threshold needs it: for an absolute one, a primary without data is left out.
    broken_tool = False
    try:
        measured = _measure(source, check, context, context["primary_revision"], profile, graph)
    except MetricsUnavailable as exc:
        measured, broken_tool = exc.message, True
    if isinstance(measured, str) and (check.is_relative or baseline.required):
        reason = f"{check.name}: {measured} ({baseline.described})"
        return GateResult(gate, Verdict.ERROR if broken_tool else Verdict.INCONCLUSIVE, reason)
    primary = None if isinstance(measured, str) else measured
    values = {"canary": canary} | ({} if primary is None else {"primary": primary})
    broken = _broken_thresholds(check, canary, primary, baseline.name)
    unit = _unit(check)
    label = check.name
    if check.builtin == "request-latency":
        label += f" p{check.percentile:g}"
    thresholds = ", ".join(_thresholds(check, unit, baseline.name))
    summary = f"{label} {_number(canary)}{unit} ({thresholds})"
    if primary is not None:
        summary += f" vs {baseline.name} {_number(primary)}{unit}"
    if broken:
        summary += ": " + "; ".join(broken)
    return GateResult(gate, Verdict.FAIL if broken else Verdict.PASS, summary, values)


def _measure(
    source: MetricsSource,
    check: MetricCheck,
    context: Mapping[str, str],
    revision: str,
    profile: MetricsProfile,
    graph: GraphTraffic | GraphBranches | None = None,
) -> float | str:
    """The check's value for ``revision``, or why there is none (a one-line reason)."""
    where = f"{revision} over {check.interval}"
    if check.query is not None:
        graph = None  # a query of one's own is run as written, its minRequests as before
    elif graph is not None:
        where += f" {graph.where}"
    if check.min_requests is not None:
        requests = request_count(source, profile, revision, context, check.interval, graph=graph)
        if requests is None or round(requests) < check.min_requests:
            count = 0 if requests is None else round(requests)
            return f"only {count} requests to {where} (minRequests {check.min_requests})"
    if check.query is not None:
        variables = {**context, "revision": revision, "interval": check.interval}
        promql = render_query(check.query, variables, check=check.name)
    else:
        assert check.builtin is not None  # the validator guarantees one of the two
        promql = builtin_query(
            check.builtin,
            namespace=context["namespace"],
            configuration=context["configuration"],
            revision=revision,
            interval=check.interval,
            percentile=check.percentile,
            profile=profile,
            graph=graph,
            inference_service=context["inference_service"],
        )
    samples = source.query(promql)
    if not samples:
        return f"no data for {where}"
    if len(samples) > 1:
        return f"{len(samples)} series for {where}, expected one; aggregate the query (sum, max…)"
    value = samples[0].value
    if math.isnan(value):
        return f"NaN for {where} (no requests in the window?)"
    if math.isinf(value):
        return f"{'+' if value > 0 else '-'}Inf for {where} (a division by zero?)"
    return value


def _broken_thresholds(
    check: MetricCheck, canary: float, primary: float | None, baseline: str = PRIMARY.name
) -> list[str]:
    """What the canary's value breaks, for the summary; empty when it passes."""
    unit, broken = _unit(check), []
    if check.min is not None and canary < check.min:
        broken.append(f"below min {_number(check.min)}{unit}")
    if check.max is not None and canary > check.max:
        broken.append(f"above max {_number(check.max)}{unit}")
    if primary is not None and check.is_relative:
        change = (canary - primary) / abs(primary) if primary else math.copysign(math.inf, canary)
        if check.max_increase is not None and canary > primary + abs(primary) * check.max_increase:
            broken.append(
                f"{_percent(change)} over {baseline} (max +{_percent(check.max_increase)})"
            )
        if check.max_decrease is not None and canary < primary - abs(primary) * check.max_decrease:
            broken.append(
                f"{_percent(-change)} below {baseline} (max −{_percent(check.max_decrease)})"
            )
    return broken


def _thresholds(check: MetricCheck, unit: str, baseline: str = PRIMARY.name) -> list[str]:
    described = []
    if check.min is not None:
        described.append(f"min {_number(check.min)}{unit}")
    if check.max is not None:
        described.append(f"max {_number(check.max)}{unit}")
    if check.max_increase is not None:
        described.append(f"max +{_percent(check.max_increase)} vs {baseline}")
    if check.max_decrease is not None:
        described.append(f"max −{_percent(check.max_decrease)} vs {baseline}")
    return described


def _unit(check: MetricCheck) -> str:
    return {"request-success-rate": "%", "request-latency": " ms"}.get(check.builtin or "", "")


def _number(value: float) -> str:
    """Four significant digits (99.94, 4.956, 0.01234), whole numbers from 1000 on."""
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def _percent(fraction: float) -> str:
    if math.isinf(fraction):
        return "∞%"
    percent = fraction * 100
    return f"{percent:.3g}%" if abs(percent) < 100 else f"{percent:.0f}%"
