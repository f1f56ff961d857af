"""The soak's checks read through the :class:`~controller.ports.MetricsSource` port.

A soak check is a ``rollout.gates.metrics`` check (:class:`~controller.gates.prometheus_checks.
MetricCheck`) of the one revision that serves: a builtin's PromQL
(:func:`~controller.gates.promql_queries.builtin_query`) or the check's own template rendered
strictly with that revision as ``{{ revision }}`` (and as ``{{ canary_revision }}`` and
``{{ primary_revision }}``), over the span :func:`~controller.soak.decide.check_window_seconds`
gives. A KPI is ``sluice serve``'s ``sluice_kpi`` gauge of the serving revision averaged over
the window. As with the canary's gates, only a number past a bound fails; no data, NaN or too
few requests is inconclusive and an unreachable Prometheus an error, and neither breaks a
soak: they hold it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.analysis_types import MetricSample
from controller.errors import MetricsUnavailable
from controller.gates.metrics_profile import MetricsProfile
from controller.gates.prometheus_checks import MetricCheck
from controller.gates.promql_queries import (
    DEFAULT_METRICS_PROFILE,
    builtin_query,
    duration_seconds,
    render_query,
    require_object_names,
)
from controller.gates.revision_traffic import request_count
from controller.ports import MetricsSource
from controller.soak.decide import Reading
from controller.soak.policy import SoakKpi, SoakPolicy

__all__ = ["KPI_SERIES", "SoakScope", "kpi_query", "read_checks"]

#: ``sluice serve``'s KPI gauge (:data:`controller.serve.kpi_series.KPI_VALUE`).
KPI_SERIES = "sluice_kpi"


@dataclass(frozen=True)
class SoakScope:
    """Where the soaking version serves: its release and the revision taking all traffic."""

    environment: str
    model: str
    namespace: str
    configuration: str
    inference_service: str
    revision: str


def read_checks(
    source: MetricsSource,
    policy: SoakPolicy,
    scope: SoakScope,
    window: Callable[[float], int],
    *,
    final: bool,
    profile: MetricsProfile = DEFAULT_METRICS_PROFILE,
) -> list[Reading]:
    """One reading per check of ``policy`` (and, when ``final``, per KPI), in order.

    ``window(interval_seconds)`` is the span in seconds to read a check over
    (:func:`~controller.soak.decide.check_window_seconds`); a KPI is read over
    ``window(math.inf)``, the whole window. A malformed object name or template is a
    :class:`~controller.errors.ConfigError`.
    """
    require_object_names(
        namespace=scope.namespace,
        configuration=scope.configuration,
        inference_service=scope.inference_service,
        revision=scope.revision,
    )
    readings = [
        _read(source, check, scope, f"{window(duration_seconds(check.interval))}s", profile)
        for check in policy.checks
    ]
    if final:
        span = f"{window(math.inf)}s"
        readings += [_read_kpi(source, kpi, scope, span) for kpi in policy.kpis]
    return readings


def kpi_query(kpi: SoakKpi, scope: SoakScope, span: str) -> str:
    """The KPI's mean over ``span`` for the serving revision."""
    selector = (
        f'environment="{scope.environment}", model="{scope.model}", kpi="{kpi.name}", '
        f'revision="{scope.revision}"'
    )
    return f"avg(avg_over_time({KPI_SERIES}{{{selector}}}[{span}]))"


def _query(check: MetricCheck, scope: SoakScope, span: str, profile: MetricsProfile) -> str:
    if check.query is not None:
        variables = {
            "namespace": scope.namespace,
            "configuration": scope.configuration,
            "inference_service": scope.inference_service,
            "canary_revision": scope.revision,
            "primary_revision": scope.revision,
            "revision": scope.revision,
            "interval": span,
        }
        return render_query(check.query, variables, check=check.name)
    assert check.builtin is not None  # the check's validator guarantees one of the two
    return builtin_query(
        check.builtin,
        namespace=scope.namespace,
        configuration=scope.configuration,
        revision=scope.revision,
        interval=span,
        percentile=check.percentile,
        profile=profile,
    )


def _read(
    source: MetricsSource,
    check: MetricCheck,
    scope: SoakScope,
    span: str,
    profile: MetricsProfile,
) -> Reading:
    promql = _query(check, scope, span, profile)
    where = f"{scope.revision} over {span}"
    try:
        if check.min_requests is not None:
            context = {
                "namespace": scope.namespace,
                "configuration": scope.configuration,
                "inference_service": scope.inference_service,
            }
            requests = request_count(source, profile, scope.revision, context, span)
            if requests is None or round(requests) < check.min_requests:
                count = 0 if requests is None else round(requests)
                why = f"only {count} requests to {where} (minRequests {check.min_requests})"
                return Reading(check.name, promql, None, "inconclusive", f"{check.name}: {why}")
        value = _value(source.query(promql))
    except MetricsUnavailable as exc:
        return Reading(check.name, promql, None, "error", f"{check.name}: {exc.message}")
    unit = {"request-success-rate": "%", "request-latency": " ms"}.get(check.builtin or "", "")
    return _judge(check.name, promql, value, where, check.min, check.max, unit)


def _read_kpi(source: MetricsSource, kpi: SoakKpi, scope: SoakScope, span: str) -> Reading:
    promql = kpi_query(kpi, scope, span)
    name = f"kpi/{kpi.name}"
    try:
        value = _value(source.query(promql))
    except MetricsUnavailable as exc:
        return Reading(name, promql, None, "error", f"{name}: {exc.message}")
    return _judge(name, promql, value, f"{scope.revision} over {span}", kpi.min, kpi.max, "")


def _value(samples: Sequence[MetricSample]) -> float | str:
    """The one finite value of an answer, or why there is none."""
    if not samples:
        return "no data"
    if len(samples) > 1:
        return f"{len(samples)} series, expected one; aggregate the query (sum, max…)"
    value = samples[0].value
    if not math.isfinite(value):
        return f"{value} (no requests in the window?)"
    return value


def _judge(
    name: str,
    promql: str,
    value: float | str,
    where: str,
    low: float | None,
    high: float | None,
    unit: str,
) -> Reading:
    if isinstance(value, str):
        return Reading(name, promql, None, "inconclusive", f"{name}: {value} for {where}")
    bounds = [f"min {low:.4g}{unit}"] if low is not None else []
    bounds += [f"max {high:.4g}{unit}"] if high is not None else []
    broken = (low is not None and value < low) or (high is not None and value > high)
    summary = f"{name} {value:.4g}{unit} over {where.rpartition(' over ')[2]} ({', '.join(bounds)})"
    if broken:
        summary += ": out of bounds"
    return Reading(name, promql, value, "fail" if broken else "pass", summary)
